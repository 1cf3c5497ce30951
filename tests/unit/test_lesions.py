"""Lesions from hand-made masks: connectivity, size limit, volume, diameter and enhancement in physical units."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.lesions import Lesion, find_lesions, largest_component, max_diameter, physical_points
from pipeline.volume import Volume


def _volume(shape: tuple[int, int, int], spacing: tuple[float, float, float],
            orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0)) -> Volume:
    """Slices stacked along the normal of ``orientation``, ``spacing[0]`` apart, from (10, 20, 30)."""
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([np.array([10.0, 20.0, 30.0]) + k * spacing[0] * normal for k in range(shape[0])])
    return Volume(pixels=np.zeros((1, *shape), dtype=np.float32), positions=positions, orientation=orientation,
                  spacing=spacing, sop_instance_uids=(tuple(str(k) for k in range(shape[0])),),
                  study_uid="1", series_uid="2")


def _lesions(mask: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), **kwargs: float) -> list[Lesion]:
    image = np.where(mask, 300.0, 100.0).astype(np.float32)
    return find_lesions(mask, _volume(mask.shape, spacing), image, marrow_level=100.0, **kwargs)


def test_voxel_centres_follow_the_dicom_image_plane_equation() -> None:
    """Column index moves along the row direction by the column spacing, row index along the
    column direction by the row spacing; the slice index picks the slice's own position."""
    volume = _volume((3, 8, 8), (4.0, 0.5, 2.0), orientation=(0, 1, 0, 0, 0, -1))  # sagittal, normal -x
    points = physical_points(volume, np.array([[0, 0, 0], [2, 3, 5]]))
    np.testing.assert_allclose(points[0], [10.0, 20.0, 30.0])
    np.testing.assert_allclose(points[1], [10.0 - 2 * 4.0, 20.0 + 5 * 2.0, 30.0 - 3 * 0.5])


def test_max_diameter_needs_two_points() -> None:
    assert max_diameter(np.zeros((0, 3))) == 0.0
    assert max_diameter(np.array([[1.0, 2.0, 3.0]])) == 0.0
    assert max_diameter(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 12.0]])) == pytest.approx(13.0)


def test_max_diameter_of_a_solid_cube_is_its_space_diagonal() -> None:
    grid = np.stack(np.meshgrid(*[np.arange(5.0)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    assert max_diameter(grid) == pytest.approx(4 * np.sqrt(3))


def test_max_diameter_of_a_flat_lesion_uses_every_point() -> None:
    """Coplanar points have no 3D hull; the diameter is still the largest distance."""
    points = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [6.0, 8.0, 0.0], [2.0, 0.0, 0.0]])
    assert max_diameter(points) == pytest.approx(10.0)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.77, 0.61)])
@pytest.mark.parametrize("height", [3.0, 1000.0])
def test_max_diameter_of_a_large_flat_lesion_is_exact(spacing: tuple[float, float], height: float) -> None:
    """A one-slice lesion of 4,800 voxels: the corners, not a subsample of the points; also on a
    slice far from the patient origin (its plane is found from the points' own centre)."""
    rows, cols = np.mgrid[0:60, 0:80]
    points = np.stack([np.full(rows.size, height), rows.ravel() * spacing[0], cols.ravel() * spacing[1]], axis=1)
    assert max_diameter(points) == pytest.approx(np.hypot(59 * spacing[0], 79 * spacing[1]))


def test_max_diameter_of_collinear_points_is_the_distance_between_their_ends() -> None:
    points = np.array([[0.0, 2.0 * k, 1.5 * k] for k in (3, 0, 7, 5, 1)])
    assert max_diameter(points) == pytest.approx(7 * 2.5)


def test_max_diameter_of_points_qhull_rejects_does_not_raise() -> None:
    """Qhull refuses non-finite coordinates (ValueError); the distances are then taken over
    every point instead of failing the analysis."""
    points = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [np.nan, 0.0, 0.0]])
    assert np.isnan(max_diameter(points))


def _on_a_line(n: int, far: dict[int, float]) -> np.ndarray:
    """``n`` collinear points at the origin but for those at the indices of ``far`` (index: x)."""
    xs = np.zeros(n)
    for index, x in far.items():
        xs[index] = x
    return np.stack([xs, np.zeros(n), np.zeros(n)], axis=1)


def test_max_diameter_of_many_collinear_points_sees_every_far_point() -> None:
    """Thousands of points without a 2D or 3D hull: the ends along the line, wherever they are
    (the diameter was once taken over every k-th point and missed them)."""
    assert max_diameter(_on_a_line(3000, {1: 100.0, 2: 10.0})) == pytest.approx(100.0)
    assert max_diameter(_on_a_line(3001, {1: 100.0, 2: 10.0})) == pytest.approx(100.0)
    assert max_diameter(_on_a_line(6001, {2: 100.0, 3: -10.0})) == pytest.approx(110.0)


def test_largest_component_keeps_only_the_biggest() -> None:
    mask = np.zeros((3, 10, 10), dtype=bool)
    mask[1, 0:2, 0:2] = True  # 4 voxels, label 1
    mask[1, 5:8, 5:8] = True  # 9 voxels, label 2
    mask[1, 0, 9] = True  # 1 voxel, label 3
    kept = largest_component(mask)
    assert int(kept.sum()) == 9 and kept[1, 5:8, 5:8].all()


def test_largest_component_of_two_keeps_the_bigger() -> None:
    mask = np.zeros((3, 10, 10), dtype=bool)
    mask[0, 0:2, 0:2] = True  # 4 voxels
    mask[2, 5:8, 5:8] = True  # 9 voxels
    kept = largest_component(mask)
    assert int(kept.sum()) == 9 and kept[2, 5:8, 5:8].all()


def test_largest_component_joins_in_plane_diagonal_neighbours() -> None:
    """Two squares touching at a corner are one component (8 voxels), larger than a 6-voxel one."""
    mask = np.zeros((3, 10, 10), dtype=bool)
    mask[1, 0:2, 0:2] = mask[1, 2:4, 2:4] = True
    mask[1, 7:9, 5:8] = True
    kept = largest_component(mask)
    assert int(kept.sum()) == 8 and kept[1, 0:4, 0:4].sum() == 8


def test_largest_component_of_a_single_or_empty_mask_is_the_mask() -> None:
    mask = np.zeros((3, 10, 10), dtype=bool)
    np.testing.assert_array_equal(largest_component(mask), mask)
    mask[0:2, 2:4, 2:4] = True
    np.testing.assert_array_equal(largest_component(mask), mask)


def test_in_plane_diagonal_neighbours_are_one_lesion() -> None:
    """Within a slice, 8-connectivity: voxels touching at a corner belong together."""
    mask = np.zeros((3, 12, 12), dtype=bool)
    mask[1, 2:6, 2:6] = True
    mask[1, 6:10, 6:10] = True  # touches the first square at the corner (5, 5)-(6, 6)
    (lesion,) = _lesions(mask, min_volume_mm3=0)
    assert lesion.voxels == 32
    for corner in ((4, 6), (6, 4)):  # the anti-diagonal corners
        mask2 = np.zeros((3, 12, 12), dtype=bool)
        mask2[1, 5, 5] = mask2[1, corner[0], corner[1]] = True
        assert len(_lesions(mask2, min_volume_mm3=0)) == 1


def test_across_slices_only_face_neighbours_connect() -> None:
    """Between slices, face neighbours only: a voxel directly above or below connects, a voxel
    diagonally above or below does not (slices are thick)."""
    for above in (0, 2):
        stacked = np.zeros((3, 6, 6), dtype=bool)
        stacked[1, 3, 3] = stacked[above, 3, 3] = True
        assert [les.voxels for les in _lesions(stacked, min_volume_mm3=0)] == [2]
        for dr, dc in ((0, 1), (1, 0), (1, 1), (-1, 0), (0, -1), (-1, -1), (1, -1), (-1, 1)):
            diagonal = np.zeros((3, 6, 6), dtype=bool)
            diagonal[1, 3, 3] = diagonal[above, 3 + dr, 3 + dc] = True
            assert [les.voxels for les in _lesions(diagonal, min_volume_mm3=0)] == [1, 1]


def test_lesions_smaller_than_the_minimum_volume_are_dropped() -> None:
    """The default minimum is 20 mm3; a lesion of exactly the minimum is kept."""
    mask = np.zeros((4, 20, 20), dtype=bool)
    mask[0, 19, 19] = True  # 1 voxel, found first
    mask[1, 0:4, 0:5] = True  # 20 voxels of 1 mm3: exactly 20 mm3
    mask[1, 10:13, 10:16] = True  # 18 voxels: 18 mm3
    assert [les.voxels for les in _lesions(mask)] == [20]
    assert [les.voxels for les in _lesions(mask, spacing=(1.0, 0.5, 1.0))] == []  # 10 and 9 mm3
    assert [les.voxels for les in _lesions(mask, min_volume_mm3=9.0, spacing=(1.0, 0.5, 1.0))] == [20, 18]


def test_lesions_are_numbered_largest_first_with_their_own_masks() -> None:
    mask = np.zeros((4, 20, 20), dtype=bool)
    mask[0, 0:3, 0:3] = True  # 9 voxels, found first
    mask[2:4, 10:15, 10:15] = True  # 50 voxels
    mask[0, 15:19, 0:4] = True  # 16 voxels
    lesions = _lesions(mask, min_volume_mm3=0)
    assert [(les.index, les.voxels) for les in lesions] == [(1, 50), (2, 16), (3, 9)]
    assert [float(les.volume_mm3) for les in lesions] == [50.0, 16.0, 9.0]
    assert lesions[0].mask[2:4, 10:15, 10:15].all() and int(lesions[0].mask.sum()) == 50
    assert lesions[2].mask[0, 0:3, 0:3].all() and int(lesions[2].mask.sum()) == 9


def test_volume_diameter_and_centroid_in_physical_units() -> None:
    mask = np.zeros((5, 30, 30), dtype=bool)
    mask[1:4, 4:8, 10:20] = True  # 3 slices x 4 rows x 10 cols
    (lesion,) = _lesions(mask, spacing=(3.0, 0.5, 2.0))
    assert lesion.voxels == 120 and lesion.volume_mm3 == pytest.approx(120 * 3.0)
    assert lesion.max_diameter_mm == pytest.approx(np.sqrt((9 * 2.0) ** 2 + (3 * 0.5) ** 2 + (2 * 3.0) ** 2))
    assert lesion.centroid_voxel == pytest.approx((2.0, 5.5, 14.5))


def test_largest_slice_is_the_one_with_most_lesion_voxels() -> None:
    mask = np.zeros((5, 10, 10), dtype=bool)
    mask[1, 2:4, 2:4] = True
    mask[2, 1:5, 1:5] = True
    mask[3, 2:5, 2:5] = True
    (lesion,) = _lesions(mask, min_volume_mm3=0)
    assert lesion.largest_slice == 2


def test_enhancement_is_relative_to_normal_marrow() -> None:
    """Mean and 95th percentile of the lesion's signal over the marrow level."""
    mask = np.zeros((2, 10, 10), dtype=bool)
    mask[0] = True  # 100 voxels with values 1 .. 100
    image = np.zeros((2, 10, 10), dtype=np.float32)
    image[0] = np.arange(1, 101).reshape(10, 10)
    volume = _volume(mask.shape, (1.0, 1.0, 1.0))
    (lesion,) = find_lesions(mask, volume, image, marrow_level=0.5)
    assert lesion.mean_enhancement == pytest.approx(50.5 / 0.5)
    assert lesion.peak_enhancement == pytest.approx(95.05 / 0.5)


def test_a_zero_marrow_level_does_not_divide_by_zero() -> None:
    mask = np.zeros((2, 10, 10), dtype=bool)
    mask[0, :5, :5] = True
    image = np.where(mask, 2e-6, 0.0).astype(np.float64)
    (lesion,) = find_lesions(mask, _volume(mask.shape, (1.0, 1.0, 1.0)), image, marrow_level=0.0)
    assert lesion.mean_enhancement == pytest.approx(2.0) and lesion.peak_enhancement == pytest.approx(2.0)


def test_an_empty_mask_has_no_lesions() -> None:
    mask = np.zeros((2, 6, 6), dtype=bool)
    assert _lesions(mask, min_volume_mm3=0) == []
