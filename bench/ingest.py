"""Ingest: instances per second the node's SCP accepts from dcmtk `storescu` over loopback,
against dcmtk's own `storescp` receiving the same files in the same run.

With dcmtk's defaults, Nagle's algorithm stays on and each instance waits for a delayed ACK
(about 40 ms on loopback), which caps storescp near 22 instances/s; ``--nodelay`` runs the dcmtk
tools (sender and reference receiver) with ``TCP_NODELAY=1``, the fair reference.

Both receivers run as subprocesses on ports the OS chose; runs alternate between them; the
node runs with no worker (the SCP, its database writes and the assembler are what is measured),
with fsync on as shipped. Prints the median and range of each and the ratio node/storescp.

    .venv/bin/python bench/ingest.py [--studies 10] [--runs 5] [--matrix 256x256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phantom import generate_study, write_study

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


DCMTK_ENV = dict(os.environ)


def storescu(folder: Path, port: int, aec: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["storescu", "-aec", aec, "+sd", "+r", "127.0.0.1", str(port), str(folder)],
                   check=True, capture_output=True, env=DCMTK_ENV)
    return time.perf_counter() - t0


def run_node(folder: Path, work: Path) -> float:
    port = free_port()
    work.mkdir(parents=True)
    (work / "config.toml").write_text(
        f'[node]\nhost = "127.0.0.1"\nport = {port}\ndata_dir = "var"\nmin_free_disk_mb = 0\n'
        '[worker]\nworkers = 0\n[logging]\nconsole = false\n')
    proc = subprocess.Popen([sys.executable, "-m", "dicomnode", "serve", "--config", str(work / "config.toml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return storescu(folder, port, "SPINENODE")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def run_storescp(folder: Path, work: Path) -> float:
    port = free_port()
    work.mkdir(parents=True)
    proc = subprocess.Popen(["storescp", "-od", str(work), "+xa", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=DCMTK_ENV)
    try:
        wait_port(port)
        return storescu(folder, port, "STORESCP")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--matrix", default="256x256")
    parser.add_argument("--nodelay", action="store_true",
                        help="run the dcmtk tools with TCP_NODELAY=1 (Nagle off; dcmtk's default leaves it on)")
    args = parser.parse_args()
    if args.nodelay:
        DCMTK_ENV["TCP_NODELAY"] = "1"
    if shutil.which("storescu") is None:
        raise SystemExit("dcmtk is not installed: run scripts/install.sh")
    matrix = tuple(int(v) for v in args.matrix.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        for i in range(args.studies):
            folder = write_study(generate_study(500 + i, matrix=matrix), data)
            (folder / "seg.dcm").unlink()  # the series only
            (folder / "truth.json").unlink()
        n = sum(1 for _ in data.rglob("*.dcm"))
        node, ref = [], []
        for r in range(args.runs):
            ref.append(n / run_storescp(data, Path(tmp) / f"scp{r}"))
            node.append(n / run_node(data, Path(tmp) / f"node{r}"))
    med = statistics.median
    print(f"{n} instances ({args.studies} studies, {args.matrix}), {args.runs} runs each, "
          f"cpu={os.cpu_count()}, dcmtk TCP_NODELAY={DCMTK_ENV.get('TCP_NODELAY', 'unset')}")
    print(f"spinenode SCP  median {med(node):7.1f} instances/s  [{min(node):.1f}, {max(node):.1f}]")
    print(f"dcmtk storescp median {med(ref):7.1f} instances/s  [{min(ref):.1f}, {max(ref):.1f}]")
    print(f"ratio spinenode / storescp: {med(node) / med(ref):.2f}")


if __name__ == "__main__":
    main()
