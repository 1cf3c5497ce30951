"""Calibration of the classifier ensemble: Platt scaling per kind of series on validation phantoms.

The node calls a finding indeterminate when P(metastasis) lies in an uncertain band (0.3-0.7,
``pipeline.plausibility.Limits``). That band means "less than 70 % sure" only if the probability is
calibrated. The ensemble's mean was not: on the randomised look's dynamic studies, 11 primaries
sat at P 0.3-0.5 and none of them was a metastasis. On single-phase studies it was over-confident,
with studies at P < 0.1 of which a quarter were metastases.

So the mean's logit z is mapped to ``sigmoid(slope * z + intercept)``, one pair for single-phase and
one for dynamic series (:func:`models.inception3d.calibrated`). The pair is fitted by logistic
regression on the logit (scikit-learn, its default L2 penalty C = 1, which keeps the slope finite
where the validation studies are separable). It uses the cubes of the node's own lesions in
validation phantoms of both looks: the classic one and the randomised one, single-phase and dynamic.

Their seeds (:data:`CALIBRATION_SETS`) lie in the validation range (``training.looks.SEEDS``). They
are disjoint from the classifier's training seeds (40000-, 60000-, 65000-), from its held-out seeds
(900000-, 905000-, 910000-, 915000-) and from the other validation sets (the U-Net's 800000-800079,
the spine localiser's 850000-). The held-out sets therefore judge the calibration as they judge
the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import logit
from sklearn.linear_model import LogisticRegression

from models.inception3d import CALIBRATION_EPS, Ensemble, calibrated, identity_calibration
from training.errors import TrainingDataError
from training.looks import SEEDS


@dataclass(frozen=True)
class CalibrationSet:
    """Validation phantoms of one look and kind: ``seed_offset`` from the validation range's start."""

    look: str
    dynamic: bool
    seed_offset: int

    def seeds(self, studies: int) -> range:
        start = SEEDS["validation"] + self.seed_offset
        return range(start, start + studies)


CALIBRATION_SETS = (CalibrationSet("randomised", False, 20_000), CalibrationSet("randomised", True, 25_000),
                    CalibrationSet("classic", False, 30_000), CalibrationSet("classic", True, 35_000))


def platt(prob: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the logistic regression of ``labels`` (1 = metastasis) on the logit of
    ``prob``; both classes must be present."""
    y = np.asarray(labels).astype(int)
    if len(np.unique(y)) < 2:
        raise TrainingDataError("calibration needs metastases and primaries among its studies; "
                                "give more calibration studies")
    clipped = np.clip(np.asarray(prob, dtype=np.float64), CALIBRATION_EPS, 1 - CALIBRATION_EPS)
    fit = LogisticRegression(C=1.0).fit(logit(clipped)[:, None], y)
    return float(fit.coef_[0][0]), float(fit.intercept_[0])


def calibrate(ensemble: Ensemble, work: Path, *, single: int, dynamic: int, processes: int = 1
              ) -> dict[str, Any]:
    """Fit ``ensemble.calibration`` in place: ``single`` single-phase and ``dynamic`` dynamic
    validation studies of each look (cubes cached in ``work``); a kind given 0 studies keeps slope 1,
    intercept 0. Returns what was fitted, on which studies, and the reliability curve before and
    after on those studies (for the model card)."""
    from training.train_classifier import cached_cubes, predict, reliability

    ensemble.calibration = identity_calibration()
    report: dict[str, Any] = {"method": "Platt scaling of the ensemble mean's logit (logistic regression, C=1)",
                              "masks": "node"}
    fitted = identity_calibration()
    for row, (kind, studies) in enumerate((("single", single), ("dynamic", dynamic))):
        if studies <= 0:
            continue
        sets = [s for s in CALIBRATION_SETS if s.dynamic == (kind == "dynamic")]
        parts = [cached_cubes(work, s.look, s.seeds(studies), phases=None if s.dynamic else 1,
                              dynamic_fraction=1.0 if s.dynamic else None, processes=processes,
                              desc=f"calibration {s.look} {kind}", masks="node") for s in sets]
        y = np.concatenate([p.labels.numpy() for p in parts])
        prob = np.concatenate([predict(ensemble, p.cubes) for p in parts])
        slope, intercept = platt(prob, y)
        fitted[row] = torch.tensor([slope, intercept])
        stored = fitted.half().float()  # as the weights file keeps it
        after = calibrated(torch.from_numpy(prob), torch.full((len(prob),), bool(row)), stored).numpy()
        report[kind] = {"studies": len(y), "seeds": [f"{s.look} {r.start}-{r.stop - 1}" for s, r in
                                                      ((s, s.seeds(studies)) for s in sets)],
                        "slope": round(float(stored[row, 0]), 4), "intercept": round(float(stored[row, 1]), 4),
                        "reliability_before": reliability(y, prob), "reliability_after": reliability(y, after)}
    ensemble.calibration = fitted
    return report
