"""How the node's analysis (segmentations and coded finding) holds up when another scanner or
generator renders the same studies differently: the external validation studies
(``../shared/external-validation`` by default), each changed as a whole by one of
:data:`CHANGES` (every phase alike) and analysed in this process by the node's pipeline
(:func:`pipeline.analysis.analyse`: both segmentations, the classifier, the radiomics model and the
plausibility checks; the shipped weights).

    .venv/bin/python -m bench.robustness [--cases DIR] [--out report.json]

Printed: per case and change, U-Net and region growing Dice with the truth, the finding that would
be coded and the classifier's P(metastasis); then per change the mean Dice, its ratio to the
unchanged studies' (the reference, measured in the same run), and the findings coded right, wrong
and indeterminate.
Changes that only rescale the stored values should change nothing (both methods work relative to
normal marrow); blur, noise, an offset and a gamma change the image's look and show how far the
methods generalise. Validation only: never train or tune on these cases.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from bench.external import DEFAULT_CASES
from pipeline.metrics import dice

Change = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of 5 % of the brighter half's median (about marrow's level)."""
    level = float(np.median(pixels[pixels > np.percentile(pixels, 50)]))
    return pixels + rng.normal(0.0, 0.05 * level, pixels.shape).astype(np.float32)


def _blur(sigma: float) -> Change:
    return lambda pixels, rng: ndimage.gaussian_filter(pixels, (0, 0, sigma, sigma))


# name -> change of the (phases, slices, rows, cols) pixels; blur sigmas are pixels of the series'
# own matrix, in-plane, on top of whatever blur the series already has
CHANGES: dict[str, Change] = {
    "none": lambda pixels, rng: pixels,
    "gain x0.1": lambda pixels, rng: pixels * 0.1,
    "gain x8": lambda pixels, rng: pixels * 8.0,
    "offset +10%": lambda pixels, rng: pixels + 0.1 * float(np.percentile(pixels, 99)),
    "noise 5%": _noise,
    "blur 0.6 px": _blur(0.6),
    "blur 1.2 px": _blur(1.2),
    "gamma 0.8": lambda pixels, rng: (pixels / float(pixels.max())) ** 0.8 * float(pixels.max()),
}


def run(cases: list[Path]) -> list[dict[str, object]]:
    from pipeline.analysis import analyse
    from pipeline.errors import InputRejected
    from pipeline.volume import load_series

    rows: list[dict[str, object]] = []
    for case in cases:
        truth = np.load(case / "truth.npz")["mask"].astype(bool)
        label = json.loads((case / "truth.json").read_text())["label"]
        volume = load_series(sorted((case / "series").glob("*.dcm")))
        for name, change in CHANGES.items():
            pixels = change(volume.pixels, np.random.default_rng(0)).astype(np.float32)
            row: dict[str, object] = {"case": case.name, "label": label, "change": name}
            try:
                result = analyse(replace(volume, pixels=pixels))
            except InputRejected as exc:  # what the node would answer: no SEG, no SR
                row.update(dice_unet=0.0, dice_rg=0.0, finding=f"rejected: {exc.reason}", p_classifier=None)
            else:
                unet = result.unet_mask if result.unet_mask is not None else np.zeros_like(truth)
                row.update(dice_unet=round(dice(unet, truth), 3),
                           dice_rg=round(dice(result.region_growing.mask, truth), 3),
                           finding=result.verdict.summary()["finding"] if result.verdict is not None
                           else "indeterminate",
                           p_classifier=None if result.classification is None
                           else round(result.classification.probability_metastasis, 4))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def summarise(rows: list[dict[str, object]]) -> dict[str, dict[str, float | int]]:
    """Per change: mean U-Net and region growing Dice, each over the unchanged studies' mean, and
    the findings coded right, wrong and indeterminate (or rejected)."""
    def mean(change: str, key: str) -> float:
        return float(np.mean([float(r[key]) for r in rows if r["change"] == change]))  # type: ignore[arg-type]

    reference = {key: mean("none", key) for key in ("dice_unet", "dice_rg")}
    out: dict[str, dict[str, float | int]] = {}
    for change in CHANGES:
        mine = [r for r in rows if r["change"] == change]
        coded = [r for r in mine if r["finding"] in ("metastasis", "primary")]
        right = sum(r["finding"] == r["label"] for r in coded)
        out[change] = {"dice_unet": round(mean(change, "dice_unet"), 3),
                       "ratio_unet": round(mean(change, "dice_unet") / max(reference["dice_unet"], 1e-9), 3),
                       "dice_rg": round(mean(change, "dice_rg"), 3),
                       "ratio_rg": round(mean(change, "dice_rg") / max(reference["dice_rg"], 1e-9), 3),
                       "right": right, "wrong": len(coded) - right, "indeterminate": len(mine) - len(coded)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--out", type=Path, default=None, help="write the rows and the summary as JSON")
    args = parser.parse_args()
    cases = sorted(p for p in args.cases.iterdir() if (p / "truth.json").exists())
    rows = run(cases)
    summary = summarise(rows)
    for change, figures in summary.items():
        print(change.ljust(12), json.dumps(figures))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
