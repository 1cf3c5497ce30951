"""The radiomics signature (paper sections 2.4 and 3.1) as shipped: Rad-score = the weighted sum
of the selected (standardised) features plus the intercept; probability of metastasis =
sigmoid(Rad-score). How it is fitted (mRMR, LASSO with 10-fold CV) is in ``training.signature``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Signature:
    mode: str  # "single" (peak map) or "dynamic" (peak, inflow, outflow)
    features: list[str]
    means: list[float]
    stds: list[float]
    coefficients: list[float]
    intercept: float
    c: float
    positive_class: str = "metastasis"
    versions: dict[str, str] = field(default_factory=dict)
    training: dict = field(default_factory=dict)

    def rad_score(self, values: dict[str, float]) -> float:
        z = [(values[f] - m) / s for f, m, s in zip(self.features, self.means, self.stds, strict=True)]
        return float(self.intercept + np.dot(self.coefficients, z))

    def probability(self, values: dict[str, float]) -> float:
        return 1.0 / (1.0 + math.exp(-self.rad_score(values)))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Signature:
        return cls(**json.loads(Path(path).read_text()))
