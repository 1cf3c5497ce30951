"""Diagnosis stages per study: CE parameter maps, the lesion cube, the 3D classifier, and
radiomics per lesion, for single-phase and dynamic 512x512 phantoms.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 .venv/bin/python -m bench.classify

Each stage is run as the worker runs it (``pipeline.analysis``: maps from the region-growing
marrow level, cube and classifier on the largest lesion, radiomics with the shipped signature's
maps) on ``--studies`` phantoms per kind (seeds 913000+); medians over studies, after one
warm-up. Reference measured in the same run: one U-Net forward pass of a 512x512 slice (bf16,
as shipped), so the ratio shows the stages' cost in units the reader already knows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from models.unet_io import segmentation_input
from phantom import generate_study
from pipeline.analysis import classify, radiomics_score
from pipeline.lesions import find_lesions
from pipeline.parameter_maps import compute
from pipeline.region_growing import segment
from pipeline.segmentation import get_segmenter


def unet_slice_s(runs: int) -> float:
    seg = get_segmenter()
    x = torch.randn(1, 1, 512, 512).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        seg.model(x)
        for _ in range(runs):
            t = time.perf_counter()
            seg.model(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def stages(seed: int, phases: int) -> dict[str, float]:
    study = generate_study(seed, phases=phases, matrix=(512, 512))
    volume = study.volume()
    image = segmentation_input(volume.pixels)
    marrow = segment(image, volume.spacing[1:]).marrow_level
    lesions = find_lesions(study.mask, volume, image, marrow)
    out = {}
    t = time.perf_counter()
    maps = compute(volume, marrow)
    out["parameter_maps"] = time.perf_counter() - t
    t = time.perf_counter()
    classify(volume, image, maps, marrow, lesions[0])
    out["cube_and_classifier"] = time.perf_counter() - t
    t = time.perf_counter()
    radiomics_score(volume, maps, lesions[0].mask)
    out["radiomics_per_lesion"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=7)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    stages(913999, 1)  # warm-up: weights, signatures, pyradiomics imports
    reference = unet_slice_s(args.runs)
    tcmalloc = "tcmalloc" in os.environ.get("LD_PRELOAD", "")
    print(f"threads={torch.get_num_threads()} tcmalloc={tcmalloc} studies={args.studies} per kind")
    print(f"reference: U-Net forward, one 512x512 slice (bf16): {1000 * reference:.1f} ms")
    for kind, phases in (("single-phase", 1), ("dynamic (5 phases)", 5)):
        rows = [stages(913000 + i, phases) for i in range(args.studies)]
        for stage in rows[0]:
            values = [r[stage] for r in rows]
            print(f"{kind:>18} {stage:>22}: median {statistics.median(values):6.3f} s  "
                  f"(range {min(values):.3f}-{max(values):.3f})  = {statistics.median(values) / reference:5.2f}x "
                  "U-Net slice")


if __name__ == "__main__":
    main()
