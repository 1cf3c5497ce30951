"""The lesions the node itself reports for a series: the models that come after segmentation
(radiomics signature, 3D classifier) are trained and scored on what they will see in the node,
not only on the phantom's ground truth (``--masks node`` of ``train-radiomics`` and
``train-classifier``)."""

from __future__ import annotations

import numpy as np

from pipeline.lesions import largest_component
from pipeline.volume import Volume

MASKS = ("truth", "node")


def node_lesions(volume: Volume) -> np.ndarray | None:
    """The mask of the largest lesion the node reports for ``volume`` (what radiomics measures and
    the classifier sees; :func:`pipeline.analysis.analyse`, fp32 U-Net in the located body, region
    growing's lesions when the U-Net finds none); None when it reports no lesion (it sends an
    abstention then, so no model after segmentation sees the series)."""
    from pipeline.analysis import analyse
    from pipeline.errors import InputRejected

    try:
        a = analyse(volume, precision="fp32", use_radiomics=False, use_classifier=False)
    except InputRejected:
        return None
    return a.lesions[0].mask


def reference_lesions(volume: Volume, truth: np.ndarray, masks: str) -> np.ndarray | None:
    """The lesion a model after segmentation is trained or scored on: the ground truth's largest
    component (``masks="truth"``) or the node's own largest lesion (``"node"``,
    :func:`node_lesions`; None when the node reports none)."""
    if masks == "truth":
        return largest_component(truth)
    return node_lesions(volume)
