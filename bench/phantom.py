"""Phantom generation speed: one 12-slice study with its SEG, generated and written.

Prints the median (and min/max) over N runs, and as a reference measured in the same run, the
time pydicom alone takes to write the same 12 MR files (no generation, no SEG).

    .venv/bin/python -m bench.phantom [--runs 7] [--matrix 512x512]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from phantom import generate_study, write_study
from phantom.writer import series_datasets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--matrix", default="512x512")
    args = parser.parse_args()
    matrix = tuple(int(v) for v in args.matrix.split("x"))
    generate_study(0, matrix=matrix)  # warm imports and caches
    gen, total, ref = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            t0 = time.perf_counter()
            study = generate_study(100 + i, matrix=matrix)
            t1 = time.perf_counter()
            write_study(study, Path(tmp) / "full")
            t2 = time.perf_counter()
            datasets = series_datasets(study)
            t3 = time.perf_counter()
            ref_dir = Path(tmp) / "ref" / str(i)
            ref_dir.mkdir(parents=True)
            for ds in datasets:
                ds.save_as(ref_dir / f"{ds.InstanceNumber}.dcm", implicit_vr=False, little_endian=True)
            t4 = time.perf_counter()
            gen.append(t1 - t0)
            total.append(t2 - t0)
            ref.append(t4 - t3)
    med = statistics.median
    print(f"matrix {args.matrix}, {args.runs} runs")
    print(f"generate (arrays only)       median {med(gen):.3f} s  [{min(gen):.3f}, {max(gen):.3f}]")
    print(f"generate + write series+SEG  median {med(total):.3f} s  [{min(total):.3f}, {max(total):.3f}]")
    print(f"reference: pydicom writes 12 median {med(ref):.3f} s")
    print(f"ratio total / reference      {med(total) / med(ref):.1f}x")


if __name__ == "__main__":
    main()
