"""The node over real associations on localhost (ports from the OS) and a real SQLite file."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage, Verification  # type: ignore[attr-defined]
from sqlalchemy import func, select

from dicomnode import queue
from dicomnode.db import Instance, Job, JobEvent, JobKind, JobState, Series, SeriesState
from dicomnode.node import Node
from dicomnode.retry import RetryPolicy
from dicomnode.scu import send_files
from dicomnode.worker import Worker
from pipeline.reasons import Reason
from tests.conftest import wait_for, write_sagittal_t2


def send(node: Node, paths: list[Path], calling_ae: str = "TESTSCU") -> list[int | None]:
    return [r.status for r in send_files(paths, "SPINENODE", "127.0.0.1", node.port, calling_ae=calling_ae)]


def jobs(node: Node) -> list[Job]:
    with node.sessions() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def series_rows(node: Node) -> list[Series]:
    with node.sessions() as s:
        return list(s.scalars(select(Series)))


def job_done(node: Node) -> Job | None:
    return next((j for j in jobs(node) if j.state is JobState.DONE), None)


def test_complete_series_gives_exactly_one_job_that_is_done(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory()
    assert send(node, series_files(101)) == [0] * 12
    job = wait_for(lambda: job_done(node))
    assert job.kind is JobKind.ANALYSE and job.result["shape"] == [1, 12, 256, 256]
    assert len(jobs(node)) == 1
    with node.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 12
        files = s.scalars(select(Instance.path)).all()
    assert all((node.cfg.data_dir / p).is_file() for p in files)
    log = (node.cfg.data_dir / "logs" / "spinenode.jsonl").read_text()
    events = {json.loads(line)["event"] for line in log.splitlines()}
    assert {"instance_stored", "series_complete", "job_claimed", "job_done"} <= events
    assert "PHANTOM^" not in log and "PH00000101" not in log  # no patient name or ID


def test_eleven_slices_abstain_after_the_quiet_period(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory(protocol={"quiet_period_s": 1.0})
    send(node, series_files(101)[:11])
    job = wait_for(lambda: next((j for j in jobs(node) if j.state is JobState.ABSTAINED), None), timeout=20)
    assert job.kind is JobKind.ABSTAIN and job.reasons == [Reason.SLICE_COUNT]
    assert series_rows(node)[0].state is SeriesState.ABSTAINED
    # the missing slice arrives late: the series re-opens and completes
    send(node, series_files(101)[11:])
    assert wait_for(lambda: job_done(node)).kind is JobKind.ANALYSE


def test_duplicates_are_acknowledged_and_stored_once(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory()
    files = series_files(101)
    assert send(node, files + files[:3]) == [0] * 15
    wait_for(lambda: job_done(node))
    assert send(node, files) == [0] * 12  # the whole series again after its job
    with node.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 12
    assert len(jobs(node)) == 1


def test_conflicting_duplicate_is_kept_aside(node_factory, series_files, tmp_path) -> None:  # noqa: ANN001
    node = node_factory()
    first = series_files(101)[0]
    send(node, [first])
    ds = pydicom.dcmread(first)
    ds.WindowWidth = 1
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed)
    assert send(node, [changed]) == [0]
    kept = list((node.cfg.data_dir / "conflicts").rglob("*.dcm"))
    assert len(kept) == 1


def test_one_series_over_two_associations_in_shuffled_order(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory()
    files = series_files(102)
    random.Random(3).shuffle(files)
    send(node, files[:5])
    send(node, files[5:])
    assert wait_for(lambda: job_done(node)).result["shape"] == [1, 12, 256, 256]
    assert len(jobs(node)) == 1


def test_sagittal_series_is_ignored(node_factory, series_files, tmp_path) -> None:  # noqa: ANN001
    node = node_factory()
    out = write_sagittal_t2(series_files(103), tmp_path, ".1")
    assert send(node, out) == [0] * 12
    series = wait_for(lambda: [s for s in series_rows(node) if s.state is SeriesState.IGNORED])
    assert series[0].reasons == [Reason.NOT_VIBE_FAMILY]
    assert jobs(node) == []


def test_non_whitelisted_calling_ae_is_refused(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory(node={"allowed_calling_aes": ["PACS"]})
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="SPINENODE")
    assert assoc.is_rejected
    assert send(node, series_files(101)[:1], calling_ae="PACS") == [0]


def test_wrong_called_ae_is_refused(node_factory) -> None:  # noqa: ANN001
    node = node_factory()
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    assert ae.associate("127.0.0.1", node.port, ae_title="SOMEONEELSE").is_rejected
    assoc = ae.associate("127.0.0.1", node.port, ae_title="SPINENODE")
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()


def test_jpegls_series_is_stored_as_received_and_loads(node_factory, jpegls_study) -> None:  # noqa: ANN001
    node = node_factory()
    files = sorted((jpegls_study / "series").glob("*.dcm"))
    assert send(node, files) == [0] * 12
    assert wait_for(lambda: job_done(node)).result["shape"] == [1, 12, 256, 192]
    with node.sessions() as s:
        assert set(s.scalars(select(Instance.transfer_syntax))) == {"1.2.840.10008.1.2.4.80"}


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")  # the point of the test
@pytest.mark.parametrize(("attr", "value", "status"), [
    ("SOPInstanceUID", "1.2.3.abc", 0xC211),
    ("SeriesInstanceUID", "../../../etc", 0xC211),
    ("StudyInstanceUID", "", 0xC211),
])
def test_invalid_uids_get_a_specific_status(node_factory, series_files, tmp_path, attr, value, status) -> None:  # noqa: ANN001
    node = node_factory()
    ds = pydicom.dcmread(series_files(101)[0])
    setattr(ds, attr, value)
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(MRImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="SPINENODE")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ds).Status == status
    finally:
        assoc.release()
    assert not (node.cfg.data_dir / "instances").exists()  # nothing written for a refused instance


def test_expired_lease_returns_the_job_to_the_queue(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory(worker={"workers": 0, "lease_s": 2.0, "heartbeat_s": 0.5})
    send(node, series_files(101))
    wait_for(lambda: jobs(node))
    dead_worker = queue.claim(node.sessions, "crashed-worker", lease_s=0.5)
    assert dead_worker is not None and jobs(node)[0].state is JobState.RUNNING
    policy = RetryPolicy(max_attempts=5, base_s=1, max_s=1)
    wait_for(lambda: queue.requeue_expired(node.sessions, policy), timeout=5)
    assert jobs(node)[0].state is JobState.QUEUED
    assert Worker(node.cfg, node.sessions, name="healthy").run_once()
    job = jobs(node)[0]
    assert job.state is JobState.DONE and job.attempts == 2
    with node.sessions() as s:
        events = s.scalars(select(JobEvent.event).where(JobEvent.job_id == job.id).order_by(JobEvent.id)).all()
    assert events == ["created", "claimed", "lease_expired", "claimed", "done"]


def test_the_heartbeat_keeps_a_job_longer_than_its_lease(node_factory, series_files) -> None:  # noqa: ANN001
    """A 1 s lease, an analysis of several seconds (the real one, held 3.5 s longer so that it
    outlasts the lease on any machine): while it runs, another party keeps looking for expired
    leases (as every polling worker does); the heartbeat renews the lease, so the job is never
    taken back and runs once."""
    import threading
    import time

    from dicomnode.worker import analysis_stage

    node = node_factory(worker={"workers": 0, "lease_s": 1.0, "heartbeat_s": 0.25})
    send(node, series_files(101))
    wait_for(lambda: jobs(node))
    policy = RetryPolicy(max_attempts=5, base_s=1, max_s=1)
    stop, requeued = threading.Event(), []

    def watcher() -> None:
        while not stop.is_set():
            requeued.append(queue.requeue_expired(node.sessions, policy))
            stop.wait(0.1)

    thread = threading.Thread(target=watcher)
    thread.start()
    try:
        analyse = analysis_stage(node.cfg)
        slow = Worker(node.cfg, node.sessions, name="slow", stage=lambda ds: (time.sleep(3.5), analyse(ds))[1])
        assert slow.run_once()
    finally:
        stop.set()
        thread.join()
    job = jobs(node)[0]
    with node.sessions() as s:
        events = s.execute(select(JobEvent.event, JobEvent.at).where(JobEvent.job_id == job.id)
                           .order_by(JobEvent.id)).all()
    assert [e for e, _ in events] == ["created", "claimed", "done"] and job.attempts == 1
    took = (events[2][1] - events[1][1]).total_seconds()
    assert took > 3 * node.cfg.worker.lease_s, f"the job took {took:.1f} s: too short to need the heartbeat"
    assert len(requeued) > 10 and sum(requeued) == 0  # looked at all along, never taken back


def test_failing_stage_is_retried_then_dead(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory(worker={"workers": 0, "max_attempts": 2, "retry_base_s": 0.1, "retry_max_s": 0.1})
    send(node, series_files(101))
    wait_for(lambda: jobs(node))

    def broken(datasets: Sequence[pydicom.Dataset]) -> dict:
        raise RuntimeError("stage exploded")

    worker = Worker(node.cfg, node.sessions, name="w", stage=broken)
    assert worker.run_once()
    assert jobs(node)[0].state is JobState.FAILED
    wait_for(lambda: worker.run_once(), timeout=5)
    job = jobs(node)[0]
    assert job.state is JobState.DEAD and "stage exploded" in job.last_error


def test_a_job_is_claimed_by_one_worker_only(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory(worker={"workers": 0})
    send(node, series_files(101))
    wait_for(lambda: jobs(node))
    claims = [queue.claim(node.sessions, f"w{i}", 30) for i in range(4)]
    assert sum(c is not None for c in claims) == 1


def test_low_disk_space_refuses_with_out_of_resources(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory(node={"min_free_disk_mb": 10**9})  # a petabyte: never available
    assert send(node, series_files(101)[:2]) == [0xA700, 0xA700]
    assert not (node.cfg.data_dir / "instances").exists()
    with node.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0


def test_received_data_is_readable_by_the_service_user_only(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory()
    send(node, series_files(101)[:1])
    stored = next((node.cfg.data_dir / "instances").rglob("*.dcm"))
    assert stored.stat().st_mode & 0o077 == 0
    assert (node.cfg.data_dir / "spinenode.db").stat().st_mode & 0o077 == 0
    assert node.cfg.data_dir.stat().st_mode & 0o077 == 0


def _altered_series(files: list[Path], folder: Path, change: Callable[[pydicom.Dataset, int], None]) -> list[Path]:
    """A copy of ``files`` as a new series, each dataset changed by ``change(ds, k)``."""
    from pydicom.uid import generate_uid

    series_uid = generate_uid(entropy_srcs=[str(folder)])
    folder.mkdir()
    out = []
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(folder), str(k)])
        change(ds, k)
        out.append(folder / f"{k}.dcm")
        ds.save_as(out[-1], enforce_file_format=True)
    return out


def _zero_rows(ds: pydicom.Dataset, k: int) -> None:
    ds.Rows = 0


def _huge(ds: pydicom.Dataset, k: int) -> None:
    ds.Rows = ds.Columns = 8192  # declared; the pixel data is still 256x256


def _same_position(ds: pydicom.Dataset, k: int) -> None:
    ds.ImagePositionPatient = [0, 0, 0]


def _flat_orientation(ds: pydicom.Dataset, k: int) -> None:
    ds.ImageOrientationPatient = [0, 0, 0, 0, 0, 0]


def _one_slice_bigger(ds: pydicom.Dataset, k: int) -> None:
    if k == 5:
        ds.Rows, ds.Columns = 128, 512  # same number of pixels, another matrix


def _garbage_pixels(ds: pydicom.Dataset, k: int) -> None:
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]  # truncated pixel data


@pytest.mark.parametrize(("change", "reasons"), [
    (_zero_rows, {"unsupported_image", "undecodable_pixels", "inconsistent_geometry"}),
    (_huge, {"unsupported_image"}),
    (_same_position, {"inconsistent_geometry", "duplicate_position"}),
    (_flat_orientation, {"inconsistent_geometry", "orientation"}),
    (_one_slice_bigger, {"inconsistent_geometry"}),
    (_garbage_pixels, {"undecodable_pixels"}),
])
def test_bad_series_is_recorded_as_an_abstention_and_the_node_goes_on(node_factory, series_files, tmp_path,  # noqa: ANN001
                                                                    change, reasons) -> None:
    node = node_factory(protocol={"quiet_period_s": 1.0}, worker={"use_unet": False, "use_radiomics": False,
                                                                  "use_classifier": False})
    files = _altered_series(series_files(102), tmp_path / "bad", change)
    statuses = send(node, files)
    assert set(statuses) <= {0x0000, 0xC210}, statuses  # stored as received, or refused as unreadable
    job = wait_for(lambda: next((j for j in jobs(node) if j.state is JobState.ABSTAINED), None), timeout=30)
    assert set(job.reasons) <= reasons, job.reasons
    # the node goes on: a good series is still analysed
    assert send(node, series_files(101)) == [0] * 12
    assert wait_for(lambda: job_done(node), timeout=60).kind is JobKind.ANALYSE


def test_a_database_that_cannot_record_refuses_with_0xa702_and_keeps_no_file(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory(worker={"workers": 0})
    with node.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE instances RENAME TO instances_gone")
    assert send(node, series_files(101)[:2]) == [0xA702, 0xA702]
    assert [p for p in (node.cfg.data_dir / "instances").rglob("*") if p.is_file()] == []  # not even a temporary one


def test_a_file_that_cannot_be_written_refuses_with_0xa701(node_factory, series_files) -> None:  # noqa: ANN001
    node = node_factory(worker={"workers": 0})
    (node.cfg.data_dir / "instances").write_text("a file where the folder should be")
    assert send(node, series_files(101)[:2]) == [0xA701, 0xA701]
    with node.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0


def test_a_job_held_by_a_dead_process_on_this_machine_returns_at_once(node_factory, series_files) -> None:  # noqa: ANN001
    from dicomnode import status
    from dicomnode.liveness import worker_name
    from tests.unit.test_liveness import name_of_a_finished_process

    node = node_factory(worker={"workers": 0, "lease_s": 300.0})
    send(node, series_files(101))
    wait_for(lambda: jobs(node))
    dead = name_of_a_finished_process()
    assert queue.claim(node.sessions, dead, 300.0) is not None  # as a node killed mid-analysis left it
    report = status.collect(node.sessions)
    assert report["stalled_jobs"] == [{"job_id": 1, "series_uid": series_rows(node)[0].series_uid, "worker": dead,
                                       "why": "worker process gone"}]
    assert "stalled job 1" in status.render(report)
    assert Worker(node.cfg, node.sessions, name=worker_name(1)).run_once()  # long before the lease's 300 s
    assert jobs(node)[0].state is JobState.DONE
    with node.sessions() as s:
        events = [e.event for e in s.scalars(select(JobEvent).order_by(JobEvent.id))]
    assert events[:4] == ["created", "claimed", "lease_abandoned", "claimed"]


def test_a_job_held_by_a_live_worker_is_left_alone(node_factory, series_files) -> None:  # noqa: ANN001
    from dicomnode import status
    from dicomnode.liveness import worker_name

    node = node_factory(worker={"workers": 0, "lease_s": 300.0})
    send(node, series_files(101))
    wait_for(lambda: jobs(node))
    assert queue.claim(node.sessions, worker_name(7), 300.0) is not None  # this process: alive
    assert not Worker(node.cfg, node.sessions, name=worker_name(8)).run_once()
    assert jobs(node)[0].state is JobState.RUNNING
    assert status.collect(node.sessions)["stalled_jobs"] == []
