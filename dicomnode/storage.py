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
import struct
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from dicomnode import header_scan
from dicomnode.errors import DiskFullError, InvalidUIDError

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

SERIES_ATTRS = (
    "Modality", "SeriesDescription", "MRAcquisitionType", "ScanningSequence", "SequenceVariant",
    "SequenceName", "ContrastBolusAgent", "ImageType", "NumberOfTemporalPositions",
)
INSTANCE_ATTRS = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
    "TemporalPositionIdentifier", "Rows", "Columns",
)
_WANTED = header_scan.wanted_tags((*INSTANCE_ATTRS, *SERIES_ATTRS))  # what summarise reads


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


INCOMING = "incoming"  # under data_dir: instances being received (same file system as instances/)


def clear_incoming(data_dir: Path) -> int:
    """Remove what an interrupted node left half-received (never acknowledged); returns the count."""
    removed = 0
    for path in (data_dir / INCOMING).glob(".incoming-*.tmp"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def write_temp(folder: Path, *parts: bytes, fsync: bool) -> Path:
    """Write ``parts`` to a new temporary file in ``folder`` (flushed, fsynced unless told not);
    ``commit_file`` then gives it its final name."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for part in parts:
                fh.write(part)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit_file(tmp: Path, path: Path, *, fsync: bool) -> None:
    """Rename a file made by ``write_temp`` to ``path`` (atomic: the path holds the old file or all of
    the new one); with ``fsync``, the rename itself is flushed too (see ``fsync_folder``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    if fsync:
        fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename survives power loss only once its folder is flushed)."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, data: bytes, *, fsync: bool) -> None:
    """Write ``data`` to ``path`` so that the path holds either nothing or all of it."""
    tmp = write_temp(path.parent, data, fsync=fsync)
    try:
        commit_file(tmp, path, fsync=fsync)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _before_pixels(tag: int, _vr: str | None, _length: int) -> bool:
    return tag >= header_scan.PIXEL_DATA_GROUP


def read_header(stream: bytes, transfer_syntax: UID) -> Mapping[str, Any]:
    """Keyword -> value of the attributes ``summarise`` reads (absent ones left out), from the data
    set's bytes as received, never past the pixel data.

    Little-endian data sets are walked by ``header_scan`` (only the wanted values are converted);
    whatever it finds unusual, and big-endian data, are read by pydicom's reader up to the pixel
    data. A deflated data set is inflated first. Raises on bytes that are not a data set.
    """
    if transfer_syntax.is_deflated:
        stream = zlib.decompress(stream, -zlib.MAX_WBITS)
    if transfer_syntax.is_little_endian:
        try:
            return header_scan.read_values(stream, implicit_vr=transfer_syntax.is_implicit_VR, wanted=_WANTED)
        except header_scan.Unusual:
            pass
    ds = read_dataset(BytesIO(stream), transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian,
                      stop_when=_before_pixels)
    return {keyword: ds.get(keyword) for keyword in _WANTED.values() if keyword in ds}


def sha256(*parts: bytes) -> str:
    """The digest of the parts written one after the other (the file's content)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    if vr == b"OB":
        return struct.pack("<HH", 0x0002, element) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", 0x0002, element) + vr + struct.pack("<H", len(value)) + value


def file_preamble(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """Preamble, prefix and File Meta Information (PS3.10 7.1) for a received data set: the same
    bytes as pynetdicom's ``Event.encoded_dataset`` writes, made without pydicom's general writer
    (which costs more than the rest of storing an instance)."""
    body = b"".join((
        _meta_element(0x0001, b"OB", b"\x00\x01"),
        _meta_element(0x0002, b"UI", sop_class_uid.encode("ascii")),
        _meta_element(0x0003, b"UI", sop_instance_uid.encode("ascii")),
        _meta_element(0x0010, b"UI", transfer_syntax.encode("ascii")),
        _meta_element(0x0012, b"UI", PYNETDICOM_IMPLEMENTATION_UID.encode("ascii")),
        _meta_element(0x0013, b"SH", PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")),
    ))
    return b"\0" * 128 + b"DICM" + _meta_element(0x0000, b"UL", struct.pack("<I", len(body))) + body


def _floats(ds: Mapping[str, Any] | Dataset, keyword: str, count: int) -> list[float] | None:
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


def _scalar(ds: Mapping[str, Any] | Dataset, keyword: str, kind: type) -> Any:
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


def summarise(ds: Mapping[str, Any] | Dataset) -> HeaderSummary:
    """Validate the UIDs and read the protocol-relevant header attributes (never pixels), from
    ``read_header``'s values or a data set."""
    return HeaderSummary(
        study_uid=require_uid("StudyInstanceUID", ds.get("StudyInstanceUID")),
        series_uid=require_uid("SeriesInstanceUID", ds.get("SeriesInstanceUID")),
        sop_instance_uid=require_uid("SOPInstanceUID", ds.get("SOPInstanceUID")),
        sop_class_uid=require_uid("SOPClassUID", ds.get("SOPClassUID")),
        series_attrs={k: _text(v) for k in SERIES_ATTRS if (v := ds.get(k)) is not None},
        instance_number=_scalar(ds, "InstanceNumber", int),
        position=_floats(ds, "ImagePositionPatient", 3),
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing=_floats(ds, "PixelSpacing", 2),
        slice_thickness=_scalar(ds, "SliceThickness", float),
        temporal_position=_scalar(ds, "TemporalPositionIdentifier", int),
        rows=_scalar(ds, "Rows", int),
        columns=_scalar(ds, "Columns", int),
    )
