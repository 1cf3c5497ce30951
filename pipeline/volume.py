"""Load a received series into a volume with its geometry: the first step of the pipeline.

Instances are grouped by temporal phase (TemporalPositionIdentifier, 1 when absent) and sorted
by their position along the slice normal; pixel data is decoded whatever the transfer syntax
(pydicom with the pylibjpeg and pyjpegls plugins) and the rescale slope/intercept applied.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from pipeline.errors import InputRejected


@dataclass(frozen=True)
class Volume:
    """``pixels`` is float32 (phases, slices, rows, columns) in rescaled units.

    ``positions`` holds ImagePositionPatient per slice (slices, 3); ``orientation`` the row and
    column cosines; ``spacing`` (slice, row, column) in mm; ``sop_instance_uids`` per phase and
    slice, in the same order as ``pixels``.
    """

    pixels: np.ndarray
    positions: np.ndarray
    orientation: tuple[float, ...]
    spacing: tuple[float, float, float]
    sop_instance_uids: tuple[tuple[str, ...], ...]
    study_uid: str
    series_uid: str
    phase_times_s: tuple[float, ...] = ()  # acquisition time of each phase, seconds from the first

    @property
    def phases(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.pixels.shape)

    @property
    def normal(self) -> np.ndarray:
        row, col = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        return np.cross(row, col)


def _read(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is bad input
        raise InputRejected("unreadable_file", f"{path.name}: {exc}") from exc


MAX_MATRIX = 2048  # larger in-plane matrices are not spine VIBE series (and would need GBs)


def _pixels(ds: Dataset) -> np.ndarray:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if not 0 < rows <= MAX_MATRIX or not 0 < cols <= MAX_MATRIX:
        raise InputRejected("unsupported_image", f"matrix {rows}x{cols}: expected 1 to {MAX_MATRIX} rows and columns")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing decoder, corrupt stream, bad attributes
        ts = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise InputRejected("undecodable_pixels", f"transfer syntax {ts}: {exc}") from exc
    if arr.ndim != 2:
        raise InputRejected("unsupported_image", f"expected one frame per instance, got shape {arr.shape}")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return arr.astype(np.float32) * slope + intercept


def _seconds(tm: object) -> float | None:
    """A DICOM TM value (HHMMSS.FFFFFF, parts optional) as seconds since midnight."""
    text = str(tm or "").strip()
    if len(text) < 2 or not text[:2].isdigit():
        return None
    try:
        h = int(text[0:2])
        m = int(text[2:4]) if len(text) >= 4 else 0
        s = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return h * 3600 + m * 60 + s


def _phase_times(ordered: list[list[tuple[float, Dataset]]]) -> tuple[float, ...]:
    times = []
    for phase in ordered:
        ds = phase[0][1]
        t = _seconds(ds.get("AcquisitionTime")) or _seconds(ds.get("ContentTime"))
        if t is None:
            return ()
        times.append(t)
    return tuple(t - times[0] for t in times)


def _check_geometry(orientation: tuple[float, ...], pixel_spacing: list[float]) -> None:
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    if (len(orientation) != 6 or not np.all(np.isfinite(orientation)) or abs(np.linalg.norm(row) - 1) > 0.01
            or abs(np.linalg.norm(col) - 1) > 0.01 or abs(float(row @ col)) > 0.01):
        raise InputRejected("inconsistent_geometry", "ImageOrientationPatient is not two orthogonal unit vectors")
    if len(pixel_spacing) != 2 or not all(np.isfinite(v) and 0.01 <= v <= 20 for v in pixel_spacing):
        raise InputRejected("inconsistent_geometry", f"PixelSpacing {pixel_spacing} is outside 0.01-20 mm")


def load_series(paths: Sequence[Path]) -> Volume:
    """Read, sort and decode the instances of one series into a :class:`Volume`."""
    if not paths:
        raise InputRejected("empty_series", "no instances to load")
    datasets = [_read(Path(p)) for p in paths]
    first = datasets[0]
    try:
        orientation = tuple(float(v) for v in first.ImageOrientationPatient)
        pixel_spacing = [float(v) for v in first.PixelSpacing]
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputRejected("missing_geometry", f"orientation or pixel spacing: {exc}") from exc
    _check_geometry(orientation, pixel_spacing)
    normal = np.cross(orientation[:3], orientation[3:])
    phases: dict[int, list[tuple[float, Dataset]]] = defaultdict(list)
    for ds in datasets:
        try:
            pos = np.array([float(v) for v in ds.ImagePositionPatient])
        except (AttributeError, TypeError, ValueError) as exc:
            raise InputRejected("missing_geometry", f"ImagePositionPatient: {exc}") from exc
        phases[int(ds.get("TemporalPositionIdentifier", 1) or 1)].append((float(pos @ normal), ds))
    counts = {len(v) for v in phases.values()}
    if len(counts) != 1:
        raise InputRejected("inconsistent_geometry", f"phases hold different slice counts {sorted(counts)}")
    ordered = [sorted(phases[k], key=lambda item: item[0]) for k in sorted(phases)]
    slices = [[_pixels(ds) for _, ds in phase] for phase in ordered]
    shapes = {a.shape for phase in slices for a in phase}
    if len(shapes) != 1:
        raise InputRejected("inconsistent_geometry", f"instances have different matrices {sorted(shapes)}")
    pixels = np.stack([np.stack(phase) for phase in slices])
    dists = [d for d, _ in ordered[0]]
    if len(dists) > 1 and float(np.min(np.diff(dists))) < 1e-3:
        raise InputRejected("inconsistent_geometry", "two instances of one phase lie at the same position")
    step = float(np.median(np.diff(dists))) if len(dists) > 1 else float(first.get("SliceThickness", 1) or 1)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in ordered[0]])
    return Volume(
        pixels=pixels,
        positions=positions,
        orientation=orientation,
        spacing=(step, pixel_spacing[0], pixel_spacing[1]),
        sop_instance_uids=tuple(tuple(str(ds.SOPInstanceUID) for _, ds in phase) for phase in ordered),
        study_uid=str(first.StudyInstanceUID),
        series_uid=str(first.SeriesInstanceUID),
        phase_times_s=_phase_times(ordered),
    )
