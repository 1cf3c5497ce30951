"""Label maps of the lumbar/thoracic spine and what surrounds it, drawn in 3D physical space.

The second phantom method (beside the painted look of ``phantom.generator``): anatomy is a set of
implicit shapes of the patient coordinates (x left-right, y anterior-posterior, z along the spine),
evaluated at the sample points of each (possibly tilted) slice, so a tilted slice cuts the 3D
anatomy obliquely and a 36 mm stack crosses discs, endplates and more than one vertebra. Every
structure PHANTOM.md names gets its own label: cortical bone and marrow of the body and of the
posterior elements (pedicles, laminae, spinous and transverse processes), disc annulus and nucleus,
CSF, cord or cauda, epidural fat, muscles, aorta and cava, bowel wall and content, kidneys, liver
or spleen, lung bases, subcutaneous fat; and lesions that may touch or break the cortex.

``phantom.randomised`` turns a label map into an image with random tissue intensities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

FloatArray = np.ndarray


class Label(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    CORTEX = 3
    MARROW = 4
    ANNULUS = 5
    NUCLEUS = 6
    CSF = 7
    CORD = 8
    EPIDURAL_FAT = 9
    AORTA = 10
    CAVA = 11
    BOWEL_WALL = 12
    BOWEL_CONTENT = 13
    KIDNEY = 14
    LIVER = 15
    LUNG = 16
    LESION = 17


N_LABELS = len(Label)
BONE = (Label.CORTEX, Label.MARROW)


@dataclass(frozen=True)
class Coordinates:
    """Patient coordinates (mm) of every sample point: arrays of shape (slices, rows, cols)."""

    x: FloatArray
    y: FloatArray
    z: FloatArray


@dataclass
class SpineShape:
    """The random parameters of one spine and its surroundings (mm)."""

    body_w: float
    body_d: float
    cortex: float
    level_period: float
    disc_h: float
    level_phase: float
    curve_y: float
    curve_period: float
    canal_w: float
    canal_d: float
    thoracic: bool
    cauda: bool
    centre: tuple[float, float]
    outline: tuple[float, float]
    rng_seed: int
    extra: dict = field(default_factory=dict)


def sample_shape(rng: np.random.Generator) -> SpineShape:
    body_h = rng.uniform(22, 32)
    disc_h = rng.uniform(5, 11)
    thoracic = rng.random() < 0.3
    return SpineShape(
        body_w=rng.uniform(33, 52), body_d=rng.uniform(24, 40), cortex=rng.uniform(0.8, 2.2),
        level_period=body_h + disc_h, disc_h=disc_h, level_phase=rng.uniform(0, body_h + disc_h),
        curve_y=rng.uniform(-12, 12), curve_period=rng.uniform(150, 400),
        canal_w=rng.uniform(13, 21), canal_d=rng.uniform(11, 18), thoracic=thoracic,
        cauda=(not thoracic) and rng.random() < 0.5,
        centre=(rng.uniform(-22, 22), rng.uniform(-25, 20)),
        outline=(rng.uniform(130, 190), rng.uniform(95, 140)), rng_seed=int(rng.integers(2**31)),
    )


def _ellipse(u: FloatArray, v: FloatArray, a: float | FloatArray, b: float | FloatArray) -> FloatArray:
    """Normalised radius: < 1 inside the ellipse with semi-axes ``a`` (u) and ``b`` (v)."""
    return np.sqrt((u / a) ** 2 + (v / b) ** 2)


class LabelMap:
    """Paints labels in order; later structures overwrite earlier ones."""

    def __init__(self, c: Coordinates) -> None:
        self.c = c
        self.labels = np.full(c.x.shape, Label.AIR, dtype=np.uint8)

    def paint(self, where: FloatArray, label: Label) -> None:
        self.labels[where] = label


def spine_centre(s: SpineShape, z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The body's centre (x, y) at height z: a gentle lordosis/kyphosis."""
    cy = s.centre[1] + s.curve_y * np.sin(2 * np.pi * z / s.curve_period)
    cx = s.centre[0] + 0.15 * s.curve_y * np.cos(2 * np.pi * z / s.curve_period)
    return cx, cy


def level_position(s: SpineShape, z: FloatArray) -> FloatArray:
    """Position within a vertebral level: 0..disc_h is the disc, the rest the body."""
    return np.mod(z + s.level_phase, s.level_period)


def draw_surroundings(m: LabelMap, s: SpineShape, rng: np.random.Generator) -> None:
    c = m.c
    ox, oy = s.outline
    cy0 = s.centre[1] + rng.uniform(-30, -10)
    m.paint(_ellipse(c.x, c.y - cy0, ox, oy) < 1, Label.FAT)
    m.paint(_ellipse(c.x, c.y - cy0, ox - rng.uniform(8, 25), oy - rng.uniform(8, 25)) < 1, Label.MUSCLE)
    inner = _ellipse(c.x, c.y - cy0 + 15, ox - 30, oy - 35) < 1
    m.paint(inner & (c.y < s.centre[1] + 5), Label.FAT)  # the abdominal or thoracic cavity
    if s.thoracic:
        for side in (-1, 1):
            lung = _ellipse(c.x - side * rng.uniform(55, 85), c.y - s.centre[1] + rng.uniform(10, 40),
                            rng.uniform(35, 60), rng.uniform(40, 70))
            m.paint((lung < 1) & inner, Label.LUNG)
    else:
        for side in (-1, 1):
            kidney = _ellipse(c.x - side * rng.uniform(60, 85), c.y - s.centre[1] + rng.uniform(-5, 25),
                              rng.uniform(22, 32), rng.uniform(28, 40))
            m.paint(kidney < 1, Label.KIDNEY)
    organ_side = rng.choice([-1, 1])
    organ = _ellipse(c.x - organ_side * rng.uniform(70, 110), c.y - s.centre[1] + rng.uniform(60, 100),
                     rng.uniform(40, 80), rng.uniform(40, 70))
    m.paint((organ < 1) & inner, Label.LIVER)
    _draw_bowel(m, s, rng, inner)


def _draw_bowel(m: LabelMap, s: SpineShape, rng: np.random.Generator, inner: FloatArray) -> None:
    c = m.c
    for _ in range(int(rng.integers(3, 12))):
        bx = rng.uniform(-90, 90)
        by = s.centre[1] - rng.uniform(40, 120)
        bz = rng.uniform(-30, 30)
        r = rng.uniform(8, 22)
        d = np.sqrt((c.x - bx) ** 2 + (c.y - by) ** 2 + ((c.z - bz) / rng.uniform(1, 4)) ** 2) / r
        m.paint((d < 1) & inner, Label.BOWEL_WALL)
        m.paint((d < rng.uniform(0.55, 0.85)) & inner, Label.BOWEL_CONTENT)


def draw_muscles_and_vessels(m: LabelMap, s: SpineShape, rng: np.random.Generator) -> None:
    c = m.c
    cx, cy = spine_centre(s, c.z)
    for side in (-1, 1):
        erector = _ellipse(c.x - cx - side * rng.uniform(25, 40), c.y - cy + s.body_d / 2 + rng.uniform(30, 45),
                           rng.uniform(16, 28), rng.uniform(18, 30))
        m.paint(erector < 1, Label.MUSCLE)
        if not s.thoracic:
            psoas = _ellipse(c.x - cx - side * rng.uniform(25, 38), c.y - cy + rng.uniform(-10, 5),
                             rng.uniform(10, 22), rng.uniform(12, 22))
            m.paint(psoas < 1, Label.MUSCLE)
    aorta_r = rng.uniform(9, 15)
    ax, ay = cx - rng.uniform(5, 22), cy - s.body_d / 2 - aorta_r - rng.uniform(1, 8)
    m.paint(np.hypot(c.x - ax, c.y - ay) < aorta_r, Label.AORTA)
    if not s.thoracic:
        cava = _ellipse(c.x - cx - rng.uniform(15, 35), c.y - cy + s.body_d / 2 + rng.uniform(8, 18),
                        rng.uniform(8, 14), rng.uniform(5, 10))
        m.paint(cava < 1, Label.CAVA)


def draw_vertebrae(m: LabelMap, s: SpineShape, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Bodies, discs, posterior elements and canal; returns the masks of the bodies and of all
    vertebral bone."""
    c = m.c
    cx, cy = spine_centre(s, c.z)
    u, v = c.x - cx, c.y - cy  # v > 0: posterior
    pos = level_position(s, c.z)
    in_disc = pos < s.disc_h
    dist_to_disc = np.minimum(pos - s.disc_h, s.level_period - pos)  # within the body: to its endplates
    waist = 1.0 - 0.08 * np.clip(dist_to_disc / 10.0, 0, 1)  # bodies are waisted, wider at the endplates
    kidney = v + 0.25 * s.body_d * np.exp(-(u / (0.3 * s.body_w)) ** 2) * (v > 0)  # posterior concavity
    r_body = _ellipse(u, kidney, s.body_w / 2 * waist, s.body_d / 2 * waist)
    body = (r_body < 1) & ~in_disc
    endplate = body & (dist_to_disc < s.cortex + 0.6)
    m.paint(body, Label.CORTEX)
    shell = s.cortex / (0.5 * min(s.body_w, s.body_d))
    m.paint(body & (r_body < 1 - shell) & ~endplate, Label.MARROW)
    r_disc = _ellipse(u, kidney, s.body_w / 2 * 1.03, s.body_d / 2 * 1.03)
    m.paint(in_disc & (r_disc < 1), Label.ANNULUS)
    m.paint(in_disc & (r_disc < rng.uniform(0.45, 0.7)), Label.NUCLEUS)
    posterior = _draw_posterior(m, s, rng, u, v, pos, in_disc)
    _draw_canal(m, s, rng, u, v)
    return body, body | posterior


def _draw_posterior(m: LabelMap, s: SpineShape, rng: np.random.Generator, u: FloatArray, v: FloatArray,
                    pos: FloatArray, in_disc: FloatArray) -> FloatArray:
    """Pedicles and laminae (a ring round the canal), spinous and transverse processes, in the
    upper part of each vertebra; cortex outside, marrow inside."""
    canal_cy = s.body_d / 2 + s.canal_d / 2 + 1.5
    height = (pos > s.disc_h + rng.uniform(0, 4)) & (pos < s.level_period - rng.uniform(4, 10)) & ~in_disc
    thick = rng.uniform(5, 8)
    ring = _ellipse(u, v - canal_cy, s.canal_w / 2 + thick, s.canal_d / 2 + thick)
    canal = _ellipse(u, v - canal_cy, s.canal_w / 2, s.canal_d / 2)
    ring_bone = (ring < 1) & (canal >= 1) & (v > s.body_d / 2 - 4)
    sp_half, sp_len = rng.uniform(3, 5.5), rng.uniform(22, 38)
    spinous = (np.abs(u) < sp_half) & (v > canal_cy) & (v < canal_cy + s.canal_d / 2 + sp_len)
    tp_half, tp_reach = rng.uniform(3, 5), s.canal_w / 2 + thick + rng.uniform(8, 20)
    transverse = (np.abs(v - canal_cy + s.canal_d / 4) < tp_half) & (np.abs(u) < tp_reach) & (canal >= 1)
    bone = height & (ring_bone | spinous | transverse)
    m.paint(bone, Label.CORTEX)
    c = s.cortex
    core = height & ((ring < 1 - c / (s.canal_w / 2 + thick)) & (canal >= 1 + 2 * c / s.canal_w) & ring_bone
                     | spinous & (np.abs(u) < sp_half - c)
                     | transverse & (np.abs(v - canal_cy + s.canal_d / 4) < tp_half - c) & (np.abs(u) < tp_reach - c))
    m.paint(core, Label.MARROW)
    return bone


def _draw_canal(m: LabelMap, s: SpineShape, rng: np.random.Generator, u: FloatArray, v: FloatArray) -> None:
    canal_cy = s.body_d / 2 + s.canal_d / 2 + 1.5
    canal = _ellipse(u, v - canal_cy, s.canal_w / 2, s.canal_d / 2)
    m.paint(canal < 1, Label.EPIDURAL_FAT)
    m.paint(canal < rng.uniform(0.7, 0.9), Label.CSF)
    if s.cauda:
        for _ in range(int(rng.integers(4, 12))):
            du, dv = rng.uniform(-0.5, 0.5) * s.canal_w, rng.uniform(-0.3, 0.4) * s.canal_d
            m.paint(np.hypot(u - du, v - canal_cy - dv) < rng.uniform(0.8, 1.8), Label.CORD)
    else:
        m.paint(_ellipse(u, v - canal_cy, rng.uniform(3.5, 5.5), rng.uniform(3, 4.5)) < 1, Label.CORD)


def coordinates(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                tilt_deg: tuple[float, float], offset: tuple[float, float, float]) -> Coordinates:
    """Sample points of ``shape`` (slices, rows, cols) slices, tilted about x then y."""
    nz, nr, nc = shape
    dz, dr, dc = spacing
    k, i, j = np.meshgrid((np.arange(nz) - (nz - 1) / 2) * dz, (np.arange(nr) - (nr - 1) / 2) * dr,
                          (np.arange(nc) - (nc - 1) / 2) * dc, indexing="ij")
    ax, ay = np.radians(tilt_deg)
    # row direction = +y (anterior to posterior), column direction = +x, slice normal = +z, then tilted
    y1 = i * np.cos(ax) - k * np.sin(ax)
    z1 = i * np.sin(ax) + k * np.cos(ax)
    x2 = j * np.cos(ay) + z1 * np.sin(ay)
    z2 = -j * np.sin(ay) + z1 * np.cos(ay)
    return Coordinates((x2 + offset[0]).astype(np.float32), (y1 + offset[1]).astype(np.float32),
                       (z2 + offset[2]).astype(np.float32))
