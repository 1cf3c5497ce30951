"""Load a received series into a volume with its geometry: the first step of the pipeline.

Instances are grouped by temporal phase (TemporalPositionIdentifier, 1 when absent) and sorted
by their position along the slice normal; pixel data is decoded whatever the transfer syntax
(pydicom with the pylibjpeg and pyjpegls plugins) and the rescale slope/intercept applied.

The files are read once, at the edge (:func:`read_series`, called by the node's worker); the
volume keeps each instance's header (without pixel data), so the result builders need no
further reads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from pipeline.errors import InputRejected
from pipeline.reasons import Reason

PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class Volume:
    """``pixels`` is float32 (phases, slices, rows, columns) in rescaled units.

    ``positions`` holds ImagePositionPatient per slice (slices, 3); ``orientation`` the row and
    column cosines; ``spacing`` (slice, row, column) in mm; ``sop_instance_uids`` and ``headers``
    (each instance's dataset without its pixel data, as ``stop_before_pixels`` reads it) per
    phase and slice, in the same order as ``pixels``.
    """

    pixels: np.ndarray
    positions: np.ndarray
    orientation: tuple[float, ...]
    spacing: tuple[float, float, float]
    sop_instance_uids: tuple[tuple[str, ...], ...]
    study_uid: str
    series_uid: str
    phase_times_s: tuple[float, ...] = ()  # acquisition time of each phase, seconds from the first
    headers: tuple[tuple[Dataset, ...], ...] = ()

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


def _read(path: Path, pixels: bool) -> Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except Exception as exc:  # noqa: BLE001 - any parse failure is bad input
        raise InputRejected(Reason.UNREADABLE_FILE, f"{path.name}: {exc}") from exc


def read_series(paths: Sequence[Path], *, pixels: bool = True) -> list[Dataset]:
    """Read the instances of one series, in the order given: the pipeline's only file reads.

    ``pixels=False`` reads the headers only (enough for an abstention SR). Raises
    :class:`InputRejected` (``unreadable_file``) for a file that is not DICOM.
    """
    return [_read(Path(p), pixels) for p in paths]


def _header(ds: Dataset) -> Dataset:
    """``ds`` without its pixel data (the elements ``stop_before_pixels`` reads), file meta kept."""
    header = ds[:PIXEL_DATA]
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        header.file_meta = file_meta
    return header


MAX_MATRIX = 2048  # larger in-plane matrices are not spine VIBE series (and would need GBs)


def _pixels(ds: Dataset) -> np.ndarray:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if not 0 < rows <= MAX_MATRIX or not 0 < cols <= MAX_MATRIX:
        raise InputRejected(Reason.UNSUPPORTED_IMAGE,
                            f"matrix {rows}x{cols}: expected 1 to {MAX_MATRIX} rows and columns")
    try:
        arr = pixel_array(ds)  # as ds.pixel_array, without keeping a decoded copy on the dataset
    except Exception as exc:  # noqa: BLE001 - missing decoder, corrupt stream, bad attributes
        ts = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise InputRejected(Reason.UNDECODABLE_PIXELS, f"transfer syntax {ts}: {exc}") from exc
    if arr.ndim != 2:
        raise InputRejected(Reason.UNSUPPORTED_IMAGE, f"expected one frame per instance, got shape {arr.shape}")
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
        raise InputRejected(Reason.INCONSISTENT_GEOMETRY, "ImageOrientationPatient is not two orthogonal unit vectors")
    if len(pixel_spacing) != 2 or not all(np.isfinite(v) and 0.01 <= v <= 20 for v in pixel_spacing):
        raise InputRejected(Reason.INCONSISTENT_GEOMETRY, f"PixelSpacing {pixel_spacing} is outside 0.01-20 mm")


def _frame(first: Dataset) -> tuple[tuple[float, ...], list[float]]:
    """The series' orientation (row and column cosines) and pixel spacing, checked."""
    try:
        orientation = tuple(float(v) for v in first.ImageOrientationPatient)
        pixel_spacing = [float(v) for v in first.PixelSpacing]
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputRejected(Reason.MISSING_GEOMETRY, f"orientation or pixel spacing: {exc}") from exc
    _check_geometry(orientation, pixel_spacing)
    return orientation, pixel_spacing


def _by_phase(datasets: Sequence[Dataset], normal: np.ndarray) -> list[list[tuple[float, Dataset]]]:
    """Instances per temporal phase, each phase sorted along the slice normal."""
    phases: dict[int, list[tuple[float, Dataset]]] = defaultdict(list)
    for ds in datasets:
        try:
            pos = np.array([float(v) for v in ds.ImagePositionPatient])
        except (AttributeError, TypeError, ValueError) as exc:
            raise InputRejected(Reason.MISSING_GEOMETRY, f"ImagePositionPatient: {exc}") from exc
        phases[int(ds.get("TemporalPositionIdentifier", 1) or 1)].append((float(pos @ normal), ds))
    counts = {len(v) for v in phases.values()}
    if len(counts) != 1:
        raise InputRejected(Reason.INCONSISTENT_GEOMETRY, f"phases hold different slice counts {sorted(counts)}")
    return [sorted(phases[k], key=lambda item: item[0]) for k in sorted(phases)]


def _decode(ordered: list[list[tuple[float, Dataset]]]) -> np.ndarray:
    """(phases, slices, rows, columns) float32 in rescaled units."""
    slices = [[_pixels(ds) for _, ds in phase] for phase in ordered]
    shapes = {a.shape for phase in slices for a in phase}
    if len(shapes) != 1:
        raise InputRejected(Reason.INCONSISTENT_GEOMETRY, f"instances have different matrices {sorted(shapes)}")
    return np.stack([np.stack(phase) for phase in slices])


def load_series(source: Sequence[Dataset] | Sequence[Path]) -> Volume:
    """Sort and decode the instances of one series into a :class:`Volume`.

    ``source``: the series' datasets as :func:`read_series` gives them (no file is read then),
    or their paths (read here). Raises :class:`InputRejected` with the reason for a series
    that cannot be loaded (no instances, geometry missing or inconsistent, pixels undecodable).
    """
    if not source:
        raise InputRejected(Reason.EMPTY_SERIES, "no instances to load")
    datasets = [s if isinstance(s, Dataset) else _read(Path(s), pixels=True) for s in source]
    first = datasets[0]
    orientation, pixel_spacing = _frame(first)
    ordered = _by_phase(datasets, np.cross(orientation[:3], orientation[3:]))
    pixels = _decode(ordered)
    dists = [d for d, _ in ordered[0]]
    if len(dists) > 1 and float(np.min(np.diff(dists))) < 1e-3:
        raise InputRejected(Reason.INCONSISTENT_GEOMETRY, "two instances of one phase lie at the same position")
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
        headers=tuple(tuple(_header(ds) for _, ds in phase) for phase in ordered),
    )
