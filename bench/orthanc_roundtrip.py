"""Round trip through Orthanc: from the last instance received by Orthanc to the SEG, SR and key
image stored in Orthanc, for several phantom studies sent one after another.

    .venv/bin/python -m bench.orthanc_roundtrip [--studies 5] [--matrix 512x512]

Runs Debian's Orthanc (orthanc-test/run-orthanc.sh) and `spinenode serve` on ports the OS chose.
The time includes Orthanc's StableAge (the wait before a series counts as complete, 2 s here,
10 s in orthanc.json): the node's own share is printed too (total minus StableAge). Reference in
the same run: the time storescu takes to send the series into Orthanc.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from phantom import generate_study, write_study
from tests.acceptance.test_orthanc_routing import Env, by_study

RESULTS = {"SEG", "SR", "OT"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--matrix", default="512x512")
    args = parser.parse_args()
    stable_age = 2  # what the acceptance helpers start Orthanc with
    matrix = tuple(int(v) for v in args.matrix.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp))
        try:
            orthanc = env.start_orthanc()
            totals, sends = [], []
            for i in range(args.studies):
                folder = write_study(generate_study(700 + i, matrix=matrix), Path(tmp) / "data")
                study_uid = json.loads((folder / "truth.json").read_text())["study_instance_uid"]
                t0 = time.monotonic()
                subprocess.run(["storescu", "-aec", "ORTHANC", "+sd", "127.0.0.1", str(orthanc.dicom_port),
                                str(folder / "series")], check=True, capture_output=True)
                t1 = time.monotonic()
                while not {s["MainDicomTags"]["Modality"] for s in by_study(orthanc, study_uid)} >= RESULTS:
                    if time.monotonic() - t1 > 300:
                        raise SystemExit(f"study {i}: no results after 300 s")
                    time.sleep(0.2)
                totals.append(time.monotonic() - t1)
                sends.append(t1 - t0)
        finally:
            env.stop()
    med = statistics.median
    print(f"{args.studies} studies {args.matrix}, Orthanc StableAge {stable_age} s")
    print(f"last instance in Orthanc -> results in Orthanc: median {med(totals):.1f} s, "
          f"worst {max(totals):.1f} s, first {totals[0]:.1f} s")
    print(f"  of which the node's share (minus StableAge): median {med(totals) - stable_age:.1f} s")
    print(f"reference: storescu into Orthanc, median {med(sends):.2f} s per series")


if __name__ == "__main__":
    main()
