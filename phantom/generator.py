"""Builds one phantom study in memory: the stored pixel values of every phase and the mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phantom import enhancement
from phantom.params import SLICE_THICKNESS_MM, SLICES_PER_PHASE, StudyParams, sample_params
from phantom.shapes import (
    Box,
    Canvas,
    FloatArray,
    blob_distance,
    ellipse,
    membership,
    smooth_field,
)
from pipeline.volume import Volume


@dataclass(frozen=True)
class PhantomStudy:
    """A generated study: ``pixels`` (phases, slices, rows, columns) uint16 as stored, ``mask``
    (slices, rows, columns) bool, the union of lesion voxels."""

    params: StudyParams
    pixels: np.ndarray
    mask: np.ndarray

    @property
    def label(self) -> int:
        return self.params.label

    def volume(self) -> Volume:
        """The study as the node would load it (axial slices 3 mm apart, phase times)."""
        p = self.params
        nz = self.pixels.shape[1]
        interval = float(p.extra.get("phase_interval_s", 12.0))
        return Volume(pixels=self.pixels.astype(np.float32),
                      positions=np.array([[0.0, 0.0, SLICE_THICKNESS_MM * k] for k in range(nz)]),
                      orientation=(1, 0, 0, 0, 1, 0),
                      spacing=(SLICE_THICKNESS_MM, p.pixel_spacing_mm, p.pixel_spacing_mm),
                      sop_instance_uids=tuple(tuple(str(k) for k in range(nz)) for _ in range(p.phases)),
                      study_uid="phantom", series_uid=str(p.seed),
                      phase_times_s=tuple(interval * k for k in range(p.phases)))


class _Painter:
    """Paints tissues over every phase image: ``img = img * (1 - m) + value * m``.

    A tissue's value may differ per phase (contrast dynamics) and may carry a texture field.
    """

    def __init__(self, cv: Canvas, phases: int) -> None:
        self.cv = cv
        self.images = np.zeros((phases, *cv.shape), dtype=np.float32)

    def paint(
        self, shape: tuple[Box, FloatArray] | None, values: np.ndarray, texture: FloatArray | None = None
    ) -> None:
        if shape is None:
            return
        box, m = shape
        for p, value in enumerate(values):
            region = self.images[p][box]
            fill = value if texture is None else value * texture[box]
            region *= 1.0 - m
            region += fill * m


def _vary(rng: np.random.Generator, z: FloatArray, amplitude: float) -> FloatArray:
    """A smooth per-slice factor around 1 (anatomy changes slowly along the spine)."""
    period = rng.uniform(40, 90)
    phase = rng.uniform(0, 2 * np.pi)
    return (1.0 + amplitude * np.sin(2 * np.pi * z / period + phase)).astype(np.float32)


def generate_study(
    seed: int,
    *,
    label: int | None = None,
    phases: int | None = None,
    matrix: tuple[int, int] | None = None,
    params: StudyParams | None = None,
) -> PhantomStudy:
    """Generate one study. The same seed and options give identical arrays."""
    if params is None:
        params = sample_params(seed, label=label, phases=phases, matrix=matrix)
    rng = np.random.default_rng([params.seed, 1])
    cv = Canvas.make(params.rows, params.columns, SLICES_PER_PHASE, params.pixel_spacing_mm,
                     SLICE_THICKNESS_MM)
    curves = enhancement.tissue_curves(params, rng)
    painter = _Painter(cv, params.phases)
    fine = smooth_field(rng, cv.shape, cell=max(2, int(round(1.5 / params.pixel_spacing_mm))))
    coarse = smooth_field(rng, cv.shape, cell=max(4, int(round(12 / params.pixel_spacing_mm))))
    marrow = _paint_anatomy(painter, params, curves, rng, fine, coarse)
    mask = _paint_lesions(painter, params, curves, rng, marrow, fine)
    pixels = _acquire(painter.images, params, rng)
    return PhantomStudy(params=params, pixels=pixels, mask=mask)


@dataclass(frozen=True)
class _Textures:
    """Multiplicative texture fields of the soft tissues and the marrow."""

    viscera: FloatArray
    muscle: FloatArray
    marrow: FloatArray

    @classmethod
    def make(cls, fine: FloatArray, coarse: FloatArray) -> _Textures:
        return cls(viscera=1.0 + 0.18 * coarse + 0.06 * fine,
                   muscle=1.0 + 0.05 * fine + 0.03 * coarse,
                   marrow=1.0 + 0.10 * fine + 0.04 * coarse)


@dataclass(frozen=True)
class _Canal:
    """The spinal canal: width and depth (mm) and its centre's y per slice."""

    width: float
    depth: float
    y: FloatArray


def _paint_anatomy(
    pt: _Painter,
    p: StudyParams,
    curves: dict[str, np.ndarray],
    rng: np.random.Generator,
    fine: FloatArray,
    coarse: FloatArray,
) -> FloatArray:
    """Body, viscera, muscles, vessels, vertebra and canal; returns the marrow membership."""
    cv = pt.cv
    z = cv.z
    oy = p.spine_offset_mm[1]
    a = 0.5 * p.body_width_mm * _vary(rng, z, 0.05)
    b = 0.5 * p.body_depth_mm * _vary(rng, z, 0.05)
    tex = _Textures.make(fine, coarse)
    lumbar = _paint_torso(pt, p, curves, rng, tex, coarse)
    canal_w = p.canal_width_mm
    canal_d = canal_w * rng.uniform(0.65, 0.85)
    canal = _Canal(width=canal_w, depth=canal_d, y=oy + b + canal_d / 2 + 1.0)
    _paint_muscles(pt, p, curves, rng, a, canal, lumbar, tex.muscle)
    _paint_vessels(pt, p, curves, rng, b, fine)
    _paint_posterior_elements(pt, p, curves, rng, canal, tex.marrow)
    body_marrow = _paint_vertebral_body(pt, p, curves, a, b, tex.marrow)
    _paint_canal(pt, p, curves, rng, canal, tex.muscle)

    marrow = np.zeros(cv.shape, dtype=np.float32)
    if body_marrow is not None:
        marrow[body_marrow[0]] = body_marrow[1]
    return marrow


def _paint_torso(
    pt: _Painter,
    p: StudyParams,
    curves: dict[str, np.ndarray],
    rng: np.random.Generator,
    tex: _Textures,
    coarse: FloatArray,
) -> bool:
    """Subcutaneous fat (suppressed, so dark), the abdominal/thoracic contents, then kidneys or
    lungs; returns whether the level is lumbar (kidneys)."""
    cv = pt.cv
    ox, oy = p.spine_offset_mm
    tx, ty = ox * 0.3 + rng.uniform(-10, 10), oy - rng.uniform(30, 45)
    ta, tb = rng.uniform(150, 180), rng.uniform(105, 130)
    fat_mm = rng.uniform(8, 22)
    pt.paint(ellipse(cv, tx, ty, ta, tb), curves["fat"])
    pt.paint(ellipse(cv, tx, ty - 3, ta - fat_mm, tb - fat_mm), curves["viscera"], tex.viscera)
    lumbar = rng.random() < 0.6
    if lumbar:
        _paint_kidneys(pt, p, curves, rng, tex.muscle)
    else:
        _paint_lungs(pt, p, curves, rng, coarse)
    return lumbar


def _paint_kidneys(
    pt: _Painter, p: StudyParams, curves: dict[str, np.ndarray], rng: np.random.Generator,
    muscle_tex: FloatArray,
) -> None:
    """Kidneys: bright enhancing cortex around a darker sinus."""
    cv = pt.cv
    ox, oy = p.spine_offset_mm
    for side in (-1, 1):
        kx, ky = ox + side * rng.uniform(55, 70), oy + rng.uniform(-5, 10)
        ka, kb = rng.uniform(22, 28) * _vary(rng, cv.z, 0.1), rng.uniform(28, 36)
        pt.paint(ellipse(cv, kx, ky, ka, kb, side * 0.5), curves["kidney"], muscle_tex)
        pt.paint(ellipse(cv, kx - side * 6, ky, ka * 0.45, kb * 0.5, side * 0.5), curves["fat"])


def _paint_lungs(
    pt: _Painter, p: StudyParams, curves: dict[str, np.ndarray], rng: np.random.Generator,
    coarse: FloatArray,
) -> None:
    """Lungs: dark air spaces on both sides of the mediastinum."""
    cv = pt.cv
    ox, oy = p.spine_offset_mm
    for side in (-1, 1):
        lx, ly = ox + side * rng.uniform(70, 85), oy - rng.uniform(20, 35)
        pt.paint(ellipse(cv, lx, ly, rng.uniform(45, 60), rng.uniform(60, 75), side * 0.2),
                 curves["air"] + 8.0, 1.0 + 0.3 * coarse)


def _paint_muscles(
    pt: _Painter,
    p: StudyParams,
    curves: dict[str, np.ndarray],
    rng: np.random.Generator,
    a: FloatArray,
    canal: _Canal,
    lumbar: bool,
    muscle_tex: FloatArray,
) -> None:
    """Intermuscular fat plane then muscles: psoas anterolateral, erector spinae posterior."""
    cv = pt.cv
    ox, oy = p.spine_offset_mm
    ps = p.psoas_scale * (1.2 if lumbar else 0.6)
    for side in (-1, 1):
        ex, ey = ox + side * rng.uniform(20, 26), canal.y + rng.uniform(14, 20)
        ea, eb = rng.uniform(17, 22), rng.uniform(20, 26)
        pt.paint(ellipse(cv, ex, ey, ea + 2.5, eb + 2.5, side * 0.25), curves["fat"])
        pt.paint(ellipse(cv, ex, ey, ea, eb, side * 0.25), curves["muscle"], muscle_tex)
        px_, py_ = ox + side * (a + 6 + 8 * ps), oy + rng.uniform(-4, 4)
        pt.paint(ellipse(cv, px_, py_, 6 + 8 * ps, 7 + 9 * ps, side * 0.4), curves["muscle"],
                 muscle_tex)


def _paint_vessels(
    pt: _Painter, p: StudyParams, curves: dict[str, np.ndarray], rng: np.random.Generator,
    b: FloatArray, fine: FloatArray,
) -> None:
    """Great vessels: aorta anterior-left (bright after contrast), IVC anterior-right."""
    cv = pt.cv
    ox, oy = p.spine_offset_mm
    r_ao = rng.uniform(9, 13)
    pt.paint(ellipse(cv, ox + rng.uniform(8, 18), oy - b - r_ao - rng.uniform(1, 4), r_ao, r_ao),
             curves["aorta"], 1.0 + 0.03 * fine)
    r_ivc = rng.uniform(8, 12)
    pt.paint(ellipse(cv, ox - rng.uniform(18, 26), oy - b - r_ivc * 0.7 - rng.uniform(1, 5),
                     r_ivc * 1.2, r_ivc * 0.8), curves["ivc"], 1.0 + 0.03 * fine)


def _paint_posterior_elements(
    pt: _Painter, p: StudyParams, curves: dict[str, np.ndarray], rng: np.random.Generator,
    canal: _Canal, marrow_tex: FloatArray,
) -> None:
    """Transverse processes, spinous process and the ring around the canal: cortex, then marrow."""
    cv = pt.cv
    ox = p.spine_offset_mm[0]
    t = p.cortex_mm
    canal_w, canal_d, canal_y = canal.width, canal.depth, canal.y
    ring = rng.uniform(4.5, 7.0)
    sp_y = canal_y + canal_d / 2 + rng.uniform(12, 18)
    sp_a, sp_b = rng.uniform(3, 4.5), rng.uniform(12, 18)
    tp_x, tp_a, tp_b = canal_w / 2 + rng.uniform(10, 16), rng.uniform(9, 14), rng.uniform(3.5, 5)
    bones = [
        (ox, canal_y, canal_w / 2 + ring, canal_d / 2 + ring, 0.0),
        (ox, sp_y, sp_a, sp_b, 0.0),
        (ox - tp_x, canal_y - 2, tp_a, tp_b, -0.15),
        (ox + tp_x, canal_y - 2, tp_a, tp_b, 0.15),
    ]
    for bx, by, ba, bb, ang in bones:
        pt.paint(ellipse(cv, bx, by, ba, bb, ang), curves["cortex"])
    for bx, by, ba, bb, ang in bones:
        pt.paint(ellipse(cv, bx, by, ba - t, bb - t, ang), curves["marrow"], marrow_tex)


def _paint_vertebral_body(
    pt: _Painter, p: StudyParams, curves: dict[str, np.ndarray], a: FloatArray, b: FloatArray,
    marrow_tex: FloatArray,
) -> tuple[Box, FloatArray] | None:
    """Kidney-shaped vertebral body, a cortical rim around the marrow; returns the marrow shape."""
    cv = pt.cv
    ox, oy = p.spine_offset_mm
    t = p.cortex_mm
    notch_y = oy + b * 1.05
    pt.paint(ellipse(cv, ox, oy, a, b), curves["cortex"])
    body_marrow = ellipse(cv, ox, oy, a - t, b - t)
    pt.paint(body_marrow, curves["marrow"], marrow_tex)
    pt.paint(ellipse(cv, ox, notch_y, 0.32 * a + t, 0.28 * b + t), curves["cortex"])
    return body_marrow


def _paint_canal(
    pt: _Painter, p: StudyParams, curves: dict[str, np.ndarray], rng: np.random.Generator,
    canal: _Canal, muscle_tex: FloatArray,
) -> None:
    """Canal contents: epidural fat, thecal sac (CSF) and the cord."""
    cv = pt.cv
    ox = p.spine_offset_mm[0]
    canal_w, canal_d, canal_y = canal.width, canal.depth, canal.y
    pt.paint(ellipse(cv, ox, canal_y, canal_w / 2, canal_d / 2), curves["fat"])
    pt.paint(ellipse(cv, ox, canal_y, canal_w / 2 - 1.0, canal_d / 2 - 1.0), curves["csf"])
    pt.paint(ellipse(cv, ox, canal_y - 0.5, rng.uniform(3.5, 5), rng.uniform(2.8, 3.8)),
             curves["cord"], muscle_tex)


def _lesion_spheres(les) -> list[tuple[float, float, float, float, float, float]]:  # noqa: ANN001
    cx, cy, cz = les.centre_mm
    spheres = [(cx, cy, cz, *les.radii_mm)]
    for dx, dy, dz, r in les.lobes:
        spheres.append((cx + dx, cy + dy, cz + dz, r, r, r * 0.9))
    return spheres


def _paint_lesions(
    pt: _Painter,
    p: StudyParams,
    curves: dict[str, np.ndarray],
    rng: np.random.Generator,
    marrow: FloatArray,
    fine: FloatArray,
) -> np.ndarray:
    """Lesions over the anatomy; returns the ground-truth mask (membership above one half)."""
    cv = pt.cv
    ox, oy = p.spine_offset_mm
    mask = np.zeros(cv.shape, dtype=bool)
    septa_field = smooth_field(rng, cv.shape, cell=max(3, int(round(5 / p.pixel_spacing_mm))))
    for les in p.lesions:
        spheres = [(x + ox, y + oy, z, rx, ry, rz) for x, y, z, rx, ry, rz in _lesion_spheres(les)]
        shape = blob_distance(cv, spheres, margin=4.0)
        if shape is None:
            continue
        box, dist = shape
        m = membership(dist, cv.pixel_mm)
        if les.pattern == "septal":
            if not les.breaks_cortex:  # expansile remodelling: a thin cortical shell stays intact
                pt.paint((box, membership(dist - p.cortex_mm, cv.pixel_mm)), curves["cortex"])
            depth = np.clip(-dist / 3.0, 0, 1)
            septa = np.exp(-((septa_field[box] / 0.5) ** 2))
            rim = np.exp(-(((-dist) - 1.5) / 1.8) ** 2)
            pattern = np.maximum(septa * depth, rim)
            low = rng.uniform(0.45, 0.65)
            texture = low + (1 - low) * pattern
        else:
            m = m * np.clip(marrow[box] * 1.2, 0, 1)  # well circumscribed, inside the body
            if les.pattern == "rim":
                core = rng.uniform(0.45, 0.75)
                rim = np.clip((dist + 3.0) / 2.5, 0, 1)  # bright outer 2-3 mm
                texture = core + (1 - core) * np.maximum(rim, 0)
            else:
                texture = np.ones_like(dist)
        texture = texture * (1.0 + 0.05 * fine[box])
        values = enhancement.lesion_curve(p, les.peak_factor, curves, rng)
        _fill_lesion(pt, p.phases, box, m, values, texture)
        mask[box] |= m > 0.5
    return mask


def _fill_lesion(
    pt: _Painter, phases: int, box: Box, m: FloatArray, values: np.ndarray, texture: FloatArray
) -> None:
    """Paint one lesion on every phase; enhancement above the pre-contrast value follows its texture."""
    pre = values[0]
    base = np.full(len(values), pre, dtype=np.float32) if phases > 1 else np.zeros(1)
    for ph in range(phases):
        region = pt.images[ph][box]
        fill = base[ph] + (values[ph] - base[ph]) * texture
        region *= 1.0 - m
        region += fill * m


def _acquire(images: np.ndarray, p: StudyParams, rng: np.random.Generator) -> np.ndarray:
    """Bias field, Rician noise and the scanner's gain, then uint16 as stored."""
    nph, nz, rows, cols = images.shape
    x = np.linspace(-1, 1, cols, dtype=np.float32)[None, None, :]
    y = np.linspace(-1, 1, rows, dtype=np.float32)[None, :, None]
    zz = np.linspace(-1, 1, nz, dtype=np.float32)[:, None, None]
    c = rng.uniform(-1, 1, size=6).astype(np.float32)
    poly = c[0] * x + c[1] * y + c[2] * x * y + c[3] * x * x + c[4] * y * y + c[5] * 0.3 * zz
    bias = 1.0 + 0.2 * p.bias_strength * poly / (np.abs(poly).max() + 1e-6)
    sigma = p.tissue_means["marrow"] / p.snr
    out = np.empty_like(images)
    for ph in range(nph):
        s = images[ph] * bias
        n1 = rng.standard_normal(s.shape, dtype=np.float32) * sigma
        n2 = rng.standard_normal(s.shape, dtype=np.float32) * sigma
        out[ph] = np.sqrt((s + n1) ** 2 + n2**2)
    gain = p.target_max / float(out.max())
    return np.clip(np.rint(out * gain), 0, 65535).astype(np.uint16)
