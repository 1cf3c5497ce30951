"""`spinenode train-spine`: train the spine localiser (vertebral body and disc, per slice).

Region growing, the marrow reference of the parameter maps and the "lesion in the vertebral body"
check all start from the vertebral body. A template of one look's body found the aorta or an
erector spinae muscle on another generator's images, so the body is found by a small network
(``models.unet.AttentionResUNet``, base 8, three classes: background, vertebral body,
intervertebral disc) that sees every image at 2.5 mm pixels (``models.spine_io``), trained mostly on
domain-randomised studies (``phantom.randomised``: random tissue intensities, rendered tilt, discs,
posterior elements, organs) and partly on the classic look (its body drawn from the study's
parameters), so it learns the body's shape and place among its neighbours, not a brightness.

Seeds: training 30000-..., validation 800000-..., disjoint from the U-Net's and from evaluation's.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models import weights
from models.spine_io import BASE, BODY, CLASSES, DISC, labels_to_grid, to_grid
from models.unet import AttentionResUNet
from models.unet_io import normalise, segmentation_input
from training.looks import SEEDS
from training.parallel import map_studies
from training.train_unet import _augment, make_loss, resolve_device

VALIDATION_SEED = SEEDS["validation"] + 50_000
MATRICES = ((128, 128), (160, 160), (192, 192), (256, 256), (256, 192), (320, 320))


@dataclass(frozen=True, kw_only=True)
class SpineConfig:
    studies: int = 400
    train_seed: int = 30000
    val_studies: int = 16
    classic_fraction: float = 0.25
    epochs: int = 6
    steps_per_epoch: int = 200
    batch: int = 16
    lr: float = 3e-3
    seed: int = 0
    threads: int = 0
    processes: int = 1
    device: str = "auto"
    init: str | None = None  # weights to start from (their .sha256 is checked): fine-tuning


def classic_targets(params: object, shape: tuple[int, int, int]) -> np.ndarray:
    """The classic look's vertebral body (an ellipse of the study's parameters, on every slice)."""
    rows, cols, px = params.rows, params.columns, params.pixel_spacing_mm  # type: ignore[attr-defined]
    ox, oy = params.spine_offset_mm  # type: ignore[attr-defined]
    a, b = params.body_width_mm / 2, params.body_depth_mm / 2  # type: ignore[attr-defined]
    x = (np.arange(cols) - (cols - 1) / 2) * px
    y = (np.arange(rows) - (rows - 1) / 2) * px
    body = ((x[None, :] - ox) / a) ** 2 + ((y[:, None] - oy) / b) ** 2 <= 1
    return np.broadcast_to(body.astype(np.uint8) * BODY, shape)


def spine_study(seed: int, classic_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One study at the localiser's grid: images float16 (slices, S, S), targets uint8 (slices, S, S)."""
    rng = np.random.default_rng([seed, 31])
    if rng.random() < classic_fraction:
        from phantom import generate_study

        study = generate_study(seed, phases=int(rng.integers(3, 7)) if rng.random() < 0.3 else 1)
        image = segmentation_input(study.pixels)
        px = float(study.params.pixel_spacing_mm)
        targets = classic_targets(study.params, image.shape)
    else:
        from phantom.randomised import generate_randomised

        r = generate_randomised(seed, matrix=MATRICES[int(rng.integers(len(MATRICES)))])
        image = segmentation_input(r.pixels)
        px = float(r.meta["pixel_mm"])
        targets = r.body.astype(np.uint8) * BODY + (r.disc & ~r.body).astype(np.uint8) * DISC
    return to_grid(normalise(image), (px, px))[:, 0].half(), labels_to_grid(targets, (px, px))


def _one(args: tuple[int, float]) -> tuple[torch.Tensor, torch.Tensor]:
    return spine_study(*args)


def make_data(seeds: range, classic_fraction: float, processes: int, desc: str
              ) -> tuple[torch.Tensor, torch.Tensor]:
    parts = map_studies(_one, [(s, classic_fraction) for s in seeds], processes, desc)
    return torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])


def augmented_batch(images: torch.Tensor, targets: torch.Tensor, batch: int,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random slices (flattened over studies), augmented like the U-Net's crops; targets (N, 1, S, S)."""
    flat_i, flat_t = images.flatten(0, 1), targets.flatten(0, 1)
    idx = torch.randint(len(flat_i), (batch,), generator=gen)
    onehot = torch.stack([flat_t[idx] == BODY, flat_t[idx] == DISC], 1).float()
    x, y = _augment(flat_i[idx].float()[:, None], onehot, gen)
    return x, (y[:, 0] * BODY + y[:, 1] * (1 - y[:, 0]) * DISC)[:, None]


@torch.no_grad()
def predict(model: AttentionResUNet, x: torch.Tensor, chunk: int = 12) -> torch.Tensor:
    """(N, 1, S, S) -> class probabilities (N, CLASSES, S, S)."""
    device = next(model.parameters()).device
    return torch.cat([torch.softmax(model(x[i:i + chunk].to(device)).float(), 1).cpu()
                      for i in range(0, len(x), chunk)])


def body_scores(model: AttentionResUNet, images: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Mean per-study body Dice, and the share of studies whose predicted column (body and disc)
    centre falls inside the true body (dilated by one grid pixel)."""
    from scipy import ndimage

    model.eval()
    dices, hits = [], []
    for img, tgt in zip(images, targets, strict=True):
        prob = predict(model, img.float()[:, None])
        pred = prob.argmax(1).numpy()
        truth = tgt.numpy()
        inter = np.logical_and(pred == BODY, truth == BODY).sum()
        dices.append(2 * inter / max((pred == BODY).sum() + (truth == BODY).sum(), 1))
        column = pred > 0
        if not column.any():
            hits.append(False)
            continue
        cy, cx = (float(v) for v in np.argwhere(column).mean(0)[1:])
        body = ndimage.binary_dilation((truth == BODY).any(0), iterations=1)
        hits.append(bool(body[int(round(cy)), int(round(cx))]))
    model.train()
    return {"body_dice": float(np.mean(dices)), "centre_in_body": float(np.mean(hits))}


@dataclass
class _Run:
    model: AttentionResUNet
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    device: torch.device

    @classmethod
    def make(cls, cfg: SpineConfig, init: dict[str, torch.Tensor] | None = None) -> _Run:
        """A fresh network, or one starting from ``init`` (a verified state dict: ``--init``)."""
        device = resolve_device(cfg.device)
        model = AttentionResUNet(classes=CLASSES, base=BASE)
        if init is not None:
            model.load_state_dict(init)
        model = model.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * cfg.steps_per_epoch,
                                                    pct_start=0.1)
        return cls(model, opt, sched, torch.Generator().manual_seed(cfg.seed), device)

    def epoch(self, images: torch.Tensor, targets: torch.Tensor, cfg: SpineConfig, label: str) -> float:
        """``cfg.steps_per_epoch`` optimiser steps; returns the mean loss (cross-entropy + Dice)."""
        loss_fn, losses = make_loss(), []
        for _ in tqdm(range(cfg.steps_per_epoch), desc=label, unit="step"):
            x, y = augmented_batch(images, targets, cfg.batch, self.gen)
            loss = loss_fn(self.model(x.to(self.device)), y.to(self.device))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            losses.append(loss.item())
        return float(np.mean(losses))


def train(cfg: SpineConfig, work: Path, out: Path | None) -> dict:
    """Train and return the summary; with ``out``, the best weights (by validation body Dice) are saved."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # read and checked once, first: a wrong path or checksum fails before minutes of data
    init = weights.verified_state(Path(cfg.init))[0] if cfg.init is not None else None
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    images, targets = make_data(range(cfg.train_seed, cfg.train_seed + cfg.studies), cfg.classic_fraction,
                                cfg.processes, "spine phantoms")
    val_seeds = range(VALIDATION_SEED, VALIDATION_SEED + cfg.val_studies)
    val_images, val_targets = make_data(val_seeds, cfg.classic_fraction, cfg.processes, "validation")
    run = _Run.make(cfg, init)
    history: list[dict] = []
    best = -1.0
    if cfg.init is not None:  # fine-tuning keeps the weights it started from unless an epoch beats them
        best = body_scores(run.model, val_images, val_targets)["body_dice"]
        history.append({"epoch": 0, "body_dice": best, "init": cfg.init})
        torch.save(run.model.state_dict(), work / "best.pt")
    for epoch in range(cfg.epochs):
        loss = run.epoch(images, targets, cfg, f"epoch {epoch + 1}/{cfg.epochs}")
        scores = body_scores(run.model, val_images, val_targets)
        history.append({"epoch": epoch + 1, "loss": loss, **scores, "elapsed_s": round(time.time() - started, 1)})
        print(json.dumps(history[-1]), flush=True)
        if scores["body_dice"] > best:
            best = scores["body_dice"]
            torch.save(run.model.state_dict(), work / "best.pt")
    result = {"config": asdict(cfg), "history": history, "best_val_body_dice": best,
              "train_seconds": round(time.time() - started, 1), "device": str(run.device),
              "data": f"phantom seeds {cfg.train_seed}-{cfg.train_seed + cfg.studies - 1} "
                      f"({1 - cfg.classic_fraction:.0%} randomised look, the rest classic)",
              "threads": torch.get_num_threads()}
    if out is not None:
        run.model.load_state_dict(torch.load(work / "best.pt", map_location="cpu", weights_only=True))
        result["sha256"] = weights.save(run.model.cpu(), out, result)
    return result


def held_out_scores(studies: int, path: Path | None = None) -> dict[str, dict[str, float]]:
    """The shipped localiser (or ``path``) on held-out seeds of each look (900000-..., never
    trained on): body Dice and centre-in-body rate per look."""
    from pipeline.localiser import DEFAULT_LOCALISER

    model = AttentionResUNet(classes=CLASSES, base=BASE)
    weights.load_into(model, path or DEFAULT_LOCALISER)
    seeds = range(SEEDS["held_out"], SEEDS["held_out"] + studies)
    report = {}
    for look, fraction in (("classic", 1.0), ("randomised", 0.0)):
        images, targets = make_data(seeds, fraction, 1, f"held-out {look}")
        report[look] = body_scores(model, images, targets) | {"studies": studies}
    return report
