"""Group commit of received instances: whichever handler finds no commit in progress records what
every association has received.

A C-STORE handler writes the bytes to a temporary file under ``incoming/`` (same file system)
and hands it to the recorder, which queues it. The first handler to take the commit lock takes
every instance queued at that moment (its own among them) and, in one transaction: looks their
SOP Instance UIDs up, gives each new one its final name (an atomic rename, with the folder
flushed), counts it in its series, inserts the rows and commits. Handlers that queued meanwhile
wait for the lock and find their instance committed, or take the next batch. Several senders at
once thus cost one commit (one WAL fsync with SQLite) per batch rather than one each, and a
single sender's instance is committed in its own handler's thread, with no hand-over to another
thread (which cost about as much as the commit). A handler acknowledges only after the commit
that holds its row; when a commit fails, every handler of the batch answers 0xA702 and none of
its instances is acknowledged (a file renamed for a failed commit has no row: the sender's
retry writes it again).

An instance whose UID is already recorded is not renamed: the handler gets the recorded digest
back and decides (identical copy: acknowledged; different content: kept aside). Statements are
built once, with SQLAlchemy Core (the ORM's unit of work would cost more than receiving an
instance).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, case, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dicomnode import storage
from dicomnode.db import Instance, Series, SeriesState, Study
from dicomnode.errors import NodeError
from dicomnode.logs import get_logger
from dicomnode.storage import HeaderSummary

log = get_logger(__name__)

_STUDIES = cast(Table, Study.__table__)
_SERIES = cast(Table, Series.__table__)
_INSTANCES = cast(Table, Instance.__table__)

_KNOWN = select(_INSTANCES.c.sop_instance_uid, _INSTANCES.c.sha256).where(
    _INSTANCES.c.sop_instance_uid.in_(bindparam("uids", expanding=True)))
_STUDY_ID = select(_STUDIES.c.id).where(_STUDIES.c.study_uid == bindparam("uid"))
_SERIES_ID = select(_SERIES.c.id).where(_SERIES.c.series_uid == bindparam("uid"))
_KNOWN_ONE = select(_INSTANCES.c.sop_instance_uid, _INSTANCES.c.sha256).where(
    _INSTANCES.c.sop_instance_uid == bindparam("uid"))
# counts the instance; the state it returns is the one before (this statement never changes it)
_COUNT = update(_SERIES).where(_SERIES.c.id == bindparam("sid")).values(
    instance_count=_SERIES.c.instance_count + 1,
    late_instances=_SERIES.c.late_instances + case((_SERIES.c.state == SeriesState.COMPLETE, 1), else_=0),
    last_received_at=bindparam("now")).returning(_SERIES.c.state)
_REOPEN = update(_SERIES).where(_SERIES.c.id == bindparam("sid")).values(state=SeriesState.RECEIVING, reasons=None)
_INSERT_STUDY = insert(_STUDIES)
_INSERT_SERIES = insert(_SERIES)
_INSERT_INSTANCE = insert(_INSTANCES)
_CACHE_LIMIT = 10_000  # study and series ids remembered (rows are never deleted)


class RecorderStopped(NodeError):
    """The instance recorder is not running (the node is stopping)."""


@dataclass(frozen=True, kw_only=True)
class InstanceRow:
    """One received instance, as the database records it."""

    header: HeaderSummary
    path: str  # relative to data_dir
    size: int
    sha256: str
    transfer_syntax: str
    calling_ae: str
    received_at: dt.datetime


@dataclass(frozen=True)
class Stored:
    series_id: int
    late: bool  # the series had already been decided when this instance arrived


@dataclass(frozen=True)
class Known:
    """The SOP Instance UID was recorded before, with this digest; nothing was renamed."""

    sha256: str


@dataclass
class _Request:
    row: InstanceRow
    tmp: Path
    done: threading.Event = field(default_factory=threading.Event)
    result: Stored | Known | None = None
    error: BaseException | None = None


class Recorder:
    """Records received instances in batches, one transaction per batch, in the handlers' threads."""

    def __init__(self, engine: Engine, data_dir: Path, *, fsync: bool, max_batch: int = 64) -> None:
        self.engine = engine
        self.data_dir = data_dir
        self.fsync = fsync
        self.max_batch = max_batch
        self._waiting: list[_Request] = []  # queued, not yet taken into a batch
        self._waiting_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one batch at a time; guards _running
        self._running = False
        self._study_ids: dict[str, int] = {}
        self._series_ids: dict[str, int] = {}

    def start(self) -> Recorder:
        with self._commit_lock:
            self._running = True
        return self

    def stop(self) -> None:
        """Record what is queued, then stop; later calls to ``store`` raise ``RecorderStopped``."""
        with self._commit_lock:
            while batch := self._take():
                self._commit(batch)
            self._running = False

    def store(self, row: InstanceRow, tmp: Path) -> Stored | Known | None:
        """Give ``tmp`` its final name ``row.path`` and record it; returns once committed.

        Returns ``Known`` when the UID was recorded before (``tmp`` is left for the caller), None when
        another process recorded it at the same moment. Raises the database's error
        (``SQLAlchemyError``), the rename's (``OSError``) or ``RecorderStopped``.
        """
        request = _Request(row, tmp)
        with self._waiting_lock:
            self._waiting.append(request)
        while not request.done.is_set():
            with self._commit_lock:  # a batch is committed by whoever holds it, then released
                if request.done.is_set():
                    break  # committed in another handler's batch
                batch = self._take()  # ours is among the first max_batch, or the next batch's
                if self._running:
                    self._commit(batch)
                else:
                    _refuse(batch)
        if request.error is not None:
            raise request.error
        return request.result

    def _take(self) -> list[_Request]:
        """The oldest ``max_batch`` requests waiting."""
        with self._waiting_lock:
            batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
        return batch

    def _commit(self, batch: list[_Request]) -> None:
        try:
            self._record(batch)
        except IntegrityError:  # another process recorded one of them first: one at a time
            for request in batch:
                self._record_alone(request)
        except Exception as exc:  # noqa: BLE001 - every handler of the batch answers with the failure
            log.error("instances_not_recorded", instances=len(batch), error=type(exc).__name__)
            for request in batch:
                request.error, request.result = exc, None
        for request in batch:
            request.done.set()

    def _record_alone(self, request: _Request) -> None:
        request.result = request.error = None
        try:
            self._record([request])
        except IntegrityError:
            log.info("instance_duplicate", sop_instance_uid=request.row.header.sop_instance_uid, race=True)
            request.result = None
        except Exception as exc:  # noqa: BLE001
            request.error = exc

    def _record(self, batch: list[_Request]) -> None:
        """One transaction: look up, count and insert the new ones, then rename their files, commit.

        The rows are inserted before any file is renamed, so a UID that another process recorded in
        the meantime fails the insert (``IntegrityError``) while nothing is renamed yet."""
        new_ids: dict[str, dict[str, int]] = {"study": {}, "series": {}}
        with self.engine.begin() as conn:
            new = self._unknown(conn, batch)
            rows = []
            for request in new:
                request.result, params = self._count(conn, request.row, new_ids)
                rows.append(params)
            if rows:
                conn.execute(_INSERT_INSTANCE, rows)
            for request in new:  # an OSError here fails the whole batch (0xA701), nothing committed
                storage.commit_file(request.tmp, self.data_dir / request.row.path, fsync=False)
            if self.fsync:
                for folder in {(self.data_dir / r.row.path).parent for r in new}:
                    storage.fsync_folder(folder)
        self._remember(new_ids)

    def _unknown(self, conn: Connection, batch: list[_Request]) -> list[_Request]:
        """The requests whose UID is not recorded yet; the others get ``Known`` with the digest."""
        uids = [r.row.header.sop_instance_uid for r in batch]
        lookup = (conn.execute(_KNOWN_ONE, {"uid": uids[0]}) if len(uids) == 1
                  else conn.execute(_KNOWN, {"uids": uids}))
        known: dict[str, str] = {uid: digest for uid, digest in lookup}
        new = []
        for request in batch:
            uid = request.row.header.sop_instance_uid
            if uid in known:
                request.result = Known(known[uid])
            else:
                known[uid] = request.row.sha256  # a second copy in this batch is a duplicate of this one
                new.append(request)
        return new

    def _remember(self, new_ids: dict[str, dict[str, int]]) -> None:
        """Ids of rows just committed (never those of a rolled-back transaction)."""
        for cache, ids in ((self._study_ids, new_ids["study"]), (self._series_ids, new_ids["series"])):
            if len(cache) + len(ids) > _CACHE_LIMIT:
                cache.clear()
            cache.update(ids)

    def _count(self, conn: Connection, row: InstanceRow,
               new_ids: dict[str, dict[str, int]]) -> tuple[Stored, dict[str, Any]]:
        """Count the instance in its series (made on first sight); returns the result and its row."""
        series_id = self._series_id(conn, row, new_ids)
        state = conn.execute(_COUNT, {"sid": series_id, "now": row.received_at}).scalar_one()
        late = state is SeriesState.COMPLETE
        if state is SeriesState.ABSTAINED:  # a missing slice that arrives after the quiet period re-opens it
            conn.execute(_REOPEN, {"sid": series_id})
        return Stored(series_id, late), _instance_params(row, series_id, late)

    def _series_id(self, conn: Connection, row: InstanceRow, new_ids: dict[str, dict[str, int]]) -> int:
        h = row.header
        series_id = (self._series_ids.get(h.series_uid) or new_ids["series"].get(h.series_uid)
                     or conn.execute(_SERIES_ID, {"uid": h.series_uid}).scalar())
        if series_id is None:
            series_id = _inserted_id(conn.execute(_INSERT_SERIES, {
                "series_uid": h.series_uid, "study_id": self._study_id(conn, row, new_ids),
                "attrs": h.series_attrs, "modality": h.series_attrs.get("Modality"), "state": SeriesState.RECEIVING,
                "instance_count": 0, "late_instances": 0, "first_received_at": row.received_at,
                "last_received_at": row.received_at}))
        new_ids["series"][h.series_uid] = series_id
        return int(series_id)

    def _study_id(self, conn: Connection, row: InstanceRow, new_ids: dict[str, dict[str, int]]) -> int:
        uid = row.header.study_uid
        study_id = (self._study_ids.get(uid) or new_ids["study"].get(uid)
                    or conn.execute(_STUDY_ID, {"uid": uid}).scalar())
        if study_id is None:
            study_id = _inserted_id(conn.execute(_INSERT_STUDY, {"study_uid": uid, "created_at": row.received_at}))
        new_ids["study"][uid] = study_id
        return int(study_id)


def _refuse(batch: list[_Request]) -> None:
    """Requests that arrived after the stop: refused, never silently dropped."""
    for request in batch:
        request.error = RecorderStopped()
        request.done.set()


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _instance_params(row: InstanceRow, series_id: int, late: bool) -> dict[str, Any]:
    h = row.header
    return {
        "sop_instance_uid": h.sop_instance_uid, "sop_class_uid": h.sop_class_uid, "series_id": series_id,
        "path": row.path, "transfer_syntax": row.transfer_syntax, "size": row.size, "sha256": row.sha256,
        "calling_ae": row.calling_ae, "received_at": row.received_at, "instance_number": h.instance_number,
        "position": h.position, "orientation": h.orientation, "pixel_spacing": h.pixel_spacing,
        "slice_thickness": h.slice_thickness, "temporal_position": h.temporal_position, "rows": h.rows,
        "columns": h.columns, "late": late,
    }
