"""A lesion's planar measurements on one slice: its outline, long axis and short axis.

What a radiologist measures by hand on the slice where a lesion is largest: the longest in-plane
diameter (long axis) and the longest diameter perpendicular to it (short axis), drawn as lines,
and the outline. Coordinates are DICOM image coordinates, (column, row), with (0, 0) the top left
corner of the top left pixel (pixel centres at +0.5), as SR SCOORD content items want them;
lengths are in mm, from the Pixel Spacing (row spacing, column spacing).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import contourpy
import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist

PERPENDICULAR_STEPS = 256  # positions along the long axis where a perpendicular chord is measured


@dataclass(frozen=True)
class PlanarMeasurement:
    """``outline``: closed polyline (first point repeated last), (N, 2) column-row; each axis is
    (2, 2) column-row, ``short_axis`` None for a lesion too thin to have one."""

    outline: np.ndarray
    area_mm2: float
    long_axis: np.ndarray
    long_axis_mm: float
    short_axis: np.ndarray | None
    short_axis_mm: float | None


def _outer_outline(mask: np.ndarray) -> np.ndarray:
    """The iso-0.5 contour of ``mask`` enclosing the largest area, (N, 2) column-row, closed."""
    padded = np.pad(mask.astype(np.float64), 1)
    lines = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate).lines(0.5)
    if not lines:
        raise ValueError("the mask is empty on this slice")
    best = max(lines, key=lambda line: abs(_shoelace(np.asarray(line))))
    points = np.asarray(best, dtype=np.float64) - 1.0 + 0.5  # undo the pad; pixel centres at +0.5
    if not np.array_equal(points[0], points[-1]):
        points = np.vstack([points, points[:1]])
    return points


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _long_axis(points_mm: np.ndarray) -> tuple[np.ndarray, float]:
    candidates = points_mm
    with contextlib.suppress(QhullError, ValueError):
        candidates = points_mm[ConvexHull(points_mm).vertices]
    distances = cdist(candidates, candidates)
    i, j = np.unravel_index(int(np.argmax(distances)), distances.shape)
    return np.stack([candidates[i], candidates[j]]), float(distances[i, j])


def _short_axis(points_mm: np.ndarray, long_axis_mm: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The longest chord inside the outline perpendicular to the long axis (None: none found)."""
    u = long_axis_mm[1] - long_axis_mm[0]
    u /= np.linalg.norm(u)
    v = np.array([-u[1], u[0]])
    along, across = points_mm @ u, points_mm @ v
    a0, a1, c0, c1 = along[:-1], along[1:], across[:-1], across[1:]
    best: tuple[float, float, float] | None = None  # (length, t, start across)
    for t in np.linspace(along.min(), along.max(), PERPENDICULAR_STEPS + 2)[1:-1]:
        crossing = (a0 - t) * (a1 - t) < 0
        if not crossing.any():
            continue
        f = (t - a0[crossing]) / (a1[crossing] - a0[crossing])
        hits = np.sort(c0[crossing] + f * (c1[crossing] - c0[crossing]))
        inside = hits[1::2] - hits[0:-1:2]  # the outline's inside intervals along the chord
        if inside.size and (best is None or inside.max() > best[0]):
            k = int(np.argmax(inside))
            best = (float(inside[k]), float(t), float(hits[2 * k]))
    if best is None or best[0] <= 0:
        return None
    length, t, start = best
    ends = np.stack([t * u + start * v, t * u + (start + length) * v])
    return ends, length


def measure_planar(mask: np.ndarray, pixel_spacing: tuple[float, float]) -> PlanarMeasurement:
    """Outline and axes of the largest region of the 2D ``mask`` (rows, cols).

    ``pixel_spacing``: DICOM Pixel Spacing, (row spacing, column spacing) in mm. Raises
    ``ValueError`` for an empty mask.
    """
    if not mask.any():
        raise ValueError("the mask is empty on this slice")
    scale = np.array([float(pixel_spacing[1]), float(pixel_spacing[0])])  # mm per column, per row
    outline = _outer_outline(mask)
    outline_mm = outline * scale
    long_mm, long_length = _long_axis(outline_mm[:-1])
    short = _short_axis(outline_mm, long_mm)
    return PlanarMeasurement(
        outline=outline, area_mm2=abs(_shoelace(outline_mm[:-1])),
        long_axis=long_mm / scale, long_axis_mm=long_length,
        short_axis=None if short is None else short[0] / scale,
        short_axis_mm=None if short is None else short[1])
