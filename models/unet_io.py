"""What goes into the U-Net and how its output maps back: shared by training and inference.

Each slice is zero-padded to a square (keeping the aspect ratio of non-square matrices such as
256x192), then resampled bilinearly to 512x512 as the paper does. Intensities are relative to
normal marrow's level (:func:`scale_by_marrow`), the one contrast the specification fixes (a
lesion enhances 1.3-3.0 x marrow) whatever the scanner's gain or the other tissues' brightness.
The probability map comes back through the inverse: bilinear resampling to the padded square, then
the padding is cropped away.

:func:`normalise` (by the volume's 99.5th percentile) is the spine localiser's input, which comes
before marrow is known.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

NET_SIZE = 512


def segmentation_input(pixels: np.ndarray) -> np.ndarray:
    """(phases, slices, rows, cols) -> (slices, rows, cols): the post-contrast image, or for a
    dynamic series the per-voxel peak over the post-contrast phases (phase 1 is pre-contrast)."""
    if pixels.ndim != 4:
        raise ValueError(f"expected (phases, slices, rows, cols), got shape {pixels.shape}")
    return pixels[0] if pixels.shape[0] == 1 else pixels[1:].max(axis=0)


MARROW_INPUT = 0.25  # normal marrow's value in the U-Net's input


def normalise(volume: np.ndarray) -> np.ndarray:
    """The volume over its 99.5th percentile, clipped to [0, 2] (the spine localiser's input)."""
    scale = float(np.percentile(volume, 99.5))
    return (volume.astype(np.float32) / max(scale, 1e-6)).clip(0, 2)


def scale_by_marrow(volume: np.ndarray, marrow: float) -> np.ndarray:
    """The U-Net's input: the volume with normal marrow's level (``marrow``,
    :func:`pipeline.anatomy.marrow_level`) at :data:`MARROW_INPUT`, clipped to [0, 2] (8 x marrow):
    the specification's lesions (1.3-3.0 x marrow) at 0.33-0.75 on every scanner."""
    return (volume.astype(np.float32) * (MARROW_INPUT / max(marrow, 1e-6))).clip(0, 2)


def _pad_square(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    rows, cols = t.shape[-2:]
    side = max(rows, cols)
    pad_r, pad_c = side - rows, side - cols
    top, left = pad_r // 2, pad_c // 2
    return F.pad(t, (left, pad_c - left, top, pad_r - top)), (top, left)


def to_network(volume: np.ndarray, size: int = NET_SIZE) -> torch.Tensor:
    """(slices, rows, cols) normalised volume -> (slices, 1, size, size) float32 tensor."""
    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[:, None]
    t, _ = _pad_square(t)
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)


def network_window(shape: tuple[int, int], box: tuple[int, int, int, int], *, margin: int = 0,
                   size: int = NET_SIZE, multiple: int = 16) -> tuple[slice, slice]:
    """The rows and columns of the ``size`` x ``size`` network grid that cover ``box`` (row0, row1,
    col0, col1, end exclusive, on a (rows, cols) image) plus ``margin`` grid pixels, each side a
    multiple of ``multiple`` (the U-Net halves its input four times) and kept inside the grid."""
    rows, cols = shape
    side = max(rows, cols)
    scale = size / side
    out = []
    for lo, hi, offset in ((box[0], box[1], (side - rows) // 2), (box[2], box[3], (side - cols) // 2)):
        start = math.floor((lo + offset) * scale) - margin
        stop = math.ceil((hi + offset) * scale) + margin
        length = min(size, math.ceil((stop - start) / multiple) * multiple)
        start = min(max(start - (length - (stop - start)) // 2, 0), size - length)
        out.append(slice(start, start + length))
    return out[0], out[1]


def mask_to_network(mask: np.ndarray, size: int = NET_SIZE) -> torch.Tensor:
    """Ground truth resampled like the image (bilinear, then 0.5), (slices, size, size) uint8."""
    return (to_network(mask.astype(np.float32), size)[:, 0] >= 0.5).to(torch.uint8)


def from_network(prob: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """(slices, size, size) probabilities -> (slices, rows, cols) on the original matrix."""
    rows, cols = shape
    side = max(rows, cols)
    t = F.interpolate(prob[:, None].float(), size=(side, side), mode="bilinear", align_corners=False)[:, 0]
    top, left = (side - rows) // 2, (side - cols) // 2
    return t[:, top:top + rows, left:left + cols].numpy()
