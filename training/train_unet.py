"""`spinenode train-unet`: train the improved U-Net on phantoms (or a site's labelled folders).

Phantoms come in two looks (``training.looks``): ``classic``, ``randomised`` (domain-randomised
3D label maps) or ``mixed`` (each study drawn from ``randomised`` with ``randomised_fraction``).
Validation uses 8 studies of each look the run trains on. ``init`` starts from existing weights
(fine-tuning), ``cache`` keeps the prepared slices so a second run skips generating them. The loss
is MONAI's ``DiceCELoss`` (cross-entropy plus the lesion channel's Dice).

Seeds: training studies use ``--train-seed`` (default 10000-...), validation 20000-..., and
evaluation (`spinenode evaluate-seg`) uses 900000-..., a range training never touches.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from models import weights
from models.unet import AttentionResUNet
from training import looks, seg_data
from training.errors import CheckpointMismatchError, TrainingDataError, TrainingError

VALIDATION_SEED = 20000


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int = 8
    steps_per_epoch: int = 250
    batch: int = 8
    crop: int = 192
    lr: float = 2e-3
    train_studies: int = 192
    train_seed: int = 10000
    val_studies: int = 8
    seed: int = 0
    threads: int = 0
    bf16: bool = True
    lesion_fraction: float = 0.7
    soften: float = 0.3  # share of lesion crops whose enhancement is pulled down (soften_lesions)
    blur: float = 0.0  # share of crops blurred (blur_some): a scanner's softer images
    look: str = "classic"
    randomised_fraction: float = 0.7
    processes: int = 1
    device: str = "auto"
    init: str | None = None  # weights to start from (their .sha256 is checked)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cpu`` and ``cuda`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise TrainingError(f"unknown device {name!r}: use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device cuda was asked for but torch sees no CUDA device")
    return torch.device(name)


def make_loss() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy plus the Dice of the lesion channel (MONAI), on (N, 2, H, W) logits and (N, 1, H, W) masks."""
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)


def _augment(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip, rotation +-10 deg, scale 0.85-1.15, gamma 0.8-1.25, gain, extra noise."""
    n = images.shape[0]
    u = torch.rand(n, 6, generator=gen)
    angle = (u[:, 0] - 0.5) * math.radians(20)
    scale = 0.85 + 0.3 * u[:, 1]
    flip = torch.where(u[:, 2] < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, torch.zeros(n)], 1),
                         torch.stack([sin * flip, cos, torch.zeros(n)], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    masks = (F.grid_sample(masks, grid, mode="bilinear", align_corners=False) >= 0.5).float()
    gamma = (0.8 + 0.45 * u[:, 3]).view(n, 1, 1, 1)
    gain = (0.85 + 0.3 * u[:, 4]).view(n, 1, 1, 1)
    noise = (0.03 * u[:, 5]).view(n, 1, 1, 1) * torch.randn(images.shape, generator=gen)
    images = (images.clamp(min=0) ** gamma) * gain + noise
    return images, masks


BLUR_SIGMA_PX = (0.5, 2.5)  # Gaussian sigma on the network's grid (about 0.4-2 mm at 0.8 mm pixels)


def blur_some(images: torch.Tensor, gen: torch.Generator, share: float,
              sigma_px: tuple[float, float] = BLUR_SIGMA_PX) -> torch.Tensor:
    """``share`` of the (N, 1, H, W) crops blurred in-plane by a Gaussian of a random sigma in
    ``sigma_px`` (MONAI's ``GaussianSmooth``); the masks stay as they are.

    Scanners differ in how soft their images are (acquired matrix, k-space filter, interpolation).
    The phantoms blur by up to 1.2 pixels of their own matrix; on the external validation studies
    another 1.2 pixels of blur took the mirror-averaged U-Net from Dice 0.921 to 0.749
    (``python -m bench.robustness``): it outlined dark structures (0.55-0.93 x marrow) as lesion.
    No random numbers are drawn when ``share`` is 0, so recipes without it train as before."""
    if share <= 0:
        return images
    from monai.transforms import GaussianSmooth

    u = torch.rand(images.shape[0], 2, generator=gen)
    out = images.clone()
    for i in torch.nonzero(u[:, 0] < share).flatten().tolist():
        sigma = sigma_px[0] + (sigma_px[1] - sigma_px[0]) * float(u[i, 1])
        out[i] = torch.as_tensor(GaussianSmooth(sigma=sigma)(images[i]))
    return out


def soften_lesions(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator, share: float,
                   ratio: tuple[float, float] = (1.15, 1.45)) -> torch.Tensor:
    """Low-enhancing lesions: in ``share`` of the (N, 1, H, W) crops, the lesion's enhancement is
    scaled down so that its median is ``ratio`` x the median of its surroundings.

    PHANTOM.md lets a primary tumour peak at 1.3 x marrow; the U-Net missed the primaries of the
    external validation set, whose medians are 1.2-1.4 x marrow. The surroundings are the ring
    3-7 pixels from the lesion in the slice (mostly marrow). The enhancement above them (a 3x3
    mean, so most of the noise stays) is scaled over the lesion and 2 pixels around it, so the
    partial-volume edge shrinks with it and the lesion's border stays where the mask has it.
    Crops with fewer than 9 lesion or ring pixels, or a lesion already that faint, are left as
    they are."""
    chosen = (torch.rand(images.shape[0], generator=gen) < share) & (masks.flatten(1).sum(1) >= 9)
    target = ratio[0] + (ratio[1] - ratio[0]) * torch.rand(images.shape[0], generator=gen)
    if not chosen.any():
        return images
    near = F.max_pool2d(masks, 5, stride=1, padding=2) > 0
    ring = (F.max_pool2d(masks, 15, stride=1, padding=7) > 0) & ~near
    local = F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    out = images.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        if int(ring[i].sum()) < 9:
            continue
        ref = float(images[i][ring[i]].median())
        level = float(images[i][masks[i] > 0].median())
        if ref <= 0 or level <= ref * float(target[i]):
            continue
        keep = (float(target[i]) - 1) * ref / (level - ref)
        out[i] = images[i] - near[i] * (1 - keep) * (local[i] - ref).clamp(min=0)
    return out


class CropSampler:
    """Random crops from prepared slices, most of them around a lesion pixel."""

    def __init__(self, data: seg_data.SliceSet, cfg: TrainConfig, gen: torch.Generator) -> None:
        self.data, self.cfg, self.gen = data, cfg, gen
        self.lesion_slices = torch.nonzero(data.masks.flatten(1).any(1)).flatten()

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, d = self.cfg, self.data
        size = d.images.shape[-1]
        half = cfg.crop // 2
        images, masks = [], []
        for _ in range(cfg.batch):
            if torch.rand(1, generator=self.gen).item() < cfg.lesion_fraction and len(self.lesion_slices):
                idx = int(self.lesion_slices[torch.randint(len(self.lesion_slices), (1,), generator=self.gen)])
                pts = torch.nonzero(d.masks[idx])
                cy, cx = pts[torch.randint(len(pts), (1,), generator=self.gen)][0].tolist()
                cy += int(torch.randint(-half // 2, half // 2 + 1, (1,), generator=self.gen))
                cx += int(torch.randint(-half // 2, half // 2 + 1, (1,), generator=self.gen))
            else:
                idx = int(torch.randint(len(d.images), (1,), generator=self.gen))
                cy, cx = (int(v) for v in torch.randint(size // 2 - 140, size // 2 + 141, (2,), generator=self.gen))
            y0 = min(max(cy - half, 0), size - cfg.crop)
            x0 = min(max(cx - half, 0), size - cfg.crop)
            images.append(d.images[idx, y0:y0 + cfg.crop, x0:x0 + cfg.crop].float())
            masks.append(d.masks[idx, y0:y0 + cfg.crop, x0:x0 + cfg.crop].float())
        return torch.stack(images)[:, None], torch.stack(masks)[:, None]


def load_data(cfg: TrainConfig, data_dir: Path | None, cache: Path | None = None
              ) -> tuple[seg_data.SliceSet, list[seg_data.SliceSet]]:
    """Training slices, and validation volumes (one SliceSet per study, for volume Dice); with
    ``cache``, read from there when it exists, else made and written there."""
    if cache is not None and cache.exists():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        return seg_data.SliceSet(*saved["train"]), [seg_data.SliceSet(*v) for v in saved["val"]]
    train, val = _make_data(cfg, data_dir)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"train": (train.images, train.masks), "val": [(v.images, v.masks) for v in val]}, cache)
    return train, val


def _make_data(cfg: TrainConfig, data_dir: Path | None) -> tuple[seg_data.SliceSet, list[seg_data.SliceSet]]:
    if data_dir is not None:
        folder = tqdm(list(seg_data.labelled_folder(data_dir)), desc="site data")
        studies = [seg_data.prepare(v.pixels, m, (v.spacing[1], v.spacing[2])) for _, v, m in folder]
        if len(studies) < 2:
            raise TrainingDataError(f"need at least 2 labelled studies under {data_dir}, found {len(studies)}")
        n_val = max(1, len(studies) // 10)
        return seg_data.SliceSet.concat(studies[n_val:]), studies[:n_val]
    seeds = range(cfg.train_seed, cfg.train_seed + cfg.train_studies)
    train = looks.prepared_studies(cfg.look, seeds, randomised_fraction=cfg.randomised_fraction,
                                   processes=cfg.processes, desc=f"{cfg.look} phantoms")
    val_seeds = range(VALIDATION_SEED, VALIDATION_SEED + cfg.val_studies)
    val_looks = ("classic", "randomised") if cfg.look == "mixed" else (cfg.look,)
    val = [s for look in val_looks for s in looks.prepared_studies(look, val_seeds, desc=f"validation {look}")]
    return seg_data.SliceSet.concat(train), val


@torch.no_grad()
def validate(model: AttentionResUNet, studies: list[seg_data.SliceSet], bf16: bool) -> float:
    """Mean per-study 3D Dice at network resolution."""
    model.eval()
    device = next(model.parameters()).device
    scores = []
    for s in studies:
        x = s.images.float()[:, None].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pred = torch.cat([model(x[i:i + 4]).float().argmax(1) for i in range(0, len(x), 4)])
        pred, truth = pred.cpu(), s.masks.bool()
        inter = (pred.bool() & truth).sum().item()
        denom = pred.sum().item() + truth.sum().item()
        scores.append(1.0 if denom == 0 else 2 * inter / denom)
    model.train()
    return float(np.mean(scores))


@dataclass
class _Run:
    """One training run's network, optimiser, schedule and the generator of crops and augmentation."""

    model: AttentionResUNet
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    total_steps: int
    device: torch.device
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    @classmethod
    def make(cls, cfg: TrainConfig) -> _Run:
        gen = torch.Generator().manual_seed(cfg.seed)
        device = resolve_device(cfg.device)
        model = AttentionResUNet()
        if cfg.init is not None:
            weights.load_into(model, Path(cfg.init))
        model = model.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        total = cfg.epochs * cfg.steps_per_epoch
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
        return cls(model=model, opt=opt, sched=sched, gen=gen, total_steps=total, device=device, loss=make_loss())

    def resume(self, ckpt: Path) -> tuple[int, float, list[dict]]:
        """Load ``ckpt``; returns the next epoch, the best validation Dice and the history."""
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        total = self.total_steps
        if state.get("total_steps", total) != total:
            raise CheckpointMismatchError(
                f"{ckpt} was made for {state['total_steps']} steps, not {total}: resume with the "
                "same --epochs and --steps-per-epoch, or use a new --work folder")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.gen.set_state(state["gen"])
        return state["epoch"] + 1, state["best"], state["history"]

    def epoch(self, sampler: CropSampler, cfg: TrainConfig, epoch: int) -> list[float]:
        """One epoch of ``cfg.steps_per_epoch`` steps; returns the loss of each step."""
        losses: list[float] = []
        bar = tqdm(range(cfg.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step")
        for _ in bar:
            losses.append(self.step(sampler, cfg))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        return losses

    def step(self, sampler: CropSampler, cfg: TrainConfig) -> float:
        """One optimiser step on an augmented batch (``cfg.soften`` of the lesion crops softened,
        ``cfg.blur`` of the crops blurred, then :func:`_augment`; cross-entropy + Dice); returns the loss."""
        images, masks = sampler.batch()
        images = blur_some(soften_lesions(images, masks, self.gen, cfg.soften), self.gen, cfg.blur)
        images, masks = _augment(images, masks, self.gen)
        images = images.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = self.model(images)
        loss = self.loss(logits.float(), masks.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss.item()

    def checkpoint(self, ckpt: Path, epoch: int, best: float, history: list[dict]) -> None:
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                    "sched": self.sched.state_dict(), "gen": self.gen.get_state(), "epoch": epoch,
                    "best": best, "history": history, "total_steps": self.total_steps}, ckpt)


def train(cfg: TrainConfig, work: Path, out: Path | None, *, resume: bool = False,
          data_dir: Path | None = None, stop_after: int | None = None, cache: Path | None = None) -> dict:
    """Train (or resume) and return the history; ``stop_after`` ends this run after that many
    epochs (the checkpoint lets a later ``resume`` finish the schedule).

    Raises :class:`TrainingDataError` (too few site studies) or :class:`CheckpointMismatchError`."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data, val = load_data(cfg, data_dir, cache)
    run = _Run.make(cfg)
    history: list[dict] = []
    start_epoch, best = 0, -1.0
    ckpt = work / "checkpoint.pt"
    if resume and ckpt.exists():
        start_epoch, best, history = run.resume(ckpt)
    sampler = CropSampler(data, cfg, run.gen)
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        losses = run.epoch(sampler, cfg, epoch)
        dice = validate(run.model, val, cfg.bf16)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": dice,
                        "elapsed_s": round(time.time() - started, 1)})
        print(json.dumps(history[-1]), flush=True)
        if dice > best:
            best = dice
            torch.save(run.model.state_dict(), work / "best.pt")
        run.checkpoint(ckpt, epoch, best, history)
    return _result(cfg, run.model, history, best, started, work, out, data_dir)


def _result(cfg: TrainConfig, model: AttentionResUNet, history: list[dict], best: float, started: float,
            work: Path, out: Path | None, data_dir: Path | None) -> dict:
    """The run's summary; with ``out``, the best weights are saved there (and their checksum added)."""
    last_seed = cfg.train_seed + cfg.train_studies - 1
    result = {"config": asdict(cfg), "history": history, "best_val_dice": best,
              "train_seconds": round(time.time() - started, 1),
              "data": str(data_dir) if data_dir else f"{cfg.look} phantom seeds {cfg.train_seed}-{last_seed}",
              "threads": torch.get_num_threads()}
    if out is not None:
        model.load_state_dict(torch.load(work / "best.pt", map_location="cpu", weights_only=True))
        result["sha256"] = weights.save(model, out, result)
    return result
