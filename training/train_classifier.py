"""`spinenode train-classifier`: the 3D Inception-ResNet + SE classifier, its 10-fold CV, a
held-out comparison with the radiomics model, and the shipped weights.

Seeds: training studies 40000-... of the classic look (single-phase and dynamic mixed) and
60000-... of the domain-randomised look (single-phase; ``--randomised-studies``) and 65000-... of its
dynamic variant (3-8 phases; ``--randomised-dynamic-studies``), held-out studies
910000-... (classic) and 900000-... (randomised), never used for training or for the radiomics
signatures. Cubes are cached (``--work``, named by the spine localiser's checksum, whose marrow
reference they depend on) so that CV and training can be re-run without regenerating phantoms.

Steps: (1) 10-fold stratified CV on the training studies (a fresh network per fold; ACC, PRE,
REC, F1, AUC per fold -> mean and range, the analogue of the paper's Table 3); (2) the final
network on all training studies -> ``--out`` with checksum; (3) on held-out single-phase and
dynamic studies: the classifier's and the shipped radiomics signatures' P(metastasis), AUCs, and
the ROC curves of both on one PNG (the analogue of Fig. 10).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold
from torch.nn import functional as F
from tqdm import tqdm

from models import weights
from models.inception3d import Classifier3D, InceptionResNet3D
from pipeline.cube import CHANNELS
from pipeline.cube import VERSION as CUBE_VERSION
from pipeline.volume import Volume
from training.classifier_data import (
    CubeSet,
    look_items,
    phantom_cubes,
    radiomics_probability,
    scored_phantom_cubes,
    site_items,
)
from training.cv_metrics import binary_metrics, summarise
from training.errors import TrainingDataError

TRAIN_SEED = 40000
RANDOMISED_TRAIN_SEED = 60000
RANDOMISED_DYNAMIC_TRAIN_SEED = 65000
HELD_OUT_SEED = 910000
RANDOMISED_HELD_OUT_SEED = 900000


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    studies: int = 240
    steps: int = 150
    batch: int = 16
    lr: float = 2e-3
    folds: int = 10
    seed: int = 0
    threads: int = 0
    held_out_single: int = 60
    held_out_dynamic: int = 40
    randomised_studies: int = 0
    randomised_dynamic_studies: int = 0  # dynamic studies of the randomised look (seeds 65000-)
    held_out_randomised: int = 0
    held_out_randomised_dynamic: int = 0  # dynamic studies of the randomised look (seeds 905000-)
    processes: int = 1
    masks: str = "truth"  # the lesion each cube is centred on: the ground truth's or the node's own
    outline_jitter: bool = False  # the mask channel grown or shrunk by 1-2 mm in half the cubes
    with_node_cubes: bool = False  # also the cubes around the node's own lesions (masks "truth" only)
    vary_appearance: bool = False  # image and peak channels blurred or given a gamma (vary_appearance)


LESION_CHANNEL = CHANNELS.index("lesion")  # the mask of the lesion classified


def jitter_outline(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(n, channels, slices, rows, cols) cubes with the lesion mask channel, in half of them, grown
    or shrunk in-plane by 1 or 2 pixels (1 mm each, a 3x3 or 5x5 maximum or minimum filter): a
    segmentation 1 mm larger or smaller than the one trained on. Without it the shipped single-phase
    network's P moved by 0.26 on average when the node's masks were grown by 1 mm
    (``models/cards/classifier.md``)."""
    n = x.shape[0]
    which = torch.randint(0, 8, (n,), generator=gen)  # 0-3 unchanged; 4, 5 grow 1, 2 px; 6, 7 shrink
    out = x.clone()
    mask = x[:, LESION_CHANNEL:LESION_CHANNEL + 1]
    for code, k, grow in ((4, 3, True), (5, 5, True), (6, 3, False), (7, 5, False)):
        chosen = which == code
        if not chosen.any():
            continue
        m = mask[chosen] if grow else -mask[chosen]
        filtered = F.max_pool3d(m, (1, k, k), stride=1, padding=(0, k // 2, k // 2))
        out[chosen, LESION_CHANNEL:LESION_CHANNEL + 1] = filtered if grow else -filtered
    return out


RATIO_CHANNELS = (CHANNELS.index("image"), CHANNELS.index("peak"))  # relative to normal marrow
APPEARANCE_BLUR_PX = (0.5, 2.0)  # Gaussian sigma in-plane, pixels of the cube's 1 mm grid
APPEARANCE_GAMMA = (0.75, 1.33)  # exponent of the ratio to marrow, drawn log-uniformly


def vary_appearance(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(n, channels, slices, rows, cols) cubes whose channels relative to normal marrow (the image
    and the peak map) are, in about half the cubes each, blurred in-plane (MONAI's
    ``GaussianSmooth``, sigma 0.5-2 mm) and raised to a power of 0.75-1.33 (marrow, at 1, stays at
    1; a lesion at 2 x marrow lands at 1.7-2.5 x); the mask, inflow and outflow channels untouched.

    Scanners differ in sharpness and in how tissue contrast maps to signal; on the external
    validation studies a slight blur or a gamma of 0.8 moved the classifier's P of two primaries
    across the uncertain band (``python -m bench.robustness``). Trained with it, the network should
    lean less on the exact texture and level of enhancement."""
    from monai.transforms import GaussianSmooth

    n = x.shape[0]
    u = torch.rand(n, 4, generator=gen)
    out = x.clone()
    channels = list(RATIO_CHANNELS)
    low, high = math.log(APPEARANCE_GAMMA[0]), math.log(APPEARANCE_GAMMA[1])
    for i in range(n):
        if u[i, 0] < 0.5:
            sigma = APPEARANCE_BLUR_PX[0] + (APPEARANCE_BLUR_PX[1] - APPEARANCE_BLUR_PX[0]) * float(u[i, 1])
            out[i, channels] = torch.as_tensor(GaussianSmooth(sigma=(0.0, sigma, sigma))(out[i, channels]))
        if u[i, 2] < 0.5:
            gamma = math.exp(low + (high - low) * float(u[i, 3]))
            out[i, channels] = out[i, channels].clamp(min=0) ** gamma
    return out


def _augment(x: torch.Tensor, gen: torch.Generator, outline_jitter: bool = False,
             appearance: bool = False) -> torch.Tensor:
    """Left-right flip, in-plane shift up to 4 mm, slight gain and noise; with ``outline_jitter``
    the lesion's mask first grown or shrunk (:func:`jitter_outline`), with ``appearance`` the
    image and peak channels first blurred or given a gamma (:func:`vary_appearance`)."""
    if outline_jitter:
        x = jitter_outline(x, gen)
    if appearance:
        x = vary_appearance(x, gen)
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
    shifts = torch.randint(-4, 5, (n, 2), generator=gen)
    x = torch.stack([torch.roll(x[i], (int(shifts[i, 0]), int(shifts[i, 1])), dims=(-2, -1)) for i in range(n)])
    gain = 0.9 + 0.2 * torch.rand(n, 1, 1, 1, 1, generator=gen)
    return x * gain + 0.02 * torch.randn(x.shape, generator=gen)


def train_network(data: CubeSet, cfg: TrainConfig, desc: str = "train") -> InceptionResNet3D:
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = InceptionResNet3D()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    labels = data.labels
    by_class = [torch.nonzero(labels == c).flatten() for c in (0, 1)]
    model.train()
    bar = tqdm(range(cfg.steps), desc=desc, unit="step", leave=False)
    for _ in bar:
        # balanced batches: half of each class
        idx = torch.cat([cls[torch.randint(len(cls), (cfg.batch // 2,), generator=gen)] for cls in by_class])
        x = _augment(data.cubes[idx].float(), gen, cfg.outline_jitter, cfg.vary_appearance)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def predict(model: Classifier3D, cubes: torch.Tensor, batch: int = 32) -> np.ndarray:
    model.eval()
    return torch.cat([model.predict_proba(cubes[i:i + batch].float()) for i in range(0, len(cubes), batch)]).numpy()


def cross_validate(data: CubeSet, cfg: TrainConfig) -> dict[str, Any]:
    y = data.labels.numpy()
    oof = np.zeros(len(y))
    per_fold = []
    folds = StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed).split(np.zeros(len(y)), y)
    for k, (train, test) in enumerate(folds, start=1):
        model = train_network(data.subset(train), cfg, desc=f"fold {k}/{cfg.folds}")
        oof[test] = predict(model, data.cubes[torch.as_tensor(test)])
        per_fold.append(binary_metrics(y[test], oof[test]))
        print(f"fold {k}: " + ", ".join(f"{m} {v:.3f}" for m, v in per_fold[-1].items()), flush=True)
    summary = summarise(per_fold)
    dyn = data.dynamic.numpy()
    pooled = {mode: binary_metrics(y[sel], oof[sel]) for mode, sel in (("single", ~dyn), ("dynamic", dyn)) if sel.any()}
    return {"folds": cfg.folds, "metrics": summary, "pooled_out_of_fold": pooled, "per_fold": per_fold}


def radiomics_probabilities(items: Iterable[tuple[str, Volume, np.ndarray, int]], masks: str = "truth",
                            names: list[str] | None = None) -> np.ndarray:
    """P(metastasis) of the shipped radiomics signature for each study (only those in ``names``
    when given), on the ground truth's largest lesion or the node's (``masks="node"``)."""
    from training.node_segmentation import reference_lesions

    out = []
    for name, volume, mask, _ in items:
        if names is not None and name not in names:
            continue
        lesion = reference_lesions(volume, mask, masks)
        if lesion is None:
            raise TrainingDataError(f"{name}: the node found no lesion (not one of the cubes' studies)")
        out.append(radiomics_probability(volume, lesion))
    return np.array(out)


def reliability(y: np.ndarray, prob: np.ndarray, bins: int = 5) -> list[dict[str, Any]]:
    """The reliability curve: per bin of predicted P(metastasis) (equal widths over [0, 1]), the
    number of studies, their mean prediction and the observed share of metastases. A calibrated
    model has the two close in every bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    return [{"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "studies": int((which == b).sum()),
             "mean_predicted": round(float(prob[which == b].mean()), 3),
             "observed_metastasis": round(float(y[which == b].mean()), 3)}
            for b in range(bins) if (which == b).any()]


def _cache_tag(masks: str = "truth") -> str:
    """Cubes depend on normal marrow's level, hence on the spine localiser that finds the body,
    and, on the node's masks, on the U-Net's weights and how its output becomes a mask
    (``pipeline.segmentation.MASK_VERSION``; version 1 is named by the weights alone)."""
    from pipeline.localiser import DEFAULT_LOCALISER
    from pipeline.segmentation import DEFAULT_WEIGHTS, MASK_VERSION

    tag = f"c{len(CHANNELS)}v{CUBE_VERSION}-spine{weights.sha256_file(DEFAULT_LOCALISER)[:8]}"
    node = f"-node{weights.sha256_file(DEFAULT_WEIGHTS)[:8]}" + (f"m{MASK_VERSION}" if MASK_VERSION > 1 else "")
    return tag if masks == "truth" else tag + node


def _look_tag(look: str) -> str:
    """The look as cache files name it: the randomised look with its version, so that studies made
    before a change to its generator are not read back as those of the same seeds now."""
    from phantom.randomised import LOOK_VERSION

    return f"{look}v{LOOK_VERSION}" if look == "randomised" else look


def _cubes_file(work: Path, look: str, seeds: range, phases: int | None, dynamic_fraction: float | None,
                masks: str) -> Path:
    """Where the cubes of these studies are cached in ``work``."""
    return work / f"{_look_tag(look)}-{seeds.start}-{len(seeds)}-p{phases}-d{dynamic_fraction}-{_cache_tag(masks)}.npz"


def cached_cubes(work: Path, look: str, seeds: range, *, phases: int | None = None,
                 dynamic_fraction: float | None = None,
                 processes: int = 1, desc: str = "cubes", masks: str = "truth") -> CubeSet:
    cache = _cubes_file(work, look, seeds, phases, dynamic_fraction, masks)
    if cache.exists():
        return CubeSet.load(cache)
    data = phantom_cubes(look, seeds, phases=phases, dynamic_fraction=dynamic_fraction, processes=processes,
                         desc=desc, masks=masks)
    data.save(cache)
    return data


def cached_held_out(work: Path, look: str, seeds: range, phases: int | None, masks: str, processes: int,
                    desc: str) -> tuple[CubeSet, np.ndarray]:
    """Held-out studies' cubes (every study of a dynamic set dynamic) and the radiomics model's
    P(metastasis) on the same lesions, cached in ``work``: the cubes as :func:`cached_cubes` names
    them, the probabilities by the shipped signatures' checksums too, so a new signature is scored
    afresh. Made together, each study segmented once (in ``processes`` processes)."""
    from pipeline.analysis import SIGNATURES

    sigs = "".join(weights.sha256_file(SIGNATURES / f"radiomics_{m}.json")[:6] for m in ("single", "dynamic"))
    cubes_file = _cubes_file(work, look, seeds, phases, 1.0, masks)
    rad_file = work / (f"radiomics-{_look_tag(look)}-{seeds.start}-{len(seeds)}-p{phases}-{_cache_tag(masks)}"
                       f"-r{sigs}.npy")
    if cubes_file.exists() and rad_file.exists():
        return CubeSet.load(cubes_file), np.load(rad_file)
    if cubes_file.exists():  # a new signature: only the radiomics model is scored again
        data = CubeSet.load(cubes_file)
        rad = radiomics_probabilities(look_items(look, seeds, phases, 1.0), masks, data.names)
    else:
        data, rad = scored_phantom_cubes(look, seeds, phases=phases, dynamic_fraction=1.0, processes=processes,
                                         desc=desc, masks=masks)
        data.save(cubes_file)
    np.save(rad_file, rad)
    return data, rad


def held_out(model: Classifier3D, cfg: TrainConfig, work: Path, figure: Path | None) -> dict[str, Any]:
    """Classifier and radiomics model on held-out phantoms, per mode; ROC curves of both."""
    results: dict[str, Any] = {}
    curves = {}
    sets = (("single", "classic", range(HELD_OUT_SEED, HELD_OUT_SEED + cfg.held_out_single), 1),
            ("dynamic", "classic", range(HELD_OUT_SEED + 5000, HELD_OUT_SEED + 5000 + cfg.held_out_dynamic), None),
            ("randomised", "randomised",
             range(RANDOMISED_HELD_OUT_SEED, RANDOMISED_HELD_OUT_SEED + cfg.held_out_randomised), 1),
            ("randomised_dynamic", "randomised", range(RANDOMISED_HELD_OUT_SEED + 5000, RANDOMISED_HELD_OUT_SEED
                                                       + 5000 + cfg.held_out_randomised_dynamic), None))
    for mode, look, seeds, phases in sets:
        if not len(seeds):
            continue
        data, rad = cached_held_out(work, look, seeds, phases, cfg.masks, cfg.processes, f"held-out {mode}")
        y = data.labels.numpy()
        t = time.perf_counter()
        prob = predict(model, data.cubes)
        per_study = (time.perf_counter() - t) / len(y)
        results[mode] = {"studies": len(y), "look": look, "seeds": f"{seeds.start}-{seeds.stop - 1}",
                         "masks": cfg.masks, "left_out": len(seeds) - len(y),
                         "classifier": binary_metrics(y, prob), "radiomics": binary_metrics(y, rad),
                         "classifier_reliability": reliability(y, prob),
                         "classifier_s_per_study_batched": round(per_study, 4)}
        curves[mode] = (y, prob, rad)
    if figure is not None:
        _roc_figure(curves, figure)
    return results


def _roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 5))
    for ax, (mode, (y, prob, rad)) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        for name, scores, colour in (("3D Inception-ResNet + SE", prob, "tab:red"),
                                     ("radiomics (Rad-score)", rad, "tab:blue")):
            fpr, tpr, _ = roc_curve(y, scores)
            ax.plot(fpr, tpr, color=colour, label=f"{name}: AUC {roc_auc_score(y, scores):.3f}")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title(f"held-out phantoms, {mode.replace('_', ' ')} (n={len(y)})")
        ax.legend(loc="lower right")
    fig.suptitle("Metastasis vs primary malignant bone tumour (synthetic data, not for diagnosis)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def load_training_set(cfg: TrainConfig, work: Path, data_dir: Path | None, labels: Path | None) -> CubeSet:
    if data_dir is not None:
        if labels is None:
            raise TrainingDataError("--data needs --labels (CSV: study_instance_uid,label)")
        if cfg.with_node_cubes:
            raise TrainingDataError("--with-node-cubes works on phantoms only: a site folder's cubes are "
                                    "centred on its SEG's lesions")
        items = site_items(data_dir, labels)
        return CubeSet.build(items, total=len(items), desc="site cubes")
    if cfg.with_node_cubes and cfg.masks != "truth":
        raise TrainingDataError("--with-node-cubes adds the node's cubes to the ground truth's: "
                                "use it with --masks truth")
    kinds = (cfg.masks, "node") if cfg.with_node_cubes else (cfg.masks,)
    parts = [cached_cubes(work, look, seeds, dynamic_fraction=share, processes=cfg.processes,
                          desc=f"{name} cubes ({masks} masks)", masks=masks)
             for masks in kinds for name, look, seeds, share in _training_sets(cfg) if len(seeds)]
    if not parts:
        raise TrainingDataError("no training studies: give --studies, --randomised-studies or "
                                "--randomised-dynamic-studies")
    return CubeSet.concat(parts)


def _training_sets(cfg: TrainConfig) -> tuple[tuple[str, str, range, float | None], ...]:
    """(description, look, seeds, dynamic share) of each phantom training set; the classic look's
    share is its default (:data:`training.classifier_data.DYNAMIC_FRACTION`). ``--studies 0`` leaves
    the classic look out, so a network trained on the randomised look alone can be scored on the
    classic one (leave-one-look-out)."""
    return (("classic phantom", "classic", range(TRAIN_SEED, TRAIN_SEED + cfg.studies), None),
            ("randomised phantom", "randomised",
             range(RANDOMISED_TRAIN_SEED, RANDOMISED_TRAIN_SEED + cfg.randomised_studies), None),
            ("randomised dynamic phantom", "randomised",
             range(RANDOMISED_DYNAMIC_TRAIN_SEED, RANDOMISED_DYNAMIC_TRAIN_SEED + cfg.randomised_dynamic_studies), 1.0))


def _data_description(cfg: TrainConfig) -> str:
    text = ", ".join(f"{name} seeds {seeds.start}-{seeds.stop - 1}" for name, _, seeds, _ in _training_sets(cfg)
                     if len(seeds))
    if cfg.masks == "node":
        text += "; cubes around the lesions the node segments (shipped U-Net)"
    elif cfg.with_node_cubes:
        text += "; cubes around the ground truth's lesions and, beside them, around the node's (shipped U-Net)"
    return text


def train(cfg: TrainConfig, work: Path, out: Path | None, *, data_dir: Path | None = None, labels: Path | None = None,
          figure: Path | None = None, report: Path | None = None, skip_cv: bool = False) -> dict[str, Any]:
    if cfg.with_node_cubes and not skip_cv:
        raise TrainingDataError("--with-node-cubes needs --no-cv: a study's two cubes would fall in different folds")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = load_training_set(cfg, work, data_dir, labels)
    print(f"{len(data)} training cubes: {int(data.labels.sum())} metastasis, "
          f"{int(data.dynamic.sum())} dynamic", flush=True)
    result: dict[str, Any] = {"config": asdict(cfg), "training_studies": len(data),
                              "data": str(data_dir) if data_dir else _data_description(cfg)}
    if not skip_cv:
        result["cv10"] = cross_validate(data, cfg)
    model = train_network(data, cfg, desc="final")
    if out is not None:
        # the whole recipe (augmentations included), so that the weights' record does not depend on
        # a person copying the command line into it
        meta = {"model": "InceptionResNet3D", "in_channels": len(CHANNELS), "width": 4, "data": result["data"],
                "steps": cfg.steps, "batch": cfg.batch, "config": asdict(cfg), "torch": torch.__version__}
        result["sha256"] = weights.save(model, out, meta)
    if data_dir is None and (cfg.held_out_single or cfg.held_out_dynamic or cfg.held_out_randomised
                             or cfg.held_out_randomised_dynamic):
        result["held_out"] = held_out(model, cfg, work, figure)
    result["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text + "\n")
    return result
