"""Two `spinenode worker` processes racing for one queue: on PostgreSQL for real (Debian's server,
started by the test: initdb as the `postgres` user in a temporary folder, a Unix socket only, the
schema made by the node's migrations) and on the node's SQLite file; each job is claimed once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.postgres import PostgresMissing, temporary_postgres
from dicomnode.db import Job, JobEvent, JobState
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL server's database, or "" for the node's own SQLite file (both shared by processes)."""
    if request.param == "sqlite":
        yield ""
        return
    try:
        with temporary_postgres() as server:
            yield server.create_database("spinenode")
    except PostgresMissing as exc:
        pytest.fail(str(exc))


def test_two_worker_processes_race_for_one_queue(database_url, node_factory, series_files) -> None:  # noqa: ANN001
    from tests.integration.test_node import send

    node = node_factory(worker={"workers": 0}, **({"database": {"url": database_url}} if database_url else {}))
    assert node.engine.dialect.name == ("postgresql" if database_url else "sqlite")
    env = os.environ | {"PYTHONPATH": str(REPO)}  # without SPINENODE_* (tests/conftest.py)
    assert node.cfg.source is not None
    workers = [subprocess.Popen([sys.executable, "-m", "dicomnode", "worker", "--config", str(node.cfg.source)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        for seed in (101, 102, 103):
            assert send(node, series_files(seed)) == [0] * 12

        def all_done() -> bool:
            with node.sessions() as s:
                states = list(s.scalars(select(Job.state)))
            return len(states) == 3 and all(state is JobState.DONE for state in states)

        wait_for(all_done, timeout=240)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(60)
    with node.sessions() as s:
        claims = [(e.job_id, e.worker) for e in s.scalars(select(JobEvent).where(JobEvent.event == "claimed"))]
    assert sorted(Counter(job for job, _ in claims).values()) == [1, 1, 1]  # every job claimed once
    assert len({worker.split(":")[1] for _, worker in claims}) == 2  # by both processes
    assert all(w.returncode == 0 for w in workers)
