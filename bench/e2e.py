"""End to end through `spinenode serve`: latency per study with its split per stage, then
throughput with a queue of studies and the peak memory.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
        .venv/bin/python -m bench.e2e --studies 10 --matrix 512x512 [--processes 2]
    .venv/bin/python -m bench.e2e --throughput 50 --matrix 512x512

The node runs as the README's main job runs it, `spinenode serve` with its worker in one process
(``--processes 2``: `spinenode serve` without a worker beside a `spinenode worker` process, which
then find each other's work by polling the database); a pynetdicom SCP in this process is the PACS.

Latency (default): single-phase 12-slice phantom series are sent one at a time (pynetdicom, one
association each). Measured from the moment the last instance is acknowledged to the moment the
PACS has acknowledged SEG, SR and key image; split into each pipeline stage as the job recorded
it (load, region growing, U-Net, lesions, parameter maps, radiomics, classifier, building the
objects) and the rest, itself split by the database's timestamps: the assembler (last instance to
job queued), the queue's pick-up, the job's own time outside its stages (reading and writing the
files), the outbox and the sending. Reference in the same run: the time to send the 12
instances (what a PACS spends anyway).

Throughput (``--throughput N``): N studies are sent at once, then the clock runs until the
last result arrives; studies per hour, and the peak resident memory (VmHWM) of the SCP process
and of the worker process.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pydicom

from bench.crash import REPO, RESULTS_PER_STUDY, NodeProcess, Pacs, write_config
from dicomnode.scu import send_datasets
from phantom import generate_study, write_study


class TimedPacs(Pacs):
    """Also remembers when each study's results arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, list[float]] = {}

    def _store(self, event) -> int:  # noqa: ANN001
        status = super()._store(event)
        with self.lock:
            self.arrivals.setdefault(str(event.dataset.StudyInstanceUID), []).append(time.perf_counter())
        return status

    def done_at(self, study_uid: str) -> float | None:
        with self.lock:
            times = self.arrivals.get(study_uid, [])
            return max(times) if len(times) >= RESULTS_PER_STUDY else None


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _at(text: str | None) -> float:
    return dt.datetime.fromisoformat(text).timestamp() if text else float("nan")


def job_timings(db_path: Path, series_uid: str) -> dict[str, float]:
    """The stages the job recorded, and where the rest went, from the database's timestamps:
    ``assembler`` (last instance to job queued), ``pick_up`` (queued to claimed), ``job_other``
    (the job's own time outside its stages: reading, writing the objects, saving), ``to_outbox``
    (job end to results queued for sending); ``sending`` (the rest, until the PACS has all three
    objects) is added by the caller, who knows when they arrived."""
    db = sqlite3.connect(db_path)
    try:
        row = db.execute("SELECT jobs.id, jobs.result, jobs.created_at, series.last_received_at FROM jobs "
                         "JOIN series ON jobs.series_id = series.id WHERE series.series_uid = ? "
                         "AND lower(jobs.state) = 'done'", (series_uid,)).fetchone()
        if row is None:
            return {}
        job_id, result, created, last_received = row
        claimed = db.execute("SELECT max(at) FROM job_events WHERE job_id = ? AND event = 'claimed'",
                             (job_id,)).fetchone()[0]
        queued = db.execute("SELECT max(created_at) FROM outbox WHERE job_id = ?", (job_id,)).fetchone()[0]
    finally:
        db.close()
    result = json.loads(result)
    stages = result.get("timings_s", {})
    return {**stages, "assembler": _at(created) - _at(last_received), "pick_up": _at(claimed) - _at(created),
            "job_other": result.get("seconds", 0.0) - sum(stages.values()),
            "to_outbox": _at(queued) - _at(claimed) - result.get("seconds", 0.0)}


@contextlib.contextmanager
def running(folder: Path, processes: int) -> Iterator[tuple[TimedPacs, NodeProcess, subprocess.Popen | None]]:
    """A PACS here and the node: `spinenode serve` with its worker (one process, as the README's
    main job runs), or without one beside a `spinenode worker` (two); all stopped after."""
    pacs = TimedPacs()
    scp, worker = start(folder, pacs.port, processes)
    try:
        yield pacs, scp, worker
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        scp.stop()
        pacs.stop()


def start(folder: Path, pacs_port: int, processes: int) -> tuple[NodeProcess, subprocess.Popen | None]:
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, pacs_port, workers=2 - processes, quiet_period_s=120.0)
    scp = NodeProcess(config)
    scp.port()
    if processes == 1:
        return scp, None
    env = dict(os.environ, PYTHONPATH=str(REPO))  # `spinenode worker` runs one worker whatever worker.workers says
    worker = subprocess.Popen([sys.executable, "-m", "dicomnode", "worker", "--config", str(config)],
                              cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return scp, worker


def studies_on_disk(root: Path, count: int, matrix: tuple[int, int], first_seed: int) -> list[list[pydicom.Dataset]]:
    out: list[list[pydicom.Dataset]] = []
    for i in range(count):
        folder = write_study(generate_study(first_seed + i, matrix=matrix, phases=1), root)
        out.append([pydicom.dcmread(p) for p in sorted((folder / "series").glob("*.dcm"))])
    return out


def latency(root: Path, studies: Sequence[list[pydicom.Dataset]], processes: int) -> None:
    rows = []
    with running(root / "node", processes) as (pacs, scp, worker):
        port = scp.port()
        warm = studies[0]  # the first study loads the models: reported separately
        for k, datasets in enumerate(studies):
            t0 = time.perf_counter()
            statuses = send_datasets(datasets, "SPINENODE", "127.0.0.1", port, calling_ae="BENCH")
            acked = time.perf_counter()
            assert statuses == [0] * len(datasets), statuses
            study_uid, series_uid = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
            deadline = acked + 180
            while pacs.done_at(study_uid) is None and time.perf_counter() < deadline:
                time.sleep(0.01)
            done = pacs.done_at(study_uid)
            if done is None:
                print(f"study {k}: no results within 180 s")
                continue
            timings = job_timings(root / "node" / "var" / "spinenode.db", series_uid)
            accounted = sum(timings.values())  # stages, the job's own time and the waits before and after
            rows.append({"send": acked - t0, "total": done - acked, **timings, "sending": done - acked - accounted,
                         "first": datasets is warm})
        rss = _peak_rss(scp, worker)
    steady = [r for r in rows if not r["first"]] or rows
    totals = [r["total"] for r in steady]
    print(f"studies: {len(steady)} (+1 warm-up: {rows[0]['total']:.2f} s, models loaded)")
    print(f"last instance acknowledged -> SEG, SR, key image acknowledged: median {statistics.median(totals):.2f} s, "
          f"worst {max(totals):.2f} s")
    stages = [k for k in steady[0] if k not in ("send", "total", "first", *REST)]
    for stage in stages:
        print(f"  {stage:>16}: median {statistics.median(r.get(stage, 0.0) for r in steady):.3f} s")
    pipeline_s = statistics.median(sum(r.get(s, 0.0) for s in stages) for r in steady)
    rest_s = statistics.median(totals) - pipeline_s
    print(f"  {'pipeline total':>16}: median {pipeline_s:.3f} s; the rest: {rest_s:.3f} s, of which")
    for part in REST:
        print(f"  {part:>16}: median {statistics.median(r.get(part, 0.0) for r in steady):.3f} s")
    send_s = statistics.median(r["send"] for r in steady)
    print(f"reference: sending the 12 instances: median {send_s:.3f} s; ratio end-to-end / send "
          f"{statistics.median(totals) / send_s:.1f}")
    print(f"peak RSS: {rss}")


REST = ("assembler", "pick_up", "job_other", "to_outbox", "sending")


def _peak_rss(scp: NodeProcess, worker: subprocess.Popen | None) -> str:
    if worker is None:
        return f"node (SCP and worker) {peak_rss_mb(scp.proc.pid):.0f} MB"
    return f"SCP {peak_rss_mb(scp.proc.pid):.0f} MB, worker {peak_rss_mb(worker.pid):.0f} MB"


def throughput(root: Path, studies: Sequence[list[pydicom.Dataset]], processes: int) -> None:
    with running(root / "node", processes) as (pacs, scp, worker):
        port = scp.port()
        warm = studies[0]  # load the models first, so that the figure is the steady state
        send_datasets(warm, "SPINENODE", "127.0.0.1", port, calling_ae="BENCH")
        while pacs.done_at(str(warm[0].StudyInstanceUID)) is None:
            time.sleep(0.05)
        queue = studies[1:]
        t0 = time.perf_counter()
        senders = [threading.Thread(target=send_datasets, args=(d, "SPINENODE", "127.0.0.1", port),
                                    kwargs={"calling_ae": "BENCH"}) for d in queue]
        for s in senders:  # one after the other: a PACS routing a backlog
            s.start()
            s.join()
        sent = time.perf_counter() - t0
        uids = [str(d[0].StudyInstanceUID) for d in queue]
        deadline = time.perf_counter() + 60 * 60
        while any(pacs.done_at(u) is None for u in uids) and time.perf_counter() < deadline:
            time.sleep(0.2)
        finished = [pacs.done_at(u) for u in uids]
        elapsed = max(f for f in finished if f is not None) - t0
        rss = _peak_rss(scp, worker)
    done = sum(f is not None for f in finished)
    print(f"{done}/{len(queue)} studies with results in {elapsed:.0f} s (all sent after {sent:.0f} s): "
          f"{3600 * done / elapsed:.0f} studies/hour; {elapsed / done:.2f} s per study")
    print(f"peak RSS: {rss}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--matrix", default="512x512")
    parser.add_argument("--throughput", type=int, default=0, help="queue this many studies at once instead")
    parser.add_argument("--processes", type=int, choices=(1, 2), default=1,
                        help="1: `spinenode serve` with its worker (the main job); 2: serve beside `spinenode worker`")
    args = parser.parse_args()
    matrix = tuple(int(v) for v in args.matrix.lower().split("x"))
    count = (args.throughput or args.studies) + 1
    tcmalloc = "tcmalloc" in os.environ.get("LD_PRELOAD", "")
    print(f"matrix {args.matrix}, {args.processes} node process(es), tcmalloc preloaded in this process: {tcmalloc} "
          "(the node re-execs with it)")
    with tempfile.TemporaryDirectory(prefix="spinenode-e2e-") as tmp:
        root = Path(tmp)
        data = studies_on_disk(root / "phantom", count, matrix, 960000)  # type: ignore[arg-type]
        (throughput if args.throughput else latency)(root, data, args.processes)


if __name__ == "__main__":
    main()
