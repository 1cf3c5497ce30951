"""Where received instances live on disk, and the header summary recorded for each.

Paths are built only from validated UIDs (digits and dots), never from other header text, so
nothing a sender puts in a dataset can reach outside ``data_dir``. Files are written to a
temporary name in the same folder, flushed (and fsynced unless configured off) and renamed, so
a file at its final path is always complete.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomnode.errors import DiskFullError, InvalidUIDError

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

SERIES_ATTRS = (
    "Modality", "SeriesDescription", "MRAcquisitionType", "ScanningSequence", "SequenceVariant",
    "SequenceName", "ContrastBolusAgent", "ImageType", "NumberOfTemporalPositions",
)


def is_valid_uid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID_RE.match(value))


def require_uid(name: str, value: object) -> str:
    if not is_valid_uid(value):
        shown = repr(value)[:80]
        raise InvalidUIDError(f"{name} {shown} is missing or not a valid UID")
    return str(value)


def instance_relpath(study_uid: str, series_uid: str, sop_uid: str) -> Path:
    for name, uid in (("StudyInstanceUID", study_uid), ("SeriesInstanceUID", series_uid),
                      ("SOPInstanceUID", sop_uid)):
        require_uid(name, uid)
    return Path("instances") / study_uid / series_uid / f"{sop_uid}.dcm"


def check_free_space(data_dir: Path, min_free_mb: int, needed_bytes: int) -> None:
    free = shutil.disk_usage(data_dir).free
    if free - needed_bytes < min_free_mb * 1024 * 1024:
        raise DiskFullError(
            f"only {free // (1024 * 1024)} MB free under data_dir; node.min_free_disk_mb is {min_free_mb}"
        )


def write_atomic(path: Path, data: bytes, *, fsync: bool) -> None:
    """Write ``data`` to ``path`` so that the path holds either nothing or all of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _floats(ds: Dataset, keyword: str, count: int) -> list[float] | None:
    """A multi-valued decimal attribute as floats, or None if absent or malformed."""
    try:
        value = ds.get(keyword)
        if value is None:
            return None
        items = list(value) if isinstance(value, list | tuple | MultiValue) else [value]
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        return None
    return values if len(values) == count else None


def _scalar(ds: Dataset, keyword: str, kind: type) -> Any:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else kind(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str | int | float):
        return value
    if hasattr(value, "__iter__"):
        return [str(v) for v in value]
    return str(value)


@dataclass(frozen=True, kw_only=True)
class HeaderSummary:
    """What the assembler needs from one instance, read once at receive time."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    series_attrs: dict[str, Any]
    instance_number: int | None
    position: list[float] | None
    orientation: list[float] | None
    pixel_spacing: list[float] | None
    slice_thickness: float | None
    temporal_position: int | None
    rows: int | None
    columns: int | None


def summarise(ds: Dataset) -> HeaderSummary:
    """Validate the UIDs and read the protocol-relevant header attributes (never pixels)."""
    return HeaderSummary(
        study_uid=require_uid("StudyInstanceUID", ds.get("StudyInstanceUID")),
        series_uid=require_uid("SeriesInstanceUID", ds.get("SeriesInstanceUID")),
        sop_instance_uid=require_uid("SOPInstanceUID", ds.get("SOPInstanceUID")),
        sop_class_uid=require_uid("SOPClassUID", ds.get("SOPClassUID")),
        series_attrs={k: _text(ds.get(k)) for k in SERIES_ATTRS if ds.get(k) is not None},
        instance_number=_scalar(ds, "InstanceNumber", int),
        position=_floats(ds, "ImagePositionPatient", 3),
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing=_floats(ds, "PixelSpacing", 2),
        slice_thickness=_scalar(ds, "SliceThickness", float),
        temporal_position=_scalar(ds, "TemporalPositionIdentifier", int),
        rows=_scalar(ds, "Rows", int),
        columns=_scalar(ds, "Columns", int),
    )
