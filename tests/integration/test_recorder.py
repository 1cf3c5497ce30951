"""The recorder (group commit of received instances) on a real SQLite file and real files."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine

from dicomnode.db import Instance, Series, SeriesState, Study, init_db, make_engine, utcnow
from dicomnode.recorder import InstanceRow, Known, Recorder, RecorderStopped, Stored, _Request
from dicomnode.storage import HeaderSummary, instance_relpath, write_temp


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path}/node.db")
    init_db(engine)
    return engine


def row(sop: str, series: str = "1.2.3.1", study: str = "1.2.3", digest: str = "a" * 64) -> InstanceRow:
    header = HeaderSummary(
        study_uid=study, series_uid=series, sop_instance_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        series_attrs={"Modality": "MR"}, instance_number=1, position=[0.0, 0.0, 1.5],
        orientation=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], pixel_spacing=[0.5, 0.5], slice_thickness=3.0,
        temporal_position=int(sop.rsplit(".", 1)[1]) % 3 or None, rows=256, columns=256)
    return InstanceRow(header=header, path=str(instance_relpath(study, series, sop)), size=4, sha256=digest,
                       transfer_syntax="1.2.840.10008.1.2.1", calling_ae="TESTSCU", received_at=utcnow())


def temp_for(data_dir: Path, r: InstanceRow, content: bytes = b"DICM") -> Path:
    return write_temp((data_dir / r.path).parent, content, fsync=False)


class CountingRecorder(Recorder):
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def _commit(self, batch: list[_Request]) -> None:
        self.batches.append(len(batch))
        super()._commit(batch)


def count(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def store_behind_a_commit(recorder: Recorder, rows: list[InstanceRow], data_dir: Path) -> dict[str, object]:
    """Each row stored from a thread of its own while the commit lock is held (as if a commit were
    in progress), so that all of them queue; returns what each ``store`` returned, by UID."""
    results: dict[str, object] = {}

    def store(r: InstanceRow) -> None:
        results[r.header.sop_instance_uid] = recorder.store(r, temp_for(data_dir, r))

    threads = [threading.Thread(target=store, args=(r,)) for r in rows]
    with recorder._commit_lock:
        for t in threads:
            t.start()
        while len(recorder._waiting) < len(rows):
            threading.Event().wait(0.01)
    for t in threads:
        t.join()
    return results


def test_instances_waiting_together_are_committed_together(engine: Engine, tmp_path: Path) -> None:
    recorder = CountingRecorder(engine, tmp_path, fsync=True).start()
    rows = [row(f"1.2.3.1.{i}", series=f"1.2.3.{1 + i % 2}") for i in range(8)]
    results = store_behind_a_commit(recorder, rows, tmp_path)
    recorder.stop()
    assert recorder.batches == [8]  # one transaction for all eight, in one of their threads
    assert all(isinstance(r, Stored) and not r.late for r in results.values())
    assert count(engine, Instance) == 8 and count(engine, Series) == 2 and count(engine, Study) == 1
    with engine.connect() as conn:
        assert sorted(conn.scalars(select(Series.instance_count))) == [4, 4]
    on_disk = sorted(p.name for p in (tmp_path / "instances").rglob("*") if p.is_file())
    assert on_disk == sorted(f"{r.header.sop_instance_uid}.dcm" for r in rows)  # no temporary file left


def test_more_waiting_than_a_batch_holds_are_committed_in_turn(engine: Engine, tmp_path: Path) -> None:
    recorder = CountingRecorder(engine, tmp_path, fsync=False, max_batch=3).start()
    results = store_behind_a_commit(recorder, [row(f"1.2.3.1.{i}") for i in range(8)], tmp_path)
    assert recorder.batches == [3, 3, 2] and count(engine, Instance) == 8
    assert all(isinstance(r, Stored) for r in results.values()) and len(results) == 8


def test_a_recorder_not_started_refuses(engine: Engine, tmp_path: Path) -> None:
    recorder = Recorder(engine, tmp_path, fsync=False)
    with pytest.raises(RecorderStopped):
        recorder.store(r := row("1.2.3.1.1"), temp_for(tmp_path, r))
    assert count(engine, Instance) == 0 and recorder._waiting == []


def test_a_uid_recorded_before_is_known_and_its_file_untouched(engine: Engine, tmp_path: Path) -> None:
    recorder = Recorder(engine, tmp_path, fsync=False).start()
    first = row("1.2.3.1.1", digest="a" * 64)
    assert isinstance(recorder.store(first, temp_for(tmp_path, first, b"first")), Stored)
    again = row("1.2.3.1.1", digest="b" * 64)
    tmp = temp_for(tmp_path, again, b"second")
    assert recorder.store(again, tmp) == Known("a" * 64)
    assert tmp.read_bytes() == b"second"  # left for the handler to keep aside or delete
    assert (tmp_path / first.path).read_bytes() == b"first"
    assert count(engine, Instance) == 1
    recorder.stop()


def test_two_copies_in_one_batch_record_the_first_only(engine: Engine, tmp_path: Path) -> None:
    recorder = Recorder(engine, tmp_path, fsync=False)
    a, b = row("1.2.3.1.1", digest="a" * 64), row("1.2.3.1.1", digest="b" * 64)
    requests = [_Request(a, temp_for(tmp_path, a, b"a")), _Request(b, temp_for(tmp_path, b, b"b"))]
    recorder._commit(requests)
    assert isinstance(requests[0].result, Stored) and requests[1].result == Known("a" * 64)
    assert (tmp_path / a.path).read_bytes() == b"a" and count(engine, Instance) == 1


def test_an_instance_after_the_decision_is_late_and_one_after_abstention_reopens(
        engine: Engine, tmp_path: Path) -> None:
    recorder = Recorder(engine, tmp_path, fsync=False).start()
    recorder.store(r := row("1.2.3.1.1"), temp_for(tmp_path, r))
    with engine.begin() as conn:
        conn.execute(Series.__table__.update().values(state=SeriesState.COMPLETE))
    late = recorder.store(r := row("1.2.3.1.2"), temp_for(tmp_path, r))
    assert isinstance(late, Stored) and late.late
    with engine.begin() as conn:
        conn.execute(Series.__table__.update().values(state=SeriesState.ABSTAINED, reasons=["slice_count"]))
    reopened = recorder.store(r := row("1.2.3.1.3"), temp_for(tmp_path, r))
    assert isinstance(reopened, Stored) and not reopened.late
    recorder.stop()
    with engine.connect() as conn:
        series = conn.execute(select(Series.state, Series.reasons, Series.instance_count, Series.late_instances)).one()
        late_flags = {uid: late for uid, late in conn.execute(select(Instance.sop_instance_uid, Instance.late))}
    assert tuple(series) == (SeriesState.RECEIVING, None, 3, 1)
    assert late_flags == {"1.2.3.1.1": False, "1.2.3.1.2": True, "1.2.3.1.3": False}


def test_a_failed_commit_fails_every_instance_of_its_batch(engine: Engine, tmp_path: Path) -> None:
    recorder = Recorder(engine, tmp_path, fsync=False)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE instances RENAME TO instances_gone"))
    rows = [row("1.2.3.1.1"), row("1.2.3.1.2")]
    requests = [_Request(r, temp_for(tmp_path, r)) for r in rows]
    recorder._commit(requests)
    assert all(r.error is not None and r.result is None for r in requests)
    assert all(r.done.is_set() for r in requests)


def test_another_process_recording_the_same_uid_first_is_a_duplicate_not_an_error(
        engine: Engine, tmp_path: Path) -> None:
    other = create_engine(f"sqlite:///{tmp_path}/node.db")

    class Racing(Recorder):
        raced = False

        def _count(self, conn, instance_row, new_ids):  # noqa: ANN001, ANN202
            if not self.raced:  # after our lookup, before our insert: another process records it
                self.raced = True
                with other.begin() as theirs:
                    study_id = theirs.execute(text(
                        "INSERT INTO studies (study_uid, created_at) VALUES ('9.9', '2026-01-01')")).lastrowid
                    series_id = theirs.execute(text(
                        "INSERT INTO series (series_uid, study_id, state, attrs, instance_count, late_instances, "
                        "first_received_at, last_received_at) VALUES ('9.9.1', :s, 'RECEIVING', '{}', 1, 0, "
                        "'2026-01-01', '2026-01-01')"), {"s": study_id}).lastrowid
                    theirs.execute(text(
                        "INSERT INTO instances (sop_instance_uid, sop_class_uid, series_id, path, transfer_syntax, "
                        "size, sha256, calling_ae, received_at, late) VALUES (:u, '1.2', :s, 'x', '1.2', 1, :d, "
                        "'O', '2026-01-01', 0)"), {"u": instance_row.header.sop_instance_uid, "s": series_id,
                                                   "d": "c" * 64})
            return super()._count(conn, instance_row, new_ids)

    recorder = Racing(engine, tmp_path, fsync=False)
    r = row("1.2.3.1.1")
    request = _Request(r, temp_for(tmp_path, r))
    recorder._commit([request])
    assert request.error is None and request.result == Known("c" * 64)
    assert count(engine, Instance) == 1
    assert request.tmp.exists() and not (tmp_path / r.path).exists()  # nothing renamed: the handler decides


def test_a_stopped_recorder_refuses_rather_than_dropping(engine: Engine, tmp_path: Path) -> None:
    recorder = Recorder(engine, tmp_path, fsync=False).start()
    recorder.stop()
    with pytest.raises(RecorderStopped):
        recorder.store(r := row("1.2.3.1.1"), temp_for(tmp_path, r))


def test_stored_instances_wake_the_assembler_once_per_run(engine: Engine) -> None:
    from dicomnode.assembler import Assembler
    from dicomnode.config import ProtocolConfig, WorkerConfig
    from dicomnode.db import make_sessionmaker

    assembler = Assembler(make_sessionmaker(engine), ProtocolConfig(), WorkerConfig())
    wakes: list[int] = []
    assembler.wake = lambda: wakes.append(1)
    for series_id in (1, 2, 1, 3):
        assembler.notify(series_id)
    assert wakes == [1]  # one wake for the four
    decided: list[set[int] | None] = []
    assembler.sweep = lambda now=None, only=None: decided.append(only) or {}  # type: ignore[method-assign]
    assembler.run()
    assert decided == [{1, 2, 3}]  # only the series notified, each once
    assembler.notify(2)
    assert wakes == [1, 1]  # the next instance after a run wakes it again
    assembler.run(full=True)
    assert decided[-1] is None  # the timer's run: every receiving series


def test_what_is_recorded_is_what_the_header_and_the_handler_said(engine: Engine, tmp_path: Path) -> None:
    recorder = Recorder(engine, tmp_path, fsync=True).start()
    r = row("1.2.3.1.7", digest="d" * 64)
    stored = recorder.store(r, temp_for(tmp_path, r, b"content"))
    again = row("1.2.3.1.8")  # same series and study, from the ids remembered after the first commit
    assert isinstance(recorder.store(again, temp_for(tmp_path, again)), Stored)
    recorder.stop()
    with engine.connect() as conn:
        instance = conn.execute(select(Instance.__table__).where(Instance.sop_instance_uid == "1.2.3.1.7")).one()
        series = conn.execute(select(Series.__table__)).one()
        study = conn.execute(select(Study.__table__)).one()
    assert isinstance(stored, Stored) and stored.series_id == series.id and not stored.late
    assert (instance.series_id, instance.path, instance.size, instance.sha256) == (series.id, r.path, 4, "d" * 64)
    assert (instance.transfer_syntax, instance.calling_ae, instance.sop_class_uid) == (
        "1.2.840.10008.1.2.1", "TESTSCU", "1.2.840.10008.5.1.4.1.1.4")
    assert (instance.instance_number, instance.position, instance.orientation, instance.pixel_spacing) == (
        1, [0.0, 0.0, 1.5], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.5, 0.5])
    assert (instance.slice_thickness, instance.temporal_position, instance.rows, instance.columns, instance.late) == (
        3.0, 1, 256, 256, False)
    assert instance.received_at == r.received_at.replace(tzinfo=None) or instance.received_at == r.received_at
    assert (series.series_uid, series.study_id, series.attrs, series.modality) == (
        "1.2.3.1", study.id, {"Modality": "MR"}, "MR")
    assert (series.state, series.instance_count, series.late_instances) == (SeriesState.RECEIVING, 2, 0)
    assert series.first_received_at <= series.last_received_at and study.study_uid == "1.2.3"
    assert (tmp_path / r.path).read_bytes() == b"content"


def test_a_failed_commit_is_logged_with_its_count(engine: Engine, tmp_path: Path) -> None:
    import json

    from dicomnode import logs

    logs.configure("INFO", tmp_path / "node.jsonl", console=False)
    recorder = Recorder(engine, tmp_path, fsync=False)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE instances RENAME TO instances_gone"))
    recorder._commit([_Request(r, temp_for(tmp_path, r)) for r in (row("1.2.3.1.1"), row("1.2.3.1.2"))])
    events = [json.loads(line) for line in (tmp_path / "node.jsonl").read_text().splitlines()]
    failed = [e for e in events if e["event"] == "instances_not_recorded"]
    assert [(e["instances"], e["error"], e["level"]) for e in failed] == [(2, "OperationalError", "error")]
