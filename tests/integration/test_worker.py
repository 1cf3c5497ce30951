"""The worker: one outcome per job, saved once and logged once; the series read once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import pydicom
import pytest
from sqlalchemy import select

from dicomnode import outbox, queue
from dicomnode.db import Job, JobEvent, JobState
from dicomnode.node import Node
from dicomnode.scu import send_files
from dicomnode.worker import Worker
from pipeline import InputRejected
from pipeline.reasons import Reason
from tests.conftest import wait_for

QUICK = {"workers": 0, "use_unet": False, "use_radiomics": False, "use_classifier": False}
FINAL_EVENTS = {"job_done", "job_abstained", "job_abstention_sent", "job_failed", "job_lease_lost"}


@pytest.fixture
def queued(node_factory, series_files) -> Callable[..., Node]:  # noqa: ANN001
    """A node without workers whose series 101 has a queued analysis job."""

    def make(**worker: Any) -> Node:
        node = node_factory(worker=QUICK | worker)
        assert {r.status for r in send_files(series_files(101), "SPINENODE", "127.0.0.1", node.port)} == {0}
        wait_for(lambda: job(node))
        return node

    return make


def job(node: Node) -> Job | None:
    with node.sessions() as s:
        return s.scalar(select(Job))


def job_events(node: Node) -> list[str]:
    with node.sessions() as s:
        return list(s.scalars(select(JobEvent.event).order_by(JobEvent.id)))


def final_log_events(node: Node) -> list[str]:
    lines = (node.cfg.data_dir / "logs" / "spinenode.jsonl").read_text().splitlines()
    return [e for e in (json.loads(line)["event"] for line in lines) if e in FINAL_EVENTS]


def concept_codes(ds: pydicom.Dataset) -> set[str]:
    """Every coded value in an SR's content tree."""
    found = set()
    for item in ds.get("ContentSequence", []):
        found |= {code.CodeValue for code in item.get("ConceptCodeSequence", [])} | concept_codes(item)
    return found


def test_the_series_is_read_once_and_the_job_ends_done(queued, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    node = queued()
    reads: list[str] = []
    real = pydicom.dcmread

    def counting(path: Any, *args: Any, **kwargs: Any) -> pydicom.Dataset:
        reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counting)
    assert Worker(node.cfg, node.sessions, name="w").run_once()
    done = job(node)
    assert done is not None and done.state is JobState.DONE, done.last_error if done else None
    assert len(reads) == len(set(reads)) == 12  # each instance once: no second header read
    assert [o["path"] for o in done.result["outputs"]] and all(
        (node.cfg.data_dir / o["path"]).is_file() for o in done.result["outputs"])
    assert job_events(node) == ["created", "claimed", "done"]
    assert final_log_events(node) == ["job_done"]


def test_a_refusal_by_the_pipeline_is_one_abstention(queued) -> None:  # noqa: ANN001
    node = queued()
    seen: list[Sequence[pydicom.Dataset]] = []

    def refuse(datasets: Sequence[pydicom.Dataset]) -> tuple[dict, list]:
        seen.append(datasets)
        raise InputRejected(Reason.NO_LESION, "nothing there")

    assert Worker(node.cfg, node.sessions, name="w", stage=refuse).run_once()
    abstained = job(node)
    assert abstained is not None and abstained.state is JobState.ABSTAINED
    assert abstained.reasons == [Reason.NO_LESION] and abstained.reason_detail == "nothing there"
    assert len(seen) == 1 and len(seen[0]) == 12 and all("PixelData" in ds for ds in seen[0])
    assert job_events(node) == ["created", "claimed", "abstained"]
    assert final_log_events(node) == ["job_abstained"]
    (sr_path,) = (node.cfg.data_dir / "outputs").rglob("*.dcm")
    assert "ABST_NO_LESION" in concept_codes(pydicom.dcmread(sr_path))


def test_results_that_cannot_be_written_are_a_failed_attempt(queued, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    node = queued(max_attempts=3)

    def disk_full(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outbox, "write_outputs", disk_full)
    assert Worker(node.cfg, node.sessions, name="w").run_once()
    failed = job(node)
    assert failed is not None and failed.state is JobState.FAILED
    assert "No space left on device" in (failed.last_error or "")
    assert job_events(node) == ["created", "claimed", "failed"]
    assert final_log_events(node) == ["job_failed"]


def test_a_heartbeat_on_the_job_just_ended_logs_no_lost_lease(queued, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Heartbeats that tick after the save ended the job, before they are stopped, find the lease
    gone: the attempt is still logged once, as failed (CI saw a spurious job_lease_lost)."""
    node = queued(max_attempts=3, heartbeat_s=0.05)

    def disk_full(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    real_fail = queue.fail

    def fail_then_linger(*args: Any, **kwargs: Any) -> JobState:
        state = real_fail(*args, **kwargs)
        time.sleep(0.5)  # about ten heartbeats on the ended job
        return state

    monkeypatch.setattr(outbox, "write_outputs", disk_full)
    monkeypatch.setattr(queue, "fail", fail_then_linger)
    assert Worker(node.cfg, node.sessions, name="w").run_once()
    assert job_events(node) == ["created", "claimed", "failed"]
    assert final_log_events(node) == ["job_failed"]
