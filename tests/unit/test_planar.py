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


def inside(mask: np.ndarray, line: np.ndarray) -> bool:
    """Whether the (column, row) line runs through the mask (grown by a pixel for the edges)."""
    grown = np.pad(mask, 1)
    grown = grown | np.roll(grown, 1, 0) | np.roll(grown, -1, 0) | np.roll(grown, 1, 1) | np.roll(grown, -1, 1)
    t = np.linspace(0.02, 0.98, 200)[:, None]
    points = line[0] + t * (line[1] - line[0])
    cols, rows = np.floor(points).astype(int).T + 1
    return bool(grown[rows, cols].all())


def rotated_ellipse(semi: tuple[float, float], degrees: float, size: int = 64) -> np.ndarray:
    r, c = np.mgrid[:size, :size] - size / 2
    a = np.radians(degrees)
    u, v = c * np.cos(a) + r * np.sin(a), -c * np.sin(a) + r * np.cos(a)
    return (u / semi[0]) ** 2 + (v / semi[1]) ** 2 <= 1


def test_a_rotated_ellipse_has_perpendicular_axes_through_its_centre() -> None:
    mask = rotated_ellipse((14, 6), 30)
    planar = measure_planar(mask, (1.0, 1.0))
    assert planar.long_axis_mm == pytest.approx(29, abs=1.0)
    assert planar.short_axis_mm == pytest.approx(13, abs=1.0)
    assert planar.short_axis is not None
    long_dir = planar.long_axis[1] - planar.long_axis[0]
    short_dir = planar.short_axis[1] - planar.short_axis[0]
    cosine = abs(long_dir @ short_dir) / (np.linalg.norm(long_dir) * np.linalg.norm(short_dir))
    assert cosine < 0.01
    assert np.degrees(np.arctan2(abs(long_dir[1]), abs(long_dir[0]))) == pytest.approx(30, abs=3)
    centre = np.array([32.5, 32.5])  # (column, row) of the centre in DICOM image coordinates
    assert np.linalg.norm(planar.short_axis.mean(axis=0) - centre) < 1.5
    assert np.linalg.norm(planar.long_axis.mean(axis=0) - centre) < 1.5
    for axis in (planar.long_axis, planar.short_axis):
        assert inside(mask, axis)
        ends = np.linalg.norm(planar.outline[:, None, :] - axis[None], axis=2).min(axis=0)
        assert (ends < 0.75).all()  # both ends on the outline


@pytest.mark.parametrize("opening", ["right", "left", "top", "bottom"])
def test_the_short_axis_does_not_cross_the_opening_of_a_c_shaped_lesion(opening: str) -> None:
    mask = rotated_ellipse((16, 12), 0) & ~rotated_ellipse((11, 7), 0)
    cut = {"right": (slice(None), slice(40, None)), "left": (slice(None), slice(None, 24)),
           "top": (slice(None, 28), slice(None)), "bottom": (slice(37, None), slice(None))}[opening]
    mask[cut] = False  # cut through the wall into the hollow: a C whose chords across the middle leave it
    # (a closed ring is measured across its hollow, as a rim-enhancing lesion is)
    planar = measure_planar(mask, (1.0, 1.0))
    assert planar.short_axis is not None
    assert inside(mask, planar.short_axis)  # the long axis may cross the hollow; the short axis stays in the wall
    assert not inside(mask, planar.long_axis)
