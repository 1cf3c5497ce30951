"""Several workers on one queue: studies per hour with 1, 2 and 4 `spinenode worker` processes
beside one `spinenode serve` (no worker of its own), on PostgreSQL (Debian's server, started here)
or SQLite, as workers on other machines would run (same database URL, same instance storage).

    .venv/bin/python -m bench.workers --workers 1 2 4 --studies 8 --database postgresql

For each worker count: a fresh database and data folder; the workers start, one warm-up study per
worker loads the models in each; then ``--studies`` phantom studies are sent one after another (a
PACS routing a backlog) and the clock runs from the first send to the last result at the PACS (a
pynetdicom SCP in this process). Each worker gets ``cores / workers`` torch threads (at least 1).
Prints studies per hour per worker count and the ratio to one worker, measured in the same run;
checks that every study has exactly one result set and that no job ran twice.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pydicom
from sqlalchemy import create_engine, func, select

from bench.crash import REPO, RESULTS_PER_STUDY, NodeProcess, Pacs, write_config
from bench.e2e import studies_on_disk
from bench.postgres import temporary_postgres
from dicomnode.db import Job, JobEvent
from dicomnode.scu import send_datasets


@contextlib.contextmanager
def databases(kind: str) -> Iterator[Iterator[str]]:
    """An endless supply of fresh, empty database URLs ("" = SQLite under each data folder)."""
    if kind == "sqlite":
        yield iter(lambda: "", None)
        return
    with temporary_postgres() as server:
        yield (server.create_database(f"bench{i}") for i in range(1_000_000))


def start_workers(config: Path, count: int, threads: int) -> list[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=str(REPO), SPINENODE_WORKER_TORCH_THREADS=str(threads))
    return [subprocess.Popen([sys.executable, "-m", "dicomnode", "worker", "--config", str(config)],
                             cwd=config.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


def wait_results(pacs: Pacs, studies: Sequence[list[pydicom.Dataset]], timeout_s: float) -> float | None:
    """Seconds until every study has its results at the PACS (None: not within ``timeout_s``)."""
    t0, uids = time.perf_counter(), [str(s[0].StudyInstanceUID) for s in studies]
    while time.perf_counter() - t0 < timeout_s:
        if all(len(pacs.results(u)) >= RESULTS_PER_STUDY for u in uids):
            return time.perf_counter() - t0
        time.sleep(0.1)
    return None


def jobs_that_ran_twice(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            claims = conn.execute(select(JobEvent.job_id, func.count()).where(JobEvent.event == "claimed")
                                  .group_by(JobEvent.job_id)).all()
            jobs = conn.scalar(select(func.count()).select_from(Job))
    finally:
        engine.dispose()
    if not claims:
        raise RuntimeError(f"no claimed events for {jobs} jobs: the count below would mean nothing")
    return sum(1 for _, n in claims if n > 1)


def run(folder: Path, url: str, workers: int, warm: Sequence[list[pydicom.Dataset]],
        backlog: Sequence[list[pydicom.Dataset]], threads: int) -> dict:
    folder.mkdir(parents=True)
    pacs = Pacs()
    config = write_config(folder, pacs.port, workers=0, quiet_period_s=120.0)
    if url:
        with config.open("a") as fh:
            fh.write(f'[database]\nurl = "{url}"\n')
    scp = NodeProcess(config)
    procs: list[subprocess.Popen] = []
    try:
        port = scp.port()
        procs = start_workers(config, workers, threads)
        for study in warm[:workers]:  # one per worker: each loads its models before the clock starts
            send_datasets(study, "SPINENODE", "127.0.0.1", port, calling_ae="BENCH")
        if wait_results(pacs, warm[:workers], 600) is None:
            raise RuntimeError("the warm-up studies got no results within 600 s")
        t0 = time.perf_counter()
        for study in backlog:
            assert send_datasets(study, "SPINENODE", "127.0.0.1", port, calling_ae="BENCH") == [0] * len(study)
        if wait_results(pacs, backlog, 3600) is None:
            raise RuntimeError("the backlog got no results within an hour")
        total = time.perf_counter() - t0
        duplicates = len(pacs.received) - len({sop for _, sop in pacs.received})
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        scp.stop()
        pacs.stop()
    db_url = url or f"sqlite:///{folder / 'var' / 'spinenode.db'}"
    return {"workers": workers, "seconds": total, "per_hour": 3600 * len(backlog) / total,
            "duplicate_results": duplicates, "jobs_claimed_twice": jobs_that_ran_twice(db_url)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--matrix", default="256x256")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args()
    matrix = tuple(int(v) for v in args.matrix.lower().split("x"))
    cores = os.cpu_count() or 1
    print(f"{cores} cores; database {args.database}; {args.studies} studies of {args.matrix} per run "
          f"(after one warm-up study per worker)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="spinenode-workers-") as tmp, databases(args.database) as urls:
        root = Path(tmp)
        most = max(args.workers)
        data = studies_on_disk(root / "phantom", most * len(args.workers) + args.studies, matrix,  # type: ignore[arg-type]
                               970000)
        backlog = data[:args.studies]
        for i, count in enumerate(args.workers):
            warm = data[args.studies + i * most: args.studies + (i + 1) * most]
            threads = max(1, cores // count)
            row = run(root / f"w{count}", next(urls), count, warm, backlog, threads)
            rows.append(row)
            print(f"{count} worker(s), {threads} torch thread(s) each: {row['seconds']:.1f} s, "
                  f"{row['per_hour']:.0f} studies/hour; duplicate results {row['duplicate_results']}, "
                  f"jobs claimed twice {row['jobs_claimed_twice']}", flush=True)
    base = rows[0]["per_hour"]
    print("ratio to " + f"{rows[0]['workers']} worker(s): "
          + ", ".join(f"{r['workers']}: {r['per_hour'] / base:.2f}" for r in rows))
    return 0 if all(r["duplicate_results"] == 0 and r["jobs_claimed_twice"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
