"""pynetdicom event handlers: plain functions, kept small.

The C-STORE handler reads the header from the bytes as received (never the pixel data), validates
the UIDs, writes the bytes atomically, has the recorder commit one row (group commit, see
``dicomnode.recorder``) and returns a status. It never runs analysis. Associations run in
parallel; the recorder alone looks UIDs up and records them. Every failure becomes a specific
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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from dicomnode import storage
from dicomnode.config import NodeConfig
from dicomnode.db import utcnow
from dicomnode.errors import DiskFullError, InvalidUIDError, StoreRefused
from dicomnode.logs import get_logger
from dicomnode.recorder import InstanceRow, Known, Recorder, RecorderStopped, Stored

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
    recorder: Recorder
    on_stored: Callable[[int], None] = lambda series_id: None


HEALTH_CHECK_AE = "SPINENODE-HC"  # the calling AE of /healthz's C-ECHO: not logged at each check


def handle_echo(event) -> int:  # noqa: ANN001 - pynetdicom Event
    calling_ae = event.assoc.requestor.ae_title
    (log.debug if calling_ae == HEALTH_CHECK_AE else log.info)("echo", calling_ae=calling_ae)
    return SUCCESS


def handle_store(event, ctx: StoreContext) -> int:  # noqa: ANN001 - pynetdicom Event
    """Store one instance; the first step that refuses it sets the status, logged once here."""
    calling_ae = event.assoc.requestor.ae_title
    tmp: Path | None = None
    try:
        stream = event.request.DataSet.getvalue()  # the data set as received, never re-encoded
        header = _checked_header(event, stream)
        ts = str(event.context.transfer_syntax)
        parts = (storage.file_preamble(header.sop_class_uid, header.sop_instance_uid, ts), stream)
        path = storage.instance_relpath(header.study_uid, header.series_uid, header.sop_instance_uid)
        row = InstanceRow(header=header, path=str(path), size=sum(map(len, parts)),
                          sha256=storage.sha256(*parts), transfer_syntax=ts, calling_ae=calling_ae,
                          received_at=utcnow())
        tmp = _write_temp(ctx, row, parts)
        outcome = _record_instance(ctx, row, tmp)
        if isinstance(outcome, Known):
            return _duplicate(ctx, header, tmp, row.sha256, outcome.sha256, calling_ae)
    except StoreRefused as refused:
        level = log.warning if refused.status in SENDER_DATA_STATUSES else log.error
        level("store_refused", **_refusal_fields(refused, calling_ae))
        return refused.status
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)  # renamed (then already gone), or not kept
    if outcome is None:  # another process recorded the same instance a moment ago
        return SUCCESS
    log.info("instance_stored", sop_instance_uid=header.sop_instance_uid, series_uid=header.series_uid,
             transfer_syntax=row.transfer_syntax, bytes=row.size, calling_ae=calling_ae)
    if outcome.late:
        log.warning("instance_after_decision", sop_instance_uid=header.sop_instance_uid,
                    series_uid=header.series_uid)
    ctx.on_stored(outcome.series_id)
    return SUCCESS


def _refusal_fields(refused: StoreRefused, calling_ae: str) -> dict[str, Any]:
    """The store_refused key/values; the sender's AE only where the sender's data is at fault."""
    fields = {"status": hex(refused.status), "reason": refused.reason, "detail": refused.detail,
              "sop_instance_uid": refused.sop_instance_uid}
    fields = {key: value for key, value in fields.items() if value is not None}
    if refused.status in SENDER_DATA_STATUSES:
        fields["calling_ae"] = calling_ae
    return fields


def _checked_header(event, stream: bytes) -> storage.HeaderSummary:  # noqa: ANN001 - pynetdicom Event
    """Decode the header and check it against the request: whatever fails here is the sender's data."""
    try:
        header = storage.summarise(storage.read_header(stream, event.context.transfer_syntax))
    except InvalidUIDError as exc:
        raise StoreRefused(INVALID_UID, "invalid_uid", str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - any decode failure is the sender's data
        raise StoreRefused(CANNOT_UNDERSTAND, "undecodable", type(exc).__name__) from exc
    if header.sop_class_uid != str(event.request.AffectedSOPClassUID):
        raise StoreRefused(SOP_CLASS_MISMATCH, "sop_class_mismatch", sop_instance_uid=header.sop_instance_uid)
    if header.sop_instance_uid != str(event.request.AffectedSOPInstanceUID):
        raise StoreRefused(INVALID_UID, "sop_instance_mismatch", sop_instance_uid=header.sop_instance_uid)
    return header


def _write_failed(exc: OSError) -> StoreRefused:
    return StoreRefused(OUT_OF_RESOURCES_WRITE, "write_failed", f"{type(exc).__name__}: {exc.strerror}")


def _write_temp(ctx: StoreContext, row: InstanceRow, parts: tuple[bytes, bytes]) -> Path:
    """Check the free space, then write the bytes under ``incoming/`` (flushed before the rename
    and the commit, so an acknowledged instance is on disk)."""
    try:
        storage.check_free_space(ctx.node.data_dir, ctx.node.min_free_disk_mb, row.size)
        return storage.write_temp(ctx.node.data_dir / storage.INCOMING, *parts, fsync=ctx.node.fsync)
    except DiskFullError as exc:
        raise StoreRefused(OUT_OF_RESOURCES_DISK, "disk_full", str(exc)) from exc
    except OSError as exc:
        raise _write_failed(exc) from exc


def _record_instance(ctx: StoreContext, row: InstanceRow, tmp: Path) -> Stored | Known | None:
    """Rename and record (group commit); ``Known``: the UID was recorded before."""
    try:
        return ctx.recorder.store(row, tmp)
    except OSError as exc:
        raise _write_failed(exc) from exc
    except (SQLAlchemyError, RecorderStopped) as exc:
        raise StoreRefused(OUT_OF_RESOURCES_DATABASE, "database", type(exc).__name__) from exc


def _duplicate(ctx: StoreContext, header: storage.HeaderSummary, tmp: Path, digest: str,
               known: str, calling_ae: str) -> int:
    """A SOP Instance UID seen before: acknowledge; keep a differing copy aside, never replace."""
    if known == digest:
        log.info("instance_duplicate", sop_instance_uid=header.sop_instance_uid, calling_ae=calling_ae)
        return SUCCESS
    path = ctx.node.data_dir / "conflicts" / header.sop_instance_uid / f"{digest}.dcm"
    try:
        storage.commit_file(tmp, path, fsync=ctx.node.fsync)
    except OSError as exc:
        raise _write_failed(exc) from exc
    log.warning("instance_conflict", sop_instance_uid=header.sop_instance_uid, calling_ae=calling_ae,
                kept_as=str(path.relative_to(ctx.node.data_dir)))
    return SUCCESS
