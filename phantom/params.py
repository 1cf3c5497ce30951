"""Random study parameters, drawn over the whole ranges of the phantom specification."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

METASTASIS = 1
PRIMARY = 0
LABEL_NAMES = {METASTASIS: "metastasis", PRIMARY: "primary"}

MATRICES: tuple[tuple[int, int], ...] = ((256, 256), (320, 320), (384, 384), (512, 512), (256, 192))
SLICES_PER_PHASE = 12
SLICE_THICKNESS_MM = 3.0


@dataclass(frozen=True, kw_only=True)
class LesionParams:
    """One lesion: centre (mm, image-plane x/y and slice-axis z), size and look."""

    centre_mm: tuple[float, float, float]
    diameter_mm: float
    radii_mm: tuple[float, float, float]
    peak_factor: float  # peak signal relative to normal marrow
    pattern: str  # homogeneous | rim | septal
    lobes: tuple[tuple[float, float, float, float], ...] = ()  # (dx, dy, dz, r) for primaries
    breaks_cortex: bool = False


@dataclass(frozen=True, kw_only=True)
class StudyParams:
    """Everything that makes one phantom study what it is (recorded in its JSON file)."""

    seed: int
    label: int
    phases: int
    rows: int
    columns: int
    pixel_spacing_mm: float
    tilt_deg: float
    spine_offset_mm: tuple[float, float]
    body_width_mm: float
    body_depth_mm: float
    cortex_mm: float
    canal_width_mm: float
    psoas_scale: float
    tissue_means: dict[str, float]
    snr: float
    bias_strength: float
    target_max: float
    rescale_present: bool
    lesions: tuple[LesionParams, ...]
    washout: float = 0.0  # metastasis: fractional drop from peak to last phase
    peak_phase: int = 0  # dynamic metastasis: 1-based phase of peak enhancement
    progression_gamma: float = 1.0  # primary: shape of the progressive curve
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label_name(self) -> str:
        return LABEL_NAMES[self.label]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _tissue_means(rng: np.random.Generator) -> dict[str, float]:
    """Post-contrast means per tissue, the ranges of the specification's signal table."""
    return {
        "cortex": rng.uniform(20, 50),
        "marrow": rng.uniform(150, 260),
        "muscle": rng.uniform(220, 320),
        "csf": rng.uniform(40, 90),
        "fat": rng.uniform(60, 120),
        "aorta": rng.uniform(700, 1100),
        "cord": rng.uniform(180, 260),
        "viscera": rng.uniform(160, 300),
        "disc": rng.uniform(90, 160),
    }


def _metastases(rng: np.random.Generator, body_w: float, body_d: float) -> tuple[LesionParams, ...]:
    lesions = []
    for _ in range(int(rng.integers(1, 4))):
        diameter = rng.uniform(6, 25)
        elong = rng.uniform(0.75, 1.0, size=3)  # round to oval
        radii = tuple(float(0.5 * diameter * e) for e in elong)
        # centre inside the body, far enough from the edge for most of the lesion
        cx = rng.uniform(-0.45, 0.45) * body_w / 2
        cy = rng.uniform(-0.45, 0.45) * body_d / 2
        cz = rng.uniform(-10.0, 10.0)
        lesions.append(
            LesionParams(
                centre_mm=(float(cx), float(cy), float(cz)),
                diameter_mm=float(diameter),
                radii_mm=radii,  # type: ignore[arg-type]
                peak_factor=float(rng.uniform(1.7, 3.0)),
                pattern=str(rng.choice(["homogeneous", "rim"], p=[0.6, 0.4])),
            )
        )
    return tuple(lesions)


def _primary(rng: np.random.Generator, body_w: float, body_d: float) -> tuple[LesionParams, ...]:
    diameter = rng.uniform(15, 40)
    breaks = bool(rng.random() < 0.6)
    # expansile tumours sit off-centre so that lobes reach the cortex or beyond
    angle = rng.uniform(0, 2 * np.pi)
    reach = rng.uniform(0.2, 0.55)
    cx = np.cos(angle) * reach * body_w / 2
    cy = np.sin(angle) * reach * body_d / 2
    cz = rng.uniform(-4.0, 4.0)
    main_r = 0.5 * diameter * rng.uniform(0.7, 0.85)
    lobes = []
    for _ in range(int(rng.integers(3, 7))):
        direction = rng.normal(size=3)
        direction[2] *= 0.6
        direction /= np.linalg.norm(direction)
        offset = direction * rng.uniform(0.2, 0.32) * diameter
        lobes.append((*(float(v) for v in offset), float(0.5 * diameter * rng.uniform(0.45, 0.65))))
    return (
        LesionParams(
            centre_mm=(float(cx), float(cy), float(cz)),
            diameter_mm=float(diameter),
            radii_mm=(main_r, main_r, main_r),
            peak_factor=float(rng.uniform(1.3, 2.4)),
            pattern="septal",
            lobes=tuple(lobes),  # type: ignore[arg-type]
            breaks_cortex=breaks,
        ),
    )


def sample_params(
    seed: int,
    *,
    label: int | None = None,
    phases: int | None = None,
    matrix: tuple[int, int] | None = None,
) -> StudyParams:
    """Draw one study's parameters; ``None`` means drawn at random over the whole range."""
    rng = np.random.default_rng(seed)
    if label is None:
        label = int(rng.integers(0, 2))
    if label not in LABEL_NAMES:
        raise ValueError(f"label must be one of {sorted(LABEL_NAMES)}, got {label!r}")
    if phases is None:
        phases = 1
    if not (phases == 1 or 3 <= phases <= 8):
        raise ValueError(f"phases must be 1 (single post-contrast) or 3..8 (dynamic), got {phases}")
    if matrix is None:
        matrix = MATRICES[int(rng.integers(0, len(MATRICES)))]
    rows, columns = matrix
    fov = rng.uniform(220, 280)
    body_w = rng.uniform(35, 50)
    body_d = rng.uniform(25, 38)
    lesions = _metastases(rng, body_w, body_d) if label == 1 else _primary(rng, body_w, body_d)
    return StudyParams(
        seed=seed,
        label=label,
        phases=phases,
        rows=rows,
        columns=columns,
        pixel_spacing_mm=float(fov / max(rows, columns)),
        tilt_deg=float(rng.uniform(-15, 15)),
        spine_offset_mm=(float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20))),
        body_width_mm=float(body_w),
        body_depth_mm=float(body_d),
        cortex_mm=float(rng.uniform(1, 2)),
        canal_width_mm=float(rng.uniform(14, 20)),
        psoas_scale=float(rng.uniform(0.6, 1.3)),
        tissue_means={k: float(v) for k, v in _tissue_means(rng).items()},
        snr=float(rng.uniform(12, 40)),
        bias_strength=float(rng.uniform(0.3, 1.0)),
        target_max=float(rng.uniform(500, 4000)),
        rescale_present=bool(rng.random() < 0.5),
        lesions=lesions,
        washout=float(rng.uniform(0.10, 0.35)),
        peak_phase=int(2 if phases <= 3 else rng.integers(2, 4)),
        progression_gamma=float(rng.uniform(0.6, 1.3)),
        extra={"fov_mm": float(fov), "phase_interval_s": float(rng.uniform(10, 14))},
    )
