"""The classifier's input: a 12-slice cube around a lesion, on a 1 mm in-plane grid.

Channels: the post-contrast image relative to normal marrow, then the peak, inflow and outflow
maps, then the mask of the lesion classified (its shape and margins, what the paper's readers look
at). Other segmented components are left out of that channel: on images unlike the training look
they are often false, and with them in the channel the held-out AUC was lower (shifted look, the
node's lesions: single-phase 0.783 with every component, 0.821 with the lesion alone; dynamic
0.875, 0.911; the training look unchanged: 0.900 / 0.897 and 0.992). For a single-phase series
inflow and outflow are zeros (the network is told nothing it could mistake for a measurement).
Every slice of the series is kept; in-plane, a 64 x 64 mm window centred on the lesion's centroid
is resampled bilinearly (outside the image: 0).

Each channel is brought to order 1 by a fixed factor (inflow and outflow are per second: times
30 s) and clipped to [-4, 8], so that air and noise cannot produce extreme inputs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.parameter_maps import ParameterMaps

CUBE_MM = 64
CHANNELS = ("image", "peak", "inflow", "outflow", "lesion")
VERSION = 2  # 1: every segmented lesion in the mask channel; 2: the lesion classified alone
CHANNEL_SCALE = (1.0, 1.0, 30.0, 30.0, 1.0)
CLIP = (-4.0, 8.0)


def lesion_cube(image: np.ndarray, maps: ParameterMaps, marrow_level: float, centroid: tuple[float, float, float],
                pixel_mm: tuple[float, float], lesion: np.ndarray | None = None) -> np.ndarray:
    """(5, slices, 64, 64) float32; ``centroid`` in voxels (slice, row, col); ``lesion`` the mask
    of the lesion classified, the last channel (slices, rows, cols), or None (channel left empty)."""
    nz = image.shape[0]
    offsets = np.arange(CUBE_MM, dtype=np.float32) - (CUBE_MM - 1) / 2  # mm around the centre
    rows = centroid[1] + offsets / pixel_mm[0]
    cols = centroid[2] + offsets / pixel_mm[1]
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    volumes = [image / max(marrow_level, 1e-6), maps.peak, maps.inflow, maps.outflow,
               None if lesion is None else lesion.astype(np.float32)]
    cube = np.zeros((len(CHANNELS), nz, CUBE_MM, CUBE_MM), dtype=np.float32)
    for c, vol in enumerate(volumes):
        if vol is None:
            continue
        for k in range(nz):
            cube[c, k] = ndimage.map_coordinates(vol[k].astype(np.float32, copy=False), [rr, cc], order=1, cval=0.0)
        cube[c] *= CHANNEL_SCALE[c]
    return np.clip(cube, *CLIP, out=cube)


def classifier_cube(image: np.ndarray, maps: ParameterMaps, marrow_level: float, lesion_mask: np.ndarray,
                    spacing: tuple[float, float, float]) -> np.ndarray:
    """The cube around the centroid of ``lesion_mask`` (the lesion classified), that mask as the
    last channel."""
    centroid = tuple(float(v) for v in np.argwhere(lesion_mask).mean(axis=0))
    return lesion_cube(image, maps, marrow_level, centroid, (spacing[1], spacing[2]),  # type: ignore[arg-type]
                       lesion_mask)
