"""What goes into the spine localiser and how its output maps back: shared by training and inference.

Unlike the U-Net's input (each slice resized to 512 whatever its pixel size), the localiser sees
every image at one physical scale: slices are resampled to ``GRID_MM`` pixels (antialiased when
shrinking) and placed centred on a ``GRID_SIZE`` square (320 mm: padded with zeros, or cropped
when the field of view is larger), so a vertebral body is about 13-21 pixels wide whatever the
matrix and the field of view. The output goes back through the inverse: the square is cut to the
resampled image's extent and resized to the original matrix.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

GRID_MM = 2.5
GRID_SIZE = 128
# the localiser network: models.unet.AttentionResUNet(classes=CLASSES, base=BASE); class indices
CLASSES, BASE = 3, 8
BODY, DISC = 1, 2


def _grid_shape(shape: tuple[int, int], pixel_mm: tuple[float, float]) -> tuple[int, int]:
    return (max(1, round(shape[0] * pixel_mm[0] / GRID_MM)), max(1, round(shape[1] * pixel_mm[1] / GRID_MM)))


def _offsets(h: int, w: int) -> tuple[int, int]:
    """Where the resampled image's top-left corner lies on the square (negative: cropped)."""
    return (GRID_SIZE - h) // 2, (GRID_SIZE - w) // 2


def _place(t: torch.Tensor, top: int, left: int, size: tuple[int, int] = (GRID_SIZE, GRID_SIZE)) -> torch.Tensor:
    """``t`` (N, C, h, w) put on a zero (N, C, *size) canvas with its corner at (top, left)."""
    out = t.new_zeros((*t.shape[:2], *size))
    h, w = t.shape[-2:]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, size[0]), min(left + w, size[1])
    out[..., y0:y1, x0:x1] = t[..., y0 - top:y1 - top, x0 - left:x1 - left]
    return out


def to_grid(volume: np.ndarray, pixel_mm: tuple[float, float]) -> torch.Tensor:
    """(slices, rows, cols) normalised image -> (slices, 1, GRID_SIZE, GRID_SIZE) float32."""
    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[:, None]
    h, w = _grid_shape(volume.shape[1:], pixel_mm)
    shrink = h < volume.shape[1] or w < volume.shape[2]
    t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
    return _place(t, *_offsets(h, w))


def labels_to_grid(labels: np.ndarray, pixel_mm: tuple[float, float]) -> torch.Tensor:
    """(slices, rows, cols) class indices -> (slices, GRID_SIZE, GRID_SIZE) uint8, nearest class."""
    t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))[:, None]
    t = F.interpolate(t, size=_grid_shape(labels.shape[1:], pixel_mm), mode="nearest")
    return _place(t, *_offsets(*t.shape[-2:]))[:, 0].to(torch.uint8)


def from_grid(prob: torch.Tensor, shape: tuple[int, int], pixel_mm: tuple[float, float]) -> np.ndarray:
    """(slices, C, GRID_SIZE, GRID_SIZE) probabilities -> (slices, C, rows, cols) on the original
    matrix; what lay outside the square comes back as 0."""
    h, w = _grid_shape(shape, pixel_mm)
    top, left = _offsets(h, w)
    back = _place(prob.float(), -top, -left, (h, w))  # the square moved back onto the resampled image
    return F.interpolate(back, size=shape, mode="bilinear", align_corners=False).numpy()
