"""Load: several senders at once into one `spinenode serve`; nothing lost, nothing duplicated, and
the aggregate rate against one sender's, measured in the same run.

    .venv/bin/python -m bench.load --senders 8 --studies 25

Each sender is dcmtk `storescu` (a separate process, as a PACS is), sending ``--studies`` distinct
12-slice series (256x256 by default), one association per study, one study after another. The
run first times one sender alone into a fresh node (the single-association rate), then
``--senders`` at the same time into another fresh node. Without ``--analyse`` the node runs no
worker (receive + assemble under load); with it, every study is also analysed and its results
delivered to a PACS in this process. Then it checks: every acknowledged instance is on disk and in
the database exactly once, one job per study, no refusals. Prints the rates, their ratio and the
counts; exits 1 on any loss or duplicate.
"""

from __future__ import annotations

import argparse
import copy
import os
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from bench.crash import RESULTS_PER_STUDY, NodeProcess, Pacs, write_config
from phantom import generate_study, write_study
from pipeline.uids import derived_uid

DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")


def variant(datasets: Sequence[Dataset], tag: str) -> list[Dataset]:
    """The same series as another study (new Study, Series and SOP Instance UIDs)."""
    out = []
    study, series = derived_uid("load", tag, "study"), derived_uid("load", tag, "series")
    for ds in datasets:
        new = copy.deepcopy(ds)  # Dataset(ds) would share the data elements with the base
        new.StudyInstanceUID, new.SeriesInstanceUID = study, series
        new.SOPInstanceUID = new.file_meta.MediaStorageSOPInstanceUID = derived_uid("load", tag, str(ds.SOPInstanceUID))
        out.append(new)
    return out


def prepare(root: Path, senders: int, studies: int, matrix: tuple[int, int], run: str) -> list[list[Path]]:
    """Folders of DICOM files, one per study, per sender; every study has its own UIDs."""
    bases = [[pydicom.dcmread(p) for p in sorted((write_study(generate_study(800 + i, matrix=matrix),
                                                              root / "phantom") / "series").glob("*.dcm"))]
             for i in range(studies)]
    folders: list[list[Path]] = []
    for s in range(senders):
        folders.append([])
        for i, base in enumerate(bases):
            folder = root / run / f"sender{s}" / f"study{i}"
            folder.mkdir(parents=True)
            for ds in variant(base, f"{run}-{s}-{i}"):
                ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
            folders[s].append(folder)
    return folders


def _send(folder: Path, port: int, calling_ae: str) -> tuple[int, int]:
    """One association with `storescu`; returns (acknowledged, refused or lost)."""
    files = len(list(folder.glob("*.dcm")))
    proc = subprocess.run(["storescu", "-v", "-aet", calling_ae, "-aec", "SPINENODE", "+sd", "127.0.0.1",
                           str(port), str(folder)], capture_output=True, text=True, env=DCMTK_ENV, check=False)
    acknowledged = proc.stderr.count("Received Store Response (Success)") + proc.stdout.count(
        "Received Store Response (Success)")
    return acknowledged, files - acknowledged


def _count_db(db_path: Path) -> dict[str, int]:
    db = sqlite3.connect(db_path)
    try:
        rows = [r[0] for r in db.execute("SELECT sop_instance_uid FROM instances")]
        jobs_per_series = [r[0] for r in db.execute("SELECT count(*) FROM jobs GROUP BY series_id")]
        done = db.execute("SELECT count(*) FROM jobs WHERE lower(state) = 'done'").fetchone()[0]
    finally:
        db.close()
    return {"database_rows": len(rows), "distinct_in_database": len(set(rows)),
            "series_with_a_job": len(jobs_per_series), "series_with_two_jobs": sum(n > 1 for n in jobs_per_series),
            "jobs_done": done}


def _wait_for_jobs(db_path: Path, pacs: Pacs, total_studies: int, analyse: bool, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # the assembler has seen every series (and, analysing, results came)
        db = sqlite3.connect(db_path)
        try:
            jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
        finally:
            db.close()
        if jobs >= total_studies and (not analyse or len(pacs.received) >= RESULTS_PER_STUDY * total_studies):
            return
        time.sleep(0.5)


def run_load(root: Path, senders: int, studies: int, analyse: bool = False, timeout_s: float = 600,
             matrix: tuple[int, int] = (256, 256), run: str = "load") -> dict:
    """``senders`` storescu processes at once into a fresh `spinenode serve`; the counts."""
    folders = prepare(root, senders, studies, matrix, run)
    node_dir = root / f"{run}-node"
    node_dir.mkdir(parents=True)
    pacs = Pacs()
    node = NodeProcess(write_config(node_dir, pacs.port, workers=1 if analyse else 0))
    results: list[tuple[int, int]] = [(0, 0)] * senders

    def sender(s: int) -> None:
        counts = [_send(folder, port, f"SENDER{s}") for folder in folders[s]]
        results[s] = (sum(a for a, _ in counts), sum(r for _, r in counts))

    try:
        port = node.port()
        started = time.perf_counter()
        threads = [threading.Thread(target=sender, args=(s,)) for s in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        _wait_for_jobs(node_dir / "var" / "spinenode.db", pacs, senders * studies, analyse, timeout_s)
    finally:
        node.stop()
        pacs.stop()
    sent = {p.stem for sender_folders in folders for f in sender_folders for p in f.glob("*.dcm")}
    on_disk = {p.stem for p in (node_dir / "var" / "instances").rglob("*.dcm")}
    acknowledged = sum(a for a, _ in results)
    return {
        "senders": senders, "studies_per_sender": studies, "instances_sent": senders * studies * 12,
        "acknowledged": acknowledged, "refused": sum(r for _, r in results),
        **_count_db(node_dir / "var" / "spinenode.db"), "on_disk": len(on_disk & sent),
        "results_received": len(pacs.received), "seconds": round(elapsed, 1),
        "instances_per_s": round(acknowledged / elapsed, 1),
    }


def lossless(r: dict) -> bool:
    return (r["acknowledged"] == r["instances_sent"] == r["database_rows"] == r["distinct_in_database"]
            == r["on_disk"] and r["series_with_a_job"] == r["senders"] * r["studies_per_sender"]
            and r["series_with_two_jobs"] == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--studies", type=int, default=25, help="studies per sender")
    parser.add_argument("--matrix", default="256x256")
    parser.add_argument("--analyse", action="store_true", help="run the worker too and wait for every result")
    args = parser.parse_args()
    matrix = (int(args.matrix.split("x")[0]), int(args.matrix.split("x")[1]))
    with tempfile.TemporaryDirectory(prefix="spinenode-load-") as tmp:
        one = run_load(Path(tmp), 1, args.studies, args.analyse, matrix=matrix, run="one")
        many = run_load(Path(tmp), args.senders, args.studies, args.analyse, matrix=matrix, run="many")
    for name, r in (("one sender", one), (f"{args.senders} senders", many)):
        print(f"--- {name}")
        for k, v in r.items():
            print(f"{k:>22}: {v}")
    print(f"aggregate / single-association rate: {many['instances_per_s'] / one['instances_per_s']:.2f} "
          f"({args.matrix}, cpu={os.cpu_count()}, median of 1 run each)")
    ok = lossless(one) and lossless(many)
    print("OK: nothing lost, nothing duplicated" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

