"""Domain-randomised studies for training (SynthSeg-style, Billot et al. 2023): a 3D label map
(``phantom.anatomy3d``) with lesions, rendered with random tissue intensities.

What is random, well beyond PHANTOM.md's table: every tissue's mean (half the studies take the
table widened x0.5-1.6, half take any value at all), its texture, the lesion pattern, the bias
field, the noise (Rician, SNR 6-50), the blur and resolution, the matrix, the field of view, the
tilt (rendered: the slices cut the 3D anatomy obliquely) and the gain. What is kept is what the
specification fixes: a lesion's peak is 1.3-3.0 x the marrow (1.7-3.0 metastasis, 1.3-2.4 primary),
metastases are 1-3 round lesions of 6-25 mm, a primary one lobulated lesion of 15-40 mm that may
break the cortex.

A dynamic study (``phases`` 3-8, phase 1 pre-contrast) draws every tissue's curve at random too
(:func:`kinetics`: pre-contrast share, uptake speed, arterial peak and decay of vessels), built
differently from the classic look's fixed curves (``phantom.enhancement``); kept from the
specification are the lesions' kinetics: a metastasis peaks within the first two post-contrast
phases and has lost 10-35 % by the last, a primary enhances progressively and peaks at the last.
One scan: the anatomy, texture, blur, resolution, bias field and gain are shared by the phases
(the gain set against the 99.9th percentile of all of them), the noise is drawn anew for each.
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

# raised when the same seed makes a different study: caches of studies are named by it
# (2: at least one lesion centred in a vertebral body, 2026-12-02)
LOOK_VERSION = 2
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
    """``pixels`` (phases, slices, rows, cols) uint16 as stored; ``mask`` the lesions; ``spine`` the
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
    """Lesion centres in marrow: of a vertebral body mostly, now and then of the posterior elements,
    but always at least one in a vertebral body (PHANTOM.md: "every study has at least one lesion
    inside or arising from the vertebral body"). The first is drawn again from the bodies only
    when none lies in one, so a study that had one there draws the same numbers as before."""
    marrow = labels == Label.MARROW
    in_body = np.argwhere(marrow & body)
    idx = in_body if rng.random() < 0.9 else np.argwhere(marrow)
    if len(idx) == 0:
        idx = np.argwhere(body) if body.any() else np.argwhere(marrow | (labels == Label.CORTEX))
    picks = idx[rng.integers(len(idx), size=n)]
    if len(in_body) and not body[tuple(picks.T)].any():
        picks[0] = in_body[rng.integers(len(in_body))]
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


def _means(rng: np.random.Generator, metastasis: bool) -> tuple[np.ndarray, bool]:
    """Each tissue's mean signal, and whether they are wild: in half the studies every tissue but
    marrow and air anywhere in 5-1100 (marrow 80-500), far outside PHANTOM.md's table (a bright
    cortex, a dark aorta: for training, SynthSeg-style); in the others the table's range widened
    x0.5-1.6. The lesion is always its class's multiple of marrow."""
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
    return means, wild


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear in-plane resampling of (slices, rows, cols) to ``size``."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[:, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Unit-variance noise smooth over about ``sigma`` pixels: coarse noise, resampled up."""
    coarse = (max(2, int(shape[1] / max(sigma, 1.0))), max(2, int(shape[2] / max(sigma, 1.0))))
    field = _resize(rng.standard_normal((shape[0], *coarse)).astype(np.float32), (shape[1], shape[2]))
    return (field - field.mean()) / max(float(field.std()), 1e-6)


# tissues without contrast uptake (their signal barely changes between phases)
NON_ENHANCING = (Label.AIR, Label.CORTEX, Label.CSF, Label.FAT, Label.EPIDURAL_FAT, Label.LUNG, Label.ANNULUS,
                 Label.NUCLEUS, Label.BOWEL_CONTENT)
VESSELS = (Label.AORTA, Label.CAVA, Label.KIDNEY)


def _lesion_curve(rng: np.random.Generator, metastasis: bool, phases: int) -> np.ndarray:
    """Enhancement of a lesion per phase: 0 before contrast, 1 at its peak. A metastasis peaks at
    the first or second post-contrast phase and has lost 10-35 % of it by the last; a primary rises
    progressively to its peak at the last phase."""
    k = np.arange(phases, dtype=np.float64)
    if not metastasis:
        return (k / (phases - 1)) ** rng.uniform(0.3, 2.5)
    peak = 1 if phases == 3 or rng.random() < 0.6 else 2
    g = np.zeros(phases)
    g[1] = 1.0 if peak == 1 else rng.uniform(0.4, 0.95)
    after = (k[peak:] - peak) / (phases - 1 - peak)  # 0 at the peak, 1 at the last phase
    g[peak:] = 1.0 - rng.uniform(0.10, 0.35) * after ** rng.uniform(0.5, 2.0)
    return g


def kinetics(rng: np.random.Generator, means: np.ndarray, metastasis: bool, phases: int) -> np.ndarray:
    """(phases, N_LABELS) mean signal per phase, phase 1 pre-contrast; ``means`` is each tissue's
    post-contrast peak, so the lesion's peak stays ``means[LESION]`` (its ratio to marrow's)."""
    k = np.arange(phases, dtype=np.float64)
    curves = np.empty((phases, N_LABELS), dtype=np.float64)
    for label in Label:
        post = float(means[label])
        if label in NON_ENHANCING:
            curves[:, label] = post * rng.uniform(0.93, 1.07, size=phases)
            continue
        pre = post * rng.uniform(0.2, 0.95)
        # vessels: arterial, peak at the first post-contrast phase then decay; the rest: uptake
        # towards a plateau, fast or slow
        g = (np.exp(-(k - 1) / rng.uniform(0.7, 6.0)) if label in VESSELS
             else 1.0 - np.exp(-k / rng.uniform(0.3, 3.0)))
        g[0] = 0.0
        curves[:, label] = pre + (post - pre) * g / g.max()
    lesion_pre = curves[0, Label.MARROW] * rng.uniform(0.8, 1.2)
    g = _lesion_curve(rng, metastasis, phases)
    curves[:, Label.LESION] = lesion_pre + (float(means[Label.LESION]) - lesion_pre) * g
    return curves.astype(np.float32)


def render(labels: np.ndarray, pattern: np.ndarray, rng: np.random.Generator, metastasis: bool,
           pixel_mm: float, *, phases: int = 1, dynamics: np.random.Generator | None = None
           ) -> tuple[np.ndarray, dict[str, Any]]:
    """Label map -> stored uint16 (phases, slices, rows, cols) image with random contrast, texture,
    blur, bias, noise and gain. A dynamic study (``phases`` > 1) draws its curves and the noise of
    phases 2.. from ``dynamics``, so that a single-phase study is the same whatever that is."""
    means, wild = _means(rng, metastasis)
    if phases > 1 and dynamics is None:
        raise ValueError("a dynamic study needs its own random generator")
    curves = means[None] if phases == 1 else kinetics(dynamics, means, metastasis, phases)  # type: ignore[arg-type]
    texture = _smooth(rng, labels.shape, sigma=rng.uniform(1.5, 5) / pixel_mm)
    strength = rng.uniform(0.0, 0.15, size=N_LABELS).astype(np.float32)
    blur = rng.uniform(0.0, 1.2)
    factor = rng.uniform(1.0, 2.0) if rng.random() < 0.4 else 1.0
    bias = np.exp(rng.uniform(0.05, 0.25) * _smooth(rng, labels.shape, sigma=60 / pixel_mm))
    snr = rng.uniform(6, 50)
    sigma = means[Label.MARROW] / snr
    rendered = []
    for phase, phase_means in enumerate(curves):
        image = phase_means[labels] * pattern
        image *= 1 + strength[labels] * texture
        if blur > 0.2:
            image = ndimage.gaussian_filter(image, sigma=(0, blur, blur))
        if factor > 1.05:
            low = (int(image.shape[1] / factor), int(image.shape[2] / factor))
            image = _resize(_resize(image, low), (image.shape[1], image.shape[2]))
        image = np.clip(image * bias, 0, None)
        noise = rng if phase == 0 else dynamics
        rendered.append(np.hypot(image + noise.normal(0, sigma, image.shape),  # type: ignore[union-attr]
                                 noise.normal(0, sigma, image.shape)))  # type: ignore[union-attr]
    stack = np.stack(rendered)
    gain = rng.uniform(500, 4000) / max(float(np.percentile(stack, 99.9)), 1e-6)
    stored = np.clip(np.round(stack * gain), 0, 65535).astype(np.uint16)
    return stored, {"snr": round(snr, 1), "blur_px": round(blur, 2), "resolution_factor": round(factor, 2),
                    "phases": phases, "contrast": "wild" if wild else "table"}


def generate_randomised(seed: int, *, matrix: tuple[int, int] | None = None,
                        label: int | None = None, phases: int = 1) -> RandomisedStudy:
    """One domain-randomised study, single-phase or dynamic (``phases`` 3-8, the first
    pre-contrast); the same seed gives the same arrays, and the same anatomy and lesions whatever
    ``phases`` is (a single-phase study is also what it was before dynamic studies existed)."""
    if phases != 1 and not 3 <= phases <= 8:
        raise ValueError(f"phases must be 1 or 3-8 (PHANTOM.md), not {phases}")
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
    dynamics = np.random.default_rng([seed, 1307, phases]) if phases > 1 else None
    pixels, render_meta = render(m.labels, pattern, rng, metastasis, pixel_mm, phases=phases, dynamics=dynamics)
    meta = {"seed": seed, "matrix": [rows, cols], "pixel_mm": round(pixel_mm, 3),
            "tilt_deg": [round(t, 1) for t in tilt], "thoracic": shape.thoracic,
            "lesion_voxels": int(mask.sum())} | render_meta
    return RandomisedStudy(pixels=pixels, mask=mask, spine=bone | mask, label=int(metastasis), meta=meta,
                           body=body, disc=disc & ~mask)
