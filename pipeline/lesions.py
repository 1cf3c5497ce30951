"""Lesions from a mask: connected components with their volume, diameter and enhancement."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist

from pipeline.volume import Volume

MIN_VOLUME_MM3 = 20.0
CONNECTIVITY = np.zeros((3, 3, 3), dtype=bool)
CONNECTIVITY[1] = True
CONNECTIVITY[0, 1, 1] = CONNECTIVITY[2, 1, 1] = True


@dataclass(frozen=True, kw_only=True)
class Lesion:
    """One lesion; ``mask`` is (slices, rows, cols); enhancement is relative to normal marrow."""

    index: int
    mask: np.ndarray
    voxels: int
    volume_mm3: float
    max_diameter_mm: float
    mean_enhancement: float
    peak_enhancement: float
    centroid_voxel: tuple[float, float, float]

    @property
    def largest_slice(self) -> int:
        return int(np.argmax(self.mask.reshape(self.mask.shape[0], -1).sum(axis=1)))


def physical_points(volume: Volume, idx: np.ndarray) -> np.ndarray:
    """(N, 3) voxel indices (slice, row, col) -> patient coordinates in mm."""
    row_dir = np.array(volume.orientation[:3])
    col_dir = np.array(volume.orientation[3:])
    _, d_row, d_col = volume.spacing
    origin = volume.positions[idx[:, 0]]
    return origin + idx[:, 2:3] * d_col * row_dir + idx[:, 1:2] * d_row * col_dir


def max_diameter(points: np.ndarray) -> float:
    """The largest distance between two of ``points`` (N, 3): exact, over the points that can hold it."""
    if len(points) < 2:
        return 0.0
    extreme = _extreme_points(points)
    return max(float(cdist(extreme[i:i + 2000], extreme).max()) for i in range(0, len(extreme), 2000))


def _extreme_points(points: np.ndarray) -> np.ndarray:
    """Points among which the farthest pair lies: the convex hull's vertices; for coplanar points
    (no 3D hull) those of the hull in their plane; for collinear points the two ends. Non-finite
    coordinates (which Qhull refuses) give every point, and a nan diameter."""
    if not np.isfinite(points).all():
        return points
    with contextlib.suppress(QhullError):
        return points[ConvexHull(points).vertices]
    centred = points - points.mean(axis=0)
    in_plane = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T  # distances kept: coplanar
    with contextlib.suppress(QhullError):
        return points[ConvexHull(in_plane).vertices]
    along = in_plane[:, 0]
    return points[[int(np.argmin(along)), int(np.argmax(along))]]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask`` (the mask itself when it has at most one)."""
    labels, n = ndimage.label(mask, structure=CONNECTIVITY)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


def find_lesions(mask: np.ndarray, volume: Volume, image: np.ndarray, marrow_level: float,
                 min_volume_mm3: float = MIN_VOLUME_MM3) -> list[Lesion]:
    """Components of ``mask`` at least ``min_volume_mm3``, largest first."""
    labels, n = ndimage.label(mask, structure=CONNECTIVITY)
    voxel_mm3 = float(np.prod(volume.spacing))
    found = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        component = labels == i
        voxels = int(component.sum())
        if voxels * voxel_mm3 < min_volume_mm3:
            continue
        idx = np.argwhere(component)
        values = image[component] / max(marrow_level, 1e-6)
        found.append(Lesion(
            index=0, mask=component, voxels=voxels, volume_mm3=voxels * voxel_mm3,
            max_diameter_mm=max_diameter(physical_points(volume, idx)),
            mean_enhancement=float(values.mean()), peak_enhancement=float(np.percentile(values, 95)),
            centroid_voxel=tuple(float(v) for v in idx.mean(axis=0)),  # type: ignore[arg-type]
        ))
    found.sort(key=lambda les: -les.volume_mm3)
    return [Lesion(**{**les.__dict__, "index": k + 1}) for k, les in enumerate(found)]
