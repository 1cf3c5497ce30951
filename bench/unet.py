"""U-Net inference: milliseconds per 512x512 slice, fp32 against the shipped fast path
(channels-last + bf16 autocast), and the Dice of each on held-out phantoms.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 .venv/bin/python -m bench.unet

Timing: median of ``--runs`` forward passes of a batch of 4 slices (one warm-up first), threads
as torch sets them. Accuracy: mean Dice over ``--studies`` held-out phantoms (seeds 900000+).
How close to the limit: the model's FLOPs per slice (torch's FLOP counter) divided by this
machine's measured matmul throughput (2048x2048 matmuls, fp32 and bf16, same threads) gives the
time the slice would take at matmul speed; the ratio to the measured time is the efficiency.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from models.unet_io import segmentation_input
from phantom import generate_study
from pipeline.anatomy import normal_marrow
from pipeline.metrics import dice
from pipeline.segmentation import UNetSegmenter


def time_slice(seg: UNetSegmenter, runs: int) -> float:
    x = torch.randn(4, 1, 512, 512).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=seg.precision == "bf16"):
        seg.model(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            seg.model(x)
            times.append((time.perf_counter() - t) / 4)
    return statistics.median(times)


def flops_per_slice(seg: UNetSegmenter) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        seg.model(torch.randn(1, 1, 512, 512))
    return int(counter.get_total_flops())


def matmul_flops_per_s(dtype: torch.dtype, runs: int) -> float:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * 2048**3 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--studies", type=int, default=8)
    args = parser.parse_args()
    segs = {p: UNetSegmenter(precision=p) for p in ("fp32", "bf16")}
    ms = {p: 1000 * time_slice(s, args.runs) for p, s in segs.items()}
    scores: dict[str, list[float]] = {p: [] for p in segs}
    for seed in range(900000, 900000 + args.studies):
        study = generate_study(seed)
        image = segmentation_input(study.pixels).astype(np.float32)
        marrow = normal_marrow(image, (study.params.pixel_spacing_mm, study.params.pixel_spacing_mm))
        for p, s in segs.items():
            scores[p].append(dice(s.segment(image, marrow), study.mask))
    tcmalloc = "tcmalloc" in os.environ.get("LD_PRELOAD", "")
    print(f"threads={torch.get_num_threads()} tcmalloc={tcmalloc} runs={args.runs} studies={args.studies}")
    for p in segs:
        print(f"{p:>5}: {ms[p]:7.1f} ms per 512x512 slice   mean Dice {np.mean(scores[p]):.4f}")
    print(f"speed-up bf16/fp32: {ms['fp32'] / ms['bf16']:.2f}x   Dice difference: "
          f"{np.mean(scores['bf16']) - np.mean(scores['fp32']):+.4f}")
    flops = flops_per_slice(segs["fp32"])
    for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = matmul_flops_per_s(dtype, args.runs)
        bound_ms = 1000 * flops / peak
        print(f"{p:>5}: {flops / 1e9:.1f} GFLOP per slice; matmul {peak / 1e9:.0f} GFLOP/s -> {bound_ms:.1f} ms at "
              f"matmul speed; measured {ms[p]:.1f} ms = {bound_ms / ms[p]:.0%} of that limit")


if __name__ == "__main__":
    main()
