"""Domain-randomised studies for training (SynthSeg-style, Billot et al. 2023): a 3D label map
(``phantom.anatomy3d``) with lesions, rendered with random tissue intensities.

What is random, well beyond PHANTOM.md's table: every tissue's mean (half the studies take the
table widened x0.5-1.6, half take any value at all), its texture, the lesion pattern, the bias
field, the noise (Rician, SNR 6-50), the blur and resolution, the matrix, the field of view, the
tilt (rendered: the slices cut the 3D anatomy obliquely) and the gain. What is kept is what the
specification fixes: a lesion's peak is 1.3-3.0 x the marrow (1.7-3.0 metastasis, 1.3-2.4 primary),
metastases are 1-3 round lesions of 6-25 mm, a primary one lobulated lesion of 15-40 mm that may
break the cortex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from phantom.anatomy3d import (
    N_LABELS,
    Label,
    LabelMap,
    coordinates,
    draw_muscles_and_vessels,
    draw_surroundings,
    draw_vertebrae,
    sample_shape,
)

MATRICES = ((256, 256), (320, 320), (384, 384), (512, 512), (256, 192))
SLICES = 12
SLICE_MM = 3.0
# PHANTOM.md's table (post-contrast, fat-suppressed T1), arbitrary units
TABLE: dict[Label, tuple[float, float]] = {
    Label.AIR: (0, 15), Label.FAT: (60, 120), Label.MUSCLE: (220, 320), Label.CORTEX: (20, 50),
    Label.MARROW: (150, 260), Label.ANNULUS: (80, 160), Label.NUCLEUS: (150, 250), Label.CSF: (40, 90),
    Label.CORD: (180, 300), Label.EPIDURAL_FAT: (60, 120), Label.AORTA: (700, 1100), Label.CAVA: (300, 700),
    Label.BOWEL_WALL: (200, 450), Label.BOWEL_CONTENT: (50, 400), Label.KIDNEY: (250, 450),
    Label.LIVER: (150, 350), Label.LUNG: (5, 40),
}


@dataclass(frozen=True)
class RandomisedStudy:
    """``pixels`` (1, slices, rows, cols) uint16 as stored; ``mask`` the lesions; ``spine`` the
    vertebral bone (bodies and posterior elements, lesions inside them included); ``body`` the
    vertebral bodies (cortex and marrow, whatever a lesion paints inside them) and ``disc`` the
    intervertebral discs, the spine localiser's targets."""

    pixels: np.ndarray
    mask: np.ndarray
    spine: np.ndarray
    label: int  # 1 metastasis, 0 primary
    meta: dict[str, Any]
    body: np.ndarray
    disc: np.ndarray


def _lesion_centres(labels: np.ndarray, body: np.ndarray, c: Any, rng: np.random.Generator,  # noqa: ANN401
                    n: int) -> list[np.ndarray]:
    """Lesion centres in marrow: of a vertebral body mostly, now and then of the posterior elements."""
    marrow = labels == Label.MARROW
    idx = np.argwhere(marrow & body) if rng.random() < 0.9 else np.argwhere(marrow)
    if len(idx) == 0:
        idx = np.argwhere(body) if body.any() else np.argwhere(marrow | (labels == Label.CORTEX))
    picks = idx[rng.integers(len(idx), size=n)]
    return [np.array([c.x[tuple(p)], c.y[tuple(p)], c.z[tuple(p)]]) for p in picks]


def draw_lesions(m: LabelMap, body: np.ndarray, bone: np.ndarray, rng: np.random.Generator,
                 metastasis: bool) -> np.ndarray:
    """Paints the lesions; returns a per-voxel pattern factor (1 outside lesions)."""
    c = m.c
    pattern = np.ones(m.labels.shape, dtype=np.float32)
    if bone.sum() == 0:
        return pattern
    grown = ndimage.binary_dilation(bone, iterations=int(rng.integers(0, 3)))
    count = int(rng.integers(1, 4)) if metastasis else 1
    for centre in _lesion_centres(m.labels, body, c, rng, count):
        if metastasis:
            axes = rng.uniform(3, 12.5) * rng.uniform(0.75, 1.25, size=3)
            d = np.sqrt(((c.x - centre[0]) / axes[0]) ** 2 + ((c.y - centre[1]) / axes[1]) ** 2
                        + ((c.z - centre[2]) / axes[2]) ** 2)
            inside = (d < 1) & grown
            rim = rng.uniform(-0.6, 0.6) if rng.random() < 0.4 else 0.0
            pattern[inside] = (1 + rim * (d[inside] - 0.5)).astype(np.float32)
        else:
            d = np.full(c.x.shape, np.inf, dtype=np.float32)
            radius = rng.uniform(7.5, 20)
            for _ in range(int(rng.integers(3, 7))):
                lobe = centre + rng.normal(0, radius * 0.45, size=3)
                r = radius * rng.uniform(0.45, 0.8)
                d = np.minimum(d, np.sqrt((c.x - lobe[0]) ** 2 + (c.y - lobe[1]) ** 2 + (c.z - lobe[2]) ** 2) / r)
            breaks = rng.random() < 0.5
            inside = (d < 1) & (np.ones_like(grown) if breaks else grown)
            septa = np.abs(np.sin(d * rng.uniform(6, 14) + rng.uniform(0, np.pi)))
            pattern[inside] = (0.65 + 0.55 * septa[inside]).astype(np.float32)
        m.paint(inside, Label.LESION)
    return pattern


def _means(rng: np.random.Generator, metastasis: bool) -> np.ndarray:
    means = np.zeros(N_LABELS, dtype=np.float32)
    wild = rng.random() < 0.5
    for label in Label:
        if label is Label.LESION:
            continue
        lo, hi = TABLE[label]
        means[label] = rng.uniform(5, 1100) if wild and label not in (Label.MARROW, Label.AIR) else \
            rng.uniform(lo, hi) * rng.uniform(0.5, 1.6)
    if wild:
        means[Label.MARROW] = rng.uniform(80, 500)
    ratio = rng.uniform(1.7, 3.0) if metastasis else rng.uniform(1.3, 2.4)
    means[Label.LESION] = means[Label.MARROW] * ratio
    return means


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear in-plane resampling of (slices, rows, cols) to ``size``."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[:, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Unit-variance noise smooth over about ``sigma`` pixels: coarse noise, resampled up."""
    coarse = (max(2, int(shape[1] / max(sigma, 1.0))), max(2, int(shape[2] / max(sigma, 1.0))))
    field = _resize(rng.standard_normal((shape[0], *coarse)).astype(np.float32), (shape[1], shape[2]))
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def render(labels: np.ndarray, pattern: np.ndarray, rng: np.random.Generator, metastasis: bool,
           pixel_mm: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Label map -> stored uint16 image with random contrast, texture, blur, bias, noise and gain."""
    means = _means(rng, metastasis)
    image = means[labels] * pattern
    texture = _smooth(rng, labels.shape, sigma=rng.uniform(1.5, 5) / pixel_mm)
    strength = rng.uniform(0.0, 0.15, size=N_LABELS).astype(np.float32)
    image *= 1 + strength[labels] * texture
    blur = rng.uniform(0.0, 1.2)
    if blur > 0.2:
        image = ndimage.gaussian_filter(image, sigma=(0, blur, blur))
    factor = rng.uniform(1.0, 2.0) if rng.random() < 0.4 else 1.0
    if factor > 1.05:
        low = (int(image.shape[1] / factor), int(image.shape[2] / factor))
        image = _resize(_resize(image, low), (image.shape[1], image.shape[2]))
    bias = np.exp(rng.uniform(0.05, 0.25) * _smooth(rng, labels.shape, sigma=60 / pixel_mm))
    image = np.clip(image * bias, 0, None)
    snr = rng.uniform(6, 50)
    sigma = means[Label.MARROW] / snr
    image = np.hypot(image + rng.normal(0, sigma, image.shape), rng.normal(0, sigma, image.shape))
    gain = rng.uniform(500, 4000) / max(float(np.percentile(image, 99.9)), 1e-6)
    stored = np.clip(np.round(image * gain), 0, 65535).astype(np.uint16)
    return stored, {"snr": round(snr, 1), "blur_px": round(blur, 2), "resolution_factor": round(factor, 2)}


def generate_randomised(seed: int, *, matrix: tuple[int, int] | None = None,
                        label: int | None = None) -> RandomisedStudy:
    """One domain-randomised single-phase study; the same seed gives the same arrays."""
    rng = np.random.default_rng([seed, 1307])
    metastasis = bool(rng.integers(2)) if label is None else bool(label)
    rows, cols = matrix or MATRICES[int(rng.integers(len(MATRICES)))]
    fov = rng.uniform(200, 300)
    pixel_mm = fov / max(rows, cols)
    tilt = (rng.uniform(-15, 15), rng.uniform(-5, 5))
    shape = sample_shape(rng)
    offset = (0.0, 0.0, rng.uniform(-60, 60))
    c = coordinates((SLICES, rows, cols), (SLICE_MM, pixel_mm, pixel_mm), tilt, offset)
    m = LabelMap(c)
    draw_surroundings(m, shape, rng)
    draw_muscles_and_vessels(m, shape, rng)
    body, bone = draw_vertebrae(m, shape, rng)
    disc = np.isin(m.labels, (Label.ANNULUS, Label.NUCLEUS))
    pattern = draw_lesions(m, body, bone, rng, metastasis)
    mask = m.labels == Label.LESION
    pixels, render_meta = render(m.labels, pattern, rng, metastasis, pixel_mm)
    meta = {"seed": seed, "matrix": [rows, cols], "pixel_mm": round(pixel_mm, 3),
            "tilt_deg": [round(t, 1) for t in tilt], "thoracic": shape.thoracic,
            "lesion_voxels": int(mask.sum())} | render_meta
    return RandomisedStudy(pixels=pixels[None], mask=mask, spine=bone | mask, label=int(metastasis), meta=meta,
                           body=body, disc=disc & ~mask)
