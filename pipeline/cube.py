"""The classifier's input: a 12-slice cube around a lesion, on a 1 mm in-plane grid.

Channels: the post-contrast image relative to normal marrow, then the peak, inflow and outflow
maps; for a single-phase series inflow and outflow are zeros (the network is told nothing it
could mistake for a measurement). Every slice of the series is kept; in-plane, a 64 x 64 mm
window centred on the lesion's centroid is resampled bilinearly (outside the image: 0).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.parameter_maps import ParameterMaps

CUBE_MM = 64
CHANNELS = ("image", "peak", "inflow", "outflow")


def lesion_cube(image: np.ndarray, maps: ParameterMaps, marrow_level: float, centroid: tuple[float, float, float],
                pixel_mm: tuple[float, float]) -> np.ndarray:
    """(4, slices, 64, 64) float32; ``centroid`` in voxels (slice, row, col)."""
    nz = image.shape[0]
    offsets = np.arange(CUBE_MM, dtype=np.float32) - (CUBE_MM - 1) / 2  # mm around the centre
    rows = centroid[1] + offsets / pixel_mm[0]
    cols = centroid[2] + offsets / pixel_mm[1]
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    volumes = [image / max(marrow_level, 1e-6), maps.peak,
               maps.inflow if maps.inflow is not None else None,
               maps.outflow if maps.outflow is not None else None]
    cube = np.zeros((len(CHANNELS), nz, CUBE_MM, CUBE_MM), dtype=np.float32)
    for c, vol in enumerate(volumes):
        if vol is None:
            continue
        for k in range(nz):
            cube[c, k] = ndimage.map_coordinates(vol[k].astype(np.float32), [rr, cc], order=1, cval=0.0)
    return cube
