"""Load: several senders at once into one `spinenode serve`; nothing lost, nothing duplicated.

    .venv/bin/python -m bench.load --senders 8 --studies 25

``--senders`` threads each send ``--studies`` distinct 12-slice series (256x256, one association
per study) at the same time to a `spinenode serve` subprocess. Without ``--analyse`` the node
runs no worker (this measures receive + assemble under load); with it, every study is also
analysed and its results delivered to a PACS in this process. Then it checks: every
acknowledged instance is on disk and in the database exactly once, one job per study, no
refusals. Prints the aggregate rate and the counts.
"""

from __future__ import annotations

import argparse
import copy
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from bench.crash import RESULTS_PER_STUDY, NodeProcess, Pacs, write_config
from dicomnode.errors import NodeError
from dicomnode.scu import send_datasets
from phantom import generate_study, write_study
from pipeline.uids import derived_uid


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


def run_load(root: Path, senders: int, studies: int, analyse: bool = False, timeout_s: float = 600) -> dict:
    base_dir = root / "phantom"
    bases = [[pydicom.dcmread(p) for p in sorted((write_study(generate_study(800 + i, matrix=(256, 256)), base_dir)
                                                  / "series").glob("*.dcm"))] for i in range(studies)]
    folder = root / "node"
    folder.mkdir(parents=True)
    pacs = Pacs()
    config = write_config(folder, pacs.port, workers=1 if analyse else 0)
    node = NodeProcess(config)
    acked: list[set[str]] = [set() for _ in range(senders)]
    refused: list[int] = [0] * senders
    errors: list[str] = []
    per_sender_s: list[float] = [0.0] * senders

    def send(s: int) -> None:
        t = time.perf_counter()
        for i, base in enumerate(bases):
            datasets = variant(base, f"{s}-{i}")
            try:
                results = send_datasets(datasets, "SPINENODE", "127.0.0.1", port, calling_ae=f"SENDER{s}")
            except NodeError as exc:
                errors.append(str(exc))
                continue
            for ds, status in zip(datasets, results, strict=True):
                if status == 0:
                    acked[s].add(str(ds.SOPInstanceUID))
                else:
                    refused[s] += 1
        per_sender_s[s] = time.perf_counter() - t

    try:
        port = node.port()
        started = time.perf_counter()
        threads = [threading.Thread(target=send, args=(s,)) for s in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        total_studies = senders * studies
        db_path = folder / "var" / "spinenode.db"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # the assembler has seen every series
            db = sqlite3.connect(db_path)
            try:
                jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
            finally:
                db.close()
            results = len(pacs.received)
            if jobs >= total_studies and (not analyse or results >= RESULTS_PER_STUDY * total_studies):
                break
            time.sleep(0.5)
    finally:
        node.stop()
        pacs.stop()
    all_acked = set().union(*acked)
    db = sqlite3.connect(folder / "var" / "spinenode.db")
    try:
        rows = [r[0] for r in db.execute("SELECT sop_instance_uid FROM instances")]
        jobs_per_series = [r[0] for r in db.execute("SELECT count(*) FROM jobs GROUP BY series_id")]
        done = db.execute("SELECT count(*) FROM jobs WHERE lower(state) = 'done'").fetchone()[0]
    finally:
        db.close()
    on_disk = {p.stem for p in (folder / "var" / "instances").rglob("*.dcm")}
    return {
        "senders": senders, "studies_per_sender": studies, "instances_sent": senders * studies * 12,
        "acknowledged": sum(len(a) for a in acked), "refused": sum(refused), "association_errors": len(errors),
        "in_database": len(set(rows) & all_acked), "database_rows": len(rows), "on_disk": len(on_disk & all_acked),
        "series_with_a_job": len(jobs_per_series), "series_with_two_jobs": sum(n > 1 for n in jobs_per_series),
        "jobs_done": done, "results_received": len(pacs.received), "seconds": round(elapsed, 1),
        "instances_per_s": round(sum(len(a) for a in acked) / elapsed, 1),
        "median_sender_s": round(statistics.median(per_sender_s), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--studies", type=int, default=25)
    parser.add_argument("--analyse", action="store_true", help="run the worker too and wait for every result")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spinenode-load-") as tmp:
        r = run_load(Path(tmp), args.senders, args.studies, args.analyse)
    for k, v in r.items():
        print(f"{k:>22}: {v}")
    ok = (r["acknowledged"] == r["instances_sent"] == r["in_database"] == r["database_rows"] == r["on_disk"]
          and r["series_with_a_job"] == args.senders * args.studies and r["series_with_two_jobs"] == 0)
    print("OK: nothing lost, nothing duplicated" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
