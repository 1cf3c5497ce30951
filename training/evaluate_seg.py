"""`spinenode evaluate-seg`: U-Net against region growing on held-out phantoms (Table 2 analogue).

Held-out seeds start at 900000, a range training and validation never use. Prints a table of PA,
IoU and Dice (equations 10-12) and the 95th-percentile Hausdorff distance in mm (MONAI; a study
where a method found nothing has none and is left out of that mean, and counted) per study and as
mean +- sd, writes it as CSV and Markdown, and a PNG with box plots and a few overlays (truth
green, U-Net red, region growing blue). The U-Net is scored as the node reports it: its components
in the located vertebral body, faint one-slice ones dropped (:func:`pipeline.plausibility.drop_faint`,
:func:`pipeline.plausibility.keep_in_body`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from models.unet_io import segmentation_input
from phantom import generate_study
from phantom.params import SLICE_THICKNESS_MM
from pipeline.metrics import segmentation_scores
from pipeline.region_growing import enhancement_image
from pipeline.region_growing import segment as region_growing
from pipeline.segmentation import UNetSegmenter
from training.errors import TrainingError

HELD_OUT_SEED = 900000
METHODS = ("unet", "region_growing")


def held_out_study(look: str, seed: int, phases: int) -> tuple[np.ndarray, np.ndarray, float, dict]:
    """(pixels (phases, slices, rows, cols), truth mask, pixel spacing in mm, description) of one
    held-out study of ``look``."""
    if look == "classic":
        study = generate_study(seed, phases=phases)
        p = study.params
        return (study.pixels.astype(np.float32), study.mask, p.pixel_spacing_mm,
                {"label": p.label_name, "matrix": f"{p.rows}x{p.columns}"})
    if look == "randomised":
        from phantom.randomised import generate_randomised

        r = generate_randomised(seed, phases=phases)
        rows, cols = r.meta["matrix"]
        return (r.pixels.astype(np.float32), r.mask, float(r.meta["pixel_mm"]),
                {"label": "metastasis" if r.label else "primary", "matrix": f"{rows}x{cols}",
                 "contrast": r.meta["contrast"]})
    raise TrainingError(f"unknown phantom look {look!r}: use classic or randomised")


def hd95_mm(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """95th-percentile symmetric Hausdorff distance (MONAI); NaN when either mask is empty."""
    if not pred.any() or not truth.any():
        return float("nan")
    import warnings

    import torch
    from monai.metrics import compute_hausdorff_distance

    def t(m: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(m))[None, None].float()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI 1.6 deprecation inside its own helper
        return float(compute_hausdorff_distance(t(pred), t(truth), include_background=True, percentile=95,
                                                spacing=list(spacing))[0, 0])


def _summary(rows: list[dict]) -> dict:
    summary = {f"{m}_{k}": {"mean": float(np.mean([r[f"{m}_{k}"] for r in rows])),
                            "sd": float(np.std([r[f"{m}_{k}"] for r in rows], ddof=1)) if len(rows) > 1 else 0.0}
               for m in METHODS for k in ("pa", "iou", "dice")}
    for m in METHODS:
        found = [r[f"{m}_hd95_mm"] for r in rows if np.isfinite(r[f"{m}_hd95_mm"])]
        summary[f"{m}_hd95_mm"] = {"mean": float(np.mean(found)) if found else float("nan"),
                                   "sd": float(np.std(found, ddof=1)) if len(found) > 1 else 0.0,
                                   "studies_without": len(rows) - len(found)}
    return summary


def _table_rows(summary: dict, which: str = "") -> list[str]:
    """The Markdown table's rows of both methods from a :func:`_summary`."""
    lines = []
    for m, name in (("unet", "Improved U-Net"), ("region_growing", "Region growing")):
        cells = [f"{100 * summary[f'{m}_{k}']['mean']:.2f} +- {100 * summary[f'{m}_{k}']['sd']:.2f}"
                 for k in ("pa", "iou", "dice")]
        hd = summary[f"{m}_hd95_mm"]
        cells.append(f"{hd['mean']:.1f} +- {hd['sd']:.1f}" + (f" ({hd['studies_without']} empty)"
                                                               if hd["studies_without"] else ""))
        lines.append(f"| {name}{which} | " + " | ".join(cells) + " |")
    return lines


def evaluate(studies: int, out: Path, *, seed: int = HELD_OUT_SEED, phases: int = 1,
             precision: str = "auto", look: str = "classic", weights: Path | None = None) -> dict:
    """Scores on held-out studies of ``look`` (the shipped U-Net, or ``weights``)."""
    out.mkdir(parents=True, exist_ok=True)
    segmenter = UNetSegmenter(precision=precision) if weights is None else UNetSegmenter(weights, precision=precision)
    rows: list[dict] = []
    overlays: list[tuple] = []
    for s in tqdm(range(seed, seed + studies), desc=f"held-out {look} phantoms", unit="study"):
        pixels, mask, px, about = held_out_study(look, s, phases)
        image = segmentation_input(pixels)
        rg = region_growing(image, (px, px), enhancement_image(pixels))  # as the node grows them
        preds = {"unet": segmenter.segment_in_body(image, rg.body.mask, rg.marrow_level, (px, px)),
                 "region_growing": rg.mask}
        row = {"seed": s, **about}
        for method, pred in preds.items():
            for metric, value in segmentation_scores(pred, mask).items():
                row[f"{method}_{metric}"] = value
            row[f"{method}_hd95_mm"] = hd95_mm(pred, mask, (SLICE_THICKNESS_MM, px, px))
        rows.append(row)
        if len(overlays) < 4:
            overlays.append((image, mask, preds, s))
    summary = _summary(rows)
    with (out / "segmentation_per_study.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = ["| model | PA (%) | IoU (%) | Dice (%) | HD95 (mm) |", "| --- | --- | --- | --- | --- |"]
    table += _table_rows(summary)
    # the randomised look: its studies within PHANTOM.md's tissue table apart from the wild ones
    for contrast in sorted({r["contrast"] for r in rows if "contrast" in r}):
        part = [r for r in rows if r.get("contrast") == contrast]
        summary[f"contrast_{contrast}"] = {"studies": len(part)} | _summary(part)
        table += _table_rows(summary[f"contrast_{contrast}"], f", {contrast} contrast (n = {len(part)})")
    text = "\n".join(table)
    (out / "segmentation_table.md").write_text(
        f"Held-out {look} phantoms: seeds {seed}-{seed + studies - 1}, phases {phases}\n\n{text}\n")
    (out / "segmentation_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _figure(rows, overlays, out / "segmentation.png")
    print(text)
    return {"summary": summary, "rows": rows}


def _figure(rows: list[dict], overlays: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(14, 7))
    for i, metric in enumerate(("pa", "iou", "dice")):
        ax = fig.add_subplot(2, 4, i + 1)
        ax.boxplot([[r[f"{m}_{metric}"] for r in rows] for m in METHODS])
        ax.set_xticks([1, 2], ["U-Net", "Region\ngrowing"])
        ax.set_title(metric.upper() if metric != "dice" else "Dice")
    for j, (image, truth, preds, seed) in enumerate(overlays):
        k = int(np.argmax(truth.reshape(truth.shape[0], -1).sum(1)))
        ys, xs = np.nonzero(truth[k])
        cy, cx = int(ys.mean()), int(xs.mean())
        half = int(45 / 0.5) if image.shape[1] >= 384 else 50
        sl = (slice(max(cy - half, 0), cy + half), slice(max(cx - half, 0), cx + half))
        ax = fig.add_subplot(2, 4, 5 + j if j < 3 else 4)
        ax.imshow(image[k][sl], cmap="gray")
        for mask, colour in ((truth, "lime"), (preds["unet"], "red"), (preds["region_growing"], "deepskyblue")):
            edge = mask[k][sl] & ~ndimage.binary_erosion(mask[k][sl])
            ax.contour(edge, levels=[0.5], colors=colour, linewidths=0.8)
        ax.set_title(f"seed {seed}, slice {k + 1}")
        ax.axis("off")
    fig.suptitle("Held-out phantoms: truth green, U-Net red, region growing blue (not for diagnosis)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
