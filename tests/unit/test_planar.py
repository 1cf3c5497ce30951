"""The planar measurements the SR draws: outline, long axis and short axis on one slice."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.planar import measure_planar


def ellipse(rows: int, cols: int, centre: tuple[float, float], semi: tuple[float, float]) -> np.ndarray:
    r, c = np.mgrid[:rows, :cols]
    return ((r - centre[0]) / semi[0]) ** 2 + ((c - centre[1]) / semi[1]) ** 2 <= 1


def length_mm(points: np.ndarray, spacing: tuple[float, float]) -> float:
    """Length of a two-point (column, row) line with Pixel Spacing (row, column)."""
    (c0, r0), (c1, r1) = points
    return float(np.hypot((c1 - c0) * spacing[1], (r1 - r0) * spacing[0]))


def test_an_ellipse_has_its_diameters_as_axes() -> None:
    mask = ellipse(64, 64, (20, 30), (6, 12))  # 25 columns and 13 rows of pixels across
    planar = measure_planar(mask, (1.0, 1.0))
    assert planar.long_axis_mm == pytest.approx(25.0, abs=0.01)  # pixel edges to pixel edges
    assert planar.short_axis_mm == pytest.approx(13.0, abs=0.5)
    (c0, r0), (c1, r1) = planar.long_axis
    assert r0 == r1 == pytest.approx(20.5)  # the long axis runs along the row through the centre
    assert sorted([c0, c1]) == pytest.approx([18.0, 43.0])  # DICOM image coordinates: pixel centres at +0.5
    short = planar.short_axis
    assert short is not None and short[0, 0] == pytest.approx(short[1, 0], abs=1e-6)  # vertical: perpendicular
    assert planar.area_mm2 == pytest.approx(mask.sum(), rel=0.02)


def test_lengths_use_row_and_column_spacing() -> None:
    mask = ellipse(64, 64, (30, 30), (10, 10))
    spacing = (0.5, 0.8)  # rows 0.5 mm apart, columns 0.8 mm apart
    planar = measure_planar(mask, spacing)
    assert planar.long_axis_mm == pytest.approx(length_mm(planar.long_axis, spacing), abs=1e-6)
    assert planar.long_axis_mm == pytest.approx(21 * 0.8, abs=0.05)  # the circle is widest along the rows
    assert planar.short_axis is not None
    assert planar.short_axis_mm == pytest.approx(length_mm(planar.short_axis, spacing), abs=1e-6)
    assert planar.area_mm2 == pytest.approx(mask.sum() * 0.4, rel=0.02)


def test_the_outline_is_closed_and_follows_the_largest_region() -> None:
    mask = ellipse(64, 64, (20, 20), (8, 8)) | ellipse(64, 64, (50, 50), (2, 2))
    planar = measure_planar(mask, (1.0, 1.0))
    assert np.array_equal(planar.outline[0], planar.outline[-1])
    assert planar.outline[:, 0].max() < 30 and planar.outline[:, 1].max() < 30  # not the small one


def test_the_short_axis_stays_inside_a_concave_lesion() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:30, 5:10] = True  # an L: 25 rows down, 25 columns along the foot
    mask[25:30, 5:30] = True
    planar = measure_planar(mask, (1.0, 1.0))
    assert planar.long_axis_mm == pytest.approx(np.hypot(25, 25), abs=0.8)
    assert planar.short_axis is not None
    middle = planar.short_axis.mean(axis=0)
    column, row = (middle - 0.5).round().astype(int)
    assert mask[row, column]  # the line's middle lies in the lesion, not across the L's notch


def test_a_one_pixel_lesion_and_an_empty_slice() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[3, 4] = True
    planar = measure_planar(mask, (1.0, 1.0))
    assert 0 < planar.long_axis_mm <= np.sqrt(2) + 1e-6
    with pytest.raises(ValueError, match="empty"):
        measure_planar(np.zeros((8, 8), dtype=bool), (1.0, 1.0))
