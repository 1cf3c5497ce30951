"""Whether the node can support a coded diagnosis: plausibility checks before the SR codes one.

A wrong diagnosis coded with confidence is worse than "indeterminate". The models were trained on
phantoms; on images unlike them they can outline the cord or a vessel and classify that. So the
study-level finding is coded only when every check passes; otherwise the SR says "indeterminate"
with the coded reasons (the SEG and the measurements are still sent):

* the reported lesion lies in the vertebral body the region growing located (lesions arise from
  the body; primaries may break the cortex, hence a margin);
* its peak enhancement is in the range a lesion has (PHANTOM.md: 1.3-3.0 x marrow at peak; above
  ~3.6 x marrow it is more likely a vessel, below 1.3 it is marrow or cord);
* the U-Net and the region growing roughly agree on where the lesion is;
* the classifier's probability is outside the uncertain band;
* the radiomics model, where one is shipped for the series' kind, gives the same class.

The limits are set from the specification and the project's own phantoms, never from the external
validation studies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import ndimage


class IndeterminateReason(StrEnum):
    """Why a study's finding is indeterminate (coded in the SR as 99SPINENODE codes)."""

    LESION_OUTSIDE_VERTEBRAL_BODY = "lesion_outside_vertebral_body"
    ENHANCEMENT_IMPLAUSIBLE = "enhancement_implausible"
    SEGMENTATIONS_DISAGREE = "segmentations_disagree"
    PROBABILITY_UNCERTAIN = "probability_uncertain"
    MODELS_DISAGREE = "models_disagree"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Where each check draws its line (see the module docstring for where they come from)."""

    min_peak_enhancement: float = 1.3
    max_peak_enhancement: float = 3.6
    min_agreement_dice: float = 0.4
    uncertain_low: float = 0.3
    uncertain_high: float = 0.7
    min_inside_body: float = 0.5
    body_margin_mm: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.uncertain_low <= 0.5 <= self.uncertain_high <= 1.0:
            raise ValueError("the uncertain band must contain 0.5 and lie within [0, 1]")
        if self.min_peak_enhancement >= self.max_peak_enhancement:
            raise ValueError("min_peak_enhancement must be below max_peak_enhancement")


@dataclass(frozen=True)
class Verdict:
    """``metastasis`` is None when the finding is indeterminate; ``reasons`` then says why."""

    metastasis: bool | None
    reasons: tuple[IndeterminateReason, ...]

    @property
    def indeterminate(self) -> bool:
        return self.metastasis is None

    def summary(self) -> dict[str, object]:
        return {"finding": "indeterminate" if self.metastasis is None else
                ("metastasis" if self.metastasis else "primary"), "reasons": [str(r) for r in self.reasons]}


def inside_fraction(lesion: np.ndarray, body: np.ndarray, pixel_mm: tuple[float, float], margin_mm: float) -> float:
    """Share of the lesion's voxels inside the body mask grown in-plane by ``margin_mm``."""
    if not lesion.any():
        return 0.0
    radius = np.array([margin_mm / pixel_mm[0], margin_mm / pixel_mm[1]])
    size = np.maximum(1, np.ceil(radius)).astype(int)
    yy, xx = np.mgrid[-size[0]:size[0] + 1, -size[1]:size[1] + 1]
    disc = (yy / max(radius[0], 1e-6)) ** 2 + (xx / max(radius[1], 1e-6)) ** 2 <= 1.0
    grown = ndimage.binary_dilation(body, structure=disc[None]) if body.any() else body
    return float(np.logical_and(lesion, grown).sum() / lesion.sum())


def assess(*, inside_body: float, peak_enhancement: float, agreement_dice: float | None,
           p_classifier: float, p_radiomics: float | None, limits: Limits | None = None) -> Verdict:
    """The study-level verdict from the largest lesion's checks and the two models' probabilities."""
    lim = limits or Limits()
    reasons: list[IndeterminateReason] = []
    if inside_body < lim.min_inside_body:
        reasons.append(IndeterminateReason.LESION_OUTSIDE_VERTEBRAL_BODY)
    if not lim.min_peak_enhancement <= peak_enhancement <= lim.max_peak_enhancement:
        reasons.append(IndeterminateReason.ENHANCEMENT_IMPLAUSIBLE)
    if agreement_dice is not None and agreement_dice < lim.min_agreement_dice:
        reasons.append(IndeterminateReason.SEGMENTATIONS_DISAGREE)
    if lim.uncertain_low < p_classifier < lim.uncertain_high:
        reasons.append(IndeterminateReason.PROBABILITY_UNCERTAIN)
    metastasis = p_classifier >= 0.5
    if p_radiomics is not None and (p_radiomics >= 0.5) != metastasis:
        reasons.append(IndeterminateReason.MODELS_DISAGREE)
    return Verdict(None if reasons else metastasis, tuple(reasons))
