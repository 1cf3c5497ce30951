"""Signal per tissue and per temporal phase: the contrast dynamics of the specification.

Single-phase studies are post-contrast only (the table's values, lesions at their peak).
Dynamic studies start with a pre-contrast phase; metastases wash in fast (peak within the first
two post-contrast phases) and wash out by 10-35 % by the last phase; primary tumours enhance
slowly and progressively (peak at the last phase, no wash-out).
"""

from __future__ import annotations

import numpy as np

from phantom.params import METASTASIS, StudyParams


def _plateau(phases: int) -> np.ndarray:
    """Background tissue: no contrast at phase 1, then near-flat enhancement."""
    g = np.ones(phases, dtype=np.float32)
    if phases > 1:
        g[0] = 0.0
        g[1:] = 0.85 + 0.15 * np.arange(phases - 1) / max(phases - 2, 1)
    return g


def _arterial(phases: int) -> np.ndarray:
    g = np.ones(phases, dtype=np.float32)
    if phases > 1:
        g[0] = 0.0
        g[1:] = 1.0 - 0.45 * np.arange(phases - 1) / max(phases - 2, 1)
    return g


def tissue_curves(p: StudyParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per tissue, its mean signal at each phase (length ``p.phases``)."""
    m = p.tissue_means
    n = p.phases
    flat = np.ones(n, dtype=np.float32)

    def enhancing(post: float, pre_frac: tuple[float, float], shape: np.ndarray) -> np.ndarray:
        pre = post * rng.uniform(*pre_frac)
        return (pre + (post - pre) * shape).astype(np.float32)

    return {
        "air": 0.0 * flat,
        "cortex": m["cortex"] * flat,
        "csf": m["csf"] * flat,
        "fat": m["fat"] * flat,
        "disc": m["disc"] * flat,
        "marrow": enhancing(m["marrow"], (0.7, 0.85), _plateau(n)),
        "muscle": enhancing(m["muscle"], (0.75, 0.9), _plateau(n)),
        "cord": enhancing(m["cord"], (0.85, 0.95), _plateau(n)),
        "viscera": enhancing(m["viscera"], (0.6, 0.8), _plateau(n)),
        "kidney": enhancing(rng.uniform(450, 800), (0.35, 0.5), _arterial(n) * 0.5 + 0.5 * _plateau(n)),
        "aorta": (rng.uniform(150, 250) + (m["aorta"] - 200) * _arterial(n)).astype(np.float32),
        "ivc": enhancing(rng.uniform(300, 450), (0.4, 0.6), _plateau(n)),
    }


def lesion_curve(
    p: StudyParams, peak_factor: float, curves: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """A lesion's mean signal per phase; its peak is ``peak_factor`` x post-contrast marrow."""
    n = p.phases
    peak = peak_factor * p.tissue_means["marrow"]
    if n == 1:
        return np.array([peak], dtype=np.float32)
    pre = curves["marrow"][0] * rng.uniform(0.8, 1.0)
    k = np.arange(1, n + 1, dtype=np.float32)
    if p.label == METASTASIS:
        tp = p.peak_phase
        g = np.where(k <= tp, (k - 1) / (tp - 1), 1.0 - p.washout * (k - tp) / max(n - tp, 1))
    else:
        g = ((k - 1) / (n - 1)) ** p.progression_gamma
    return (pre + (peak - pre) * g).astype(np.float32)
