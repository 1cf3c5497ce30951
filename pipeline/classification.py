"""Classifier inference for the worker: metastasis vs primary malignant bone tumour per study.

The 3D Inception-ResNet + SE network (``models/inception3d.py``; the shipped file is an ensemble of
three such networks whose probabilities are averaged, two of them for dynamic series only, and the
mean calibrated per kind of series) sees the cube around the largest lesion (``pipeline/cube.py``);
its weights are loaded once per process, checksum first. The study's class is the more probable of
the two; P(metastasis) is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import inception3d, weights
from pipeline.per_process import PerProcess

DEFAULT_WEIGHTS = weights.WEIGHTS_DIR / "classifier.pt"
CLASS_NAMES = ("primary malignant spinal bone tumour", "spinal metastasis")


@dataclass(frozen=True)
class Classification:
    probability_metastasis: float
    sha256: str
    lesion_index: int
    channels: tuple[str, ...]

    @property
    def metastasis(self) -> bool:
        return self.probability_metastasis >= 0.5

    @property
    def label(self) -> str:
        return CLASS_NAMES[int(self.metastasis)]

    def summary(self) -> dict[str, Any]:
        return {"class": self.label, "probability_metastasis": round(self.probability_metastasis, 4),
                "lesion_index": self.lesion_index, "channels": list(self.channels), "sha256": self.sha256}


class Classifier:
    def __init__(self, path: Path = DEFAULT_WEIGHTS) -> None:
        self.model, self.sha256 = inception3d.load(path)  # one network, or an ensemble averaged
        self.model.eval()

    def probability(self, cube: np.ndarray) -> float:
        """P(metastasis) for one (5, slices, 64, 64) cube (``pipeline.cube``)."""
        with torch.inference_mode():
            return float(self.model.predict_proba(torch.from_numpy(np.ascontiguousarray(cube))[None])[0])


_CLASSIFIERS: PerProcess[Classifier] = PerProcess(Classifier)


def get_classifier(path: Path = DEFAULT_WEIGHTS) -> Classifier:
    """One classifier per weights file per process."""
    return _CLASSIFIERS.get(Path(path))
