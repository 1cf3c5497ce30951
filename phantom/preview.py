"""PNG montage of a study's slices with the ground-truth outline, for people to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage


def outline(mask: np.ndarray) -> np.ndarray:
    """The one-pixel boundary of a 2D mask."""
    return mask & ~ndimage.binary_erosion(mask)


def window(image: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (image.astype(np.float32) - low) / max(high - low, 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def montage(volume: np.ndarray, mask: np.ndarray, columns: int = 4) -> Image.Image:
    """Slices of ``volume`` (slices, rows, cols) in a grid, mask outlines in red."""
    nz, rows, cols = volume.shape
    low, high = np.percentile(volume, [1, 99.7])
    grid_rows = -(-nz // columns)
    canvas = np.zeros((grid_rows * rows, columns * cols, 3), dtype=np.uint8)
    for k in range(nz):
        grey = window(volume[k], float(low), float(high))
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        rgb[outline(mask[k])] = (255, 40, 40)
        r, c = divmod(k, columns)
        canvas[r * rows:(r + 1) * rows, c * cols:(c + 1) * cols] = rgb
    return Image.fromarray(canvas)


def write_preview(volume: np.ndarray, mask: np.ndarray, path: Path) -> Path:
    montage(volume, mask).save(path)
    return path
