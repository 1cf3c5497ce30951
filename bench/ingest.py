"""Ingest: instances per second the node's SCP accepts from dcmtk `storescu` over one association,
against a pynetdicom SCP that does nothing, measured in the same run.

Receivers, each a subprocess on a port the OS chose, taking turns run after run:

* ``library``: `bench/null_scp.py`, pynetdicom with the node's own ``make_ae`` (same contexts and
  maximum PDU) and a C-STORE handler that returns 0x0000 at once: the reference, the ceiling of
  the DICOM library the node is built on;
* ``node``: `spinenode serve` as shipped (fsync on), no worker: SCP, database and assembler;
* ``node-nofsync``: the same with ``node.fsync = false``, to show what flushing each file costs;
* ``storescp``: dcmtk's own receiver, for scale (C++; out of reach for any Python receiver).

dcmtk's tools run with ``TCP_NODELAY=1``: with Nagle's algorithm on (dcmtk's default) every
instance waits for a delayed ACK (about 40 ms on loopback) and every receiver measures ~22/s.
Prints the median and range of each, and each receiver's ratio to the library's median.

    .venv/bin/python -m bench.ingest [--studies 10] [--runs 5] [--matrix 512x512]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.crash import NodeProcess
from phantom import generate_study, write_study

REPO = Path(__file__).resolve().parent.parent
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")


def storescu(folder: Path, port: int, aec: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["storescu", "-aec", aec, "+sd", "+r", "127.0.0.1", str(port), str(folder)],
                   check=True, capture_output=True, env=DCMTK_ENV)
    return time.perf_counter() - t0


def _port_from(path: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise RuntimeError("receiver did not start")


def run_library(folder: Path, work: Path) -> float:
    work.mkdir(parents=True)
    port_file = work / "port"
    proc = subprocess.Popen([sys.executable, "-m", "bench.null_scp", "--port-file", str(port_file)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return storescu(folder, _port_from(port_file, proc), "SPINENODE")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _run_node(folder: Path, work: Path, fsync: bool) -> float:
    work.mkdir(parents=True)
    config = work / "config.toml"
    config.write_text(f'[node]\nhost = "127.0.0.1"\nport = 0\ndata_dir = "var"\nmin_free_disk_mb = 0\n'
                      f'fsync = {str(fsync).lower()}\n[worker]\nworkers = 0\n[logging]\nconsole = false\n'
                      '[http]\nport = 0\n')
    node = NodeProcess(config)
    try:
        return storescu(folder, node.port(), "SPINENODE")
    finally:
        node.stop()


def run_node(folder: Path, work: Path) -> float:
    return _run_node(folder, work, fsync=True)


def run_node_nofsync(folder: Path, work: Path) -> float:
    return _run_node(folder, work, fsync=False)


def run_storescp(folder: Path, work: Path) -> float:
    work.mkdir(parents=True)
    port_file = work / "port"
    # storescp cannot choose its port: take one the OS chose a moment ago (benchmark only)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    port_file.write_text(str(port))
    proc = subprocess.Popen(["storescp", "-od", str(work), "+xa", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=DCMTK_ENV)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        return storescu(folder, port, "STORESCP")
    finally:
        proc.terminate()
        proc.wait(30)


RECEIVERS: dict[str, Callable[[Path, Path], float]] = {
    "library": run_library, "node": run_node, "node-nofsync": run_node_nofsync, "storescp": run_storescp,
}


def write_phantoms(root: Path, studies: int, matrix: tuple[int, int]) -> int:
    """``studies`` phantom series (the series only) under ``root``; returns the instance count."""
    for i in range(studies):
        folder = write_study(generate_study(500 + i, matrix=matrix), root)
        (folder / "seg.dcm").unlink()
        (folder / "truth.json").unlink()
    return sum(1 for _ in root.rglob("*.dcm"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--matrix", default="512x512")
    parser.add_argument("--receivers", default=",".join(RECEIVERS), help="comma-separated subset of "
                        + ", ".join(RECEIVERS))
    args = parser.parse_args()
    if shutil.which("storescu") is None:
        raise SystemExit("dcmtk is not installed: run scripts/install.sh")
    names = args.receivers.split(",")
    matrix = (int(args.matrix.split("x")[0]), int(args.matrix.split("x")[1]))
    rates: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="spinenode-ingest-") as tmp:
        data = Path(tmp) / "data"
        n = write_phantoms(data, args.studies, matrix)
        for r in range(args.runs):
            for name in names:
                rates[name].append(n / RECEIVERS[name](data, Path(tmp) / f"{name}-{r}"))
    med = statistics.median
    print(f"{n} instances ({args.studies} studies, {args.matrix}) over one association, {args.runs} runs each, "
          f"cpu={os.cpu_count()}, dcmtk TCP_NODELAY=1")
    reference = med(rates["library"]) if "library" in rates else None
    for name, values in rates.items():
        ratio = f"  {med(values) / reference:.2f} x library" if reference else ""
        print(f"{name:>13}: median {med(values):7.1f} instances/s  [{min(values):.1f}, {max(values):.1f}]{ratio}")


if __name__ == "__main__":
    main()
