"""pynetdicom event handlers: plain functions, kept small.

The C-STORE handler validates the UIDs, writes the encoded bytes atomically, records one row and
returns a status. It never decodes pixel data or runs analysis. Every failure becomes a specific
DICOM status: its step raises ``StoreRefused``, and the handler answers with that status and logs
one ``store_refused`` event with the reason:

=======  ==========================================================
0x0000   stored (or an identical copy was already stored)
0xA700   out of resources: not enough free disk space
0xA701   out of resources: the file could not be written
0xA702   out of resources: the database could not record the instance
0xA900   the dataset's SOP Class UID does not match the request
0xC210   cannot understand: the dataset could not be decoded
0xC211   cannot understand: a UID is missing or invalid
=======  ==========================================================
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dicomnode import storage
from dicomnode.config import NodeConfig
from dicomnode.db import Instance, Series, SeriesState, Study, utcnow
from dicomnode.errors import DiskFullError, InvalidUIDError, StoreRefused
from dicomnode.logs import get_logger

log = get_logger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES_DISK = 0xA700
OUT_OF_RESOURCES_WRITE = 0xA701
OUT_OF_RESOURCES_DATABASE = 0xA702
SOP_CLASS_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
INVALID_UID = 0xC211
# refusals caused by what the sender sent: logged as warnings with its AE; the rest are the node's own errors
SENDER_DATA_STATUSES = frozenset({SOP_CLASS_MISMATCH, CANNOT_UNDERSTAND, INVALID_UID})


@dataclass
class StoreContext:
    """What the C-STORE handler needs; one per SCP."""

    node: NodeConfig
    sessions: sessionmaker
    on_stored: Callable[[int], None] = lambda series_id: None
    lock: threading.Lock = field(default_factory=threading.Lock)


def handle_echo(event) -> int:  # noqa: ANN001 - pynetdicom Event
    log.info("echo", calling_ae=event.assoc.requestor.ae_title)
    return SUCCESS


def _record(session: Session, h: storage.HeaderSummary, relpath: Path, size: int, digest: str,
            ts: str, calling_ae: str) -> tuple[Series, bool]:
    """Insert the instance (and its study/series on first sight); returns (series, late)."""
    now = utcnow()
    study = session.scalar(select(Study).where(Study.study_uid == h.study_uid))
    if study is None:
        study = Study(study_uid=h.study_uid)
        session.add(study)
    series = session.scalar(select(Series).where(Series.series_uid == h.series_uid))
    if series is None:
        series = Series(series_uid=h.series_uid, study=study, attrs=h.series_attrs,
                        modality=h.series_attrs.get("Modality"), first_received_at=now,
                        state=SeriesState.RECEIVING, instance_count=0, late_instances=0)
        session.add(series)
    late = series.state is SeriesState.COMPLETE
    if series.state is SeriesState.ABSTAINED:
        # a missing slice that arrives after the quiet period re-opens the series
        series.state = SeriesState.RECEIVING
        series.reasons = None
    series.instance_count += 1
    series.late_instances += int(late)
    series.last_received_at = now
    session.add(Instance(
        sop_instance_uid=h.sop_instance_uid, sop_class_uid=h.sop_class_uid, series=series,
        path=str(relpath), transfer_syntax=ts, size=size, sha256=digest, calling_ae=calling_ae,
        received_at=now, instance_number=h.instance_number, position=h.position,
        orientation=h.orientation, pixel_spacing=h.pixel_spacing, slice_thickness=h.slice_thickness,
        temporal_position=h.temporal_position, rows=h.rows, columns=h.columns, late=late,
    ))
    return series, late


def _existing_digest(session: Session, sop_uid: str) -> str | None:
    return session.scalar(select(Instance.sha256).where(Instance.sop_instance_uid == sop_uid))


def handle_store(event, ctx: StoreContext) -> int:  # noqa: ANN001 - pynetdicom Event
    """Store one instance; the first step that refuses it sets the status, logged once here."""
    calling_ae = event.assoc.requestor.ae_title
    try:
        header = _checked_header(event)
        data = event.encoded_dataset(include_meta=True)
        digest = storage.sha256(data)
        ts = str(event.context.transfer_syntax)
        with ctx.lock:  # lookup, write and record must not interleave between associations
            known = _known_digest(ctx, header.sop_instance_uid)
            if known is not None:
                return _duplicate(ctx, header, data, digest, known, calling_ae)
            relpath = _write_instance(ctx, header, data)
            recorded = _record_instance(ctx, header, relpath, len(data), digest, ts, calling_ae)
    except StoreRefused as refused:
        level = log.warning if refused.status in SENDER_DATA_STATUSES else log.error
        level("store_refused", **_refusal_fields(refused, calling_ae))
        return refused.status
    if recorded is None:  # another process recorded the same instance a moment ago
        return SUCCESS
    log.info("instance_stored", sop_instance_uid=header.sop_instance_uid,
             series_uid=header.series_uid, transfer_syntax=ts, bytes=len(data), calling_ae=calling_ae)
    if recorded.late:
        log.warning("instance_after_decision", sop_instance_uid=header.sop_instance_uid,
                    series_uid=header.series_uid)
    ctx.on_stored(recorded.series_id)
    return SUCCESS


def _refusal_fields(refused: StoreRefused, calling_ae: str) -> dict[str, Any]:
    """The store_refused key/values; the sender's AE only where the sender's data is at fault."""
    fields = {"status": hex(refused.status), "reason": refused.reason, "detail": refused.detail,
              "sop_instance_uid": refused.sop_instance_uid}
    fields = {key: value for key, value in fields.items() if value is not None}
    if refused.status in SENDER_DATA_STATUSES:
        fields["calling_ae"] = calling_ae
    return fields


def _checked_header(event) -> storage.HeaderSummary:  # noqa: ANN001 - pynetdicom Event
    """Decode the header and check it against the request: whatever fails here is the sender's data."""
    try:
        ds: Dataset = event.dataset
        ds.file_meta = event.file_meta
        header = storage.summarise(ds)
    except InvalidUIDError as exc:
        raise StoreRefused(INVALID_UID, "invalid_uid", str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - any decode failure is the sender's data
        raise StoreRefused(CANNOT_UNDERSTAND, "undecodable", type(exc).__name__) from exc
    if header.sop_class_uid != str(event.request.AffectedSOPClassUID):
        raise StoreRefused(SOP_CLASS_MISMATCH, "sop_class_mismatch", sop_instance_uid=header.sop_instance_uid)
    if header.sop_instance_uid != str(event.request.AffectedSOPInstanceUID):
        raise StoreRefused(INVALID_UID, "sop_instance_mismatch", sop_instance_uid=header.sop_instance_uid)
    return header


def _known_digest(ctx: StoreContext, sop_uid: str) -> str | None:
    """The digest stored under this SOP Instance UID, if any: a duplicate is never written twice."""
    try:
        with ctx.sessions() as session:
            return _existing_digest(session, sop_uid)
    except SQLAlchemyError as exc:
        raise StoreRefused(OUT_OF_RESOURCES_DATABASE, "database", type(exc).__name__) from exc


def _write_failed(exc: OSError) -> StoreRefused:
    return StoreRefused(OUT_OF_RESOURCES_WRITE, "write_failed", f"{type(exc).__name__}: {exc.strerror}")


def _write_instance(ctx: StoreContext, header: storage.HeaderSummary, data: bytes) -> Path:
    """Check the free space, then write atomically; returns the path relative to data_dir."""
    relpath = storage.instance_relpath(header.study_uid, header.series_uid, header.sop_instance_uid)
    try:
        storage.check_free_space(ctx.node.data_dir, ctx.node.min_free_disk_mb, len(data))
        storage.write_atomic(ctx.node.data_dir / relpath, data, fsync=ctx.node.fsync)
    except DiskFullError as exc:
        raise StoreRefused(OUT_OF_RESOURCES_DISK, "disk_full", str(exc)) from exc
    except OSError as exc:
        raise _write_failed(exc) from exc
    return relpath


@dataclass(frozen=True)
class _Recorded:
    series_id: int
    late: bool  # the series had already been decided when this instance arrived


def _record_instance(ctx: StoreContext, header: storage.HeaderSummary, relpath: Path, size: int,
                     digest: str, ts: str, calling_ae: str) -> _Recorded | None:
    """Record the written file; None when another process recorded the same instance first."""
    try:
        with ctx.sessions.begin() as session:
            series, late = _record(session, header, relpath, size, digest, ts, calling_ae)
            session.flush()
            series_id = series.id
    except IntegrityError:  # another process stored the same instance a moment ago
        log.info("instance_duplicate", sop_instance_uid=header.sop_instance_uid, race=True)
        return None
    except SQLAlchemyError as exc:
        raise StoreRefused(OUT_OF_RESOURCES_DATABASE, "database", type(exc).__name__) from exc
    return _Recorded(series_id, late)


def _duplicate(ctx: StoreContext, header: storage.HeaderSummary, data: bytes, digest: str,
               known: str, calling_ae: str) -> int:
    """A SOP Instance UID seen before: acknowledge; keep a differing copy aside, never replace."""
    if known == digest:
        log.info("instance_duplicate", sop_instance_uid=header.sop_instance_uid, calling_ae=calling_ae)
        return SUCCESS
    path = ctx.node.data_dir / "conflicts" / header.sop_instance_uid / f"{digest}.dcm"
    try:
        storage.write_atomic(path, data, fsync=ctx.node.fsync)
    except OSError as exc:
        raise _write_failed(exc) from exc
    log.warning("instance_conflict", sop_instance_uid=header.sop_instance_uid, calling_ae=calling_ae,
                kept_as=str(path.relative_to(ctx.node.data_dir)))
    return SUCCESS
