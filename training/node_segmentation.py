"""The lesions the node itself reports for a series: the models that come after segmentation
(radiomics signature, 3D classifier) are trained and scored on what they will see in the node,
not only on the phantom's ground truth (``--masks node`` of ``train-radiomics`` and
``train-classifier``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.lesions import largest_component
from pipeline.volume import Volume

MASKS = ("truth", "node")


@dataclass(frozen=True)
class NodeLesions:
    largest: np.ndarray  # the largest lesion reported (what radiomics measures and the classifier sees)


def node_lesions(volume: Volume) -> NodeLesions | None:
    """The node's lesions for ``volume`` (:func:`pipeline.analysis.analyse`, fp32 U-Net in the
    located body, region growing's lesions when the U-Net finds none); None when it reports no
    lesion (it sends an abstention then, so no model after segmentation sees the series)."""
    from pipeline.analysis import analyse
    from pipeline.errors import InputRejected

    try:
        a = analyse(volume, precision="fp32", use_radiomics=False, use_classifier=False)
    except InputRejected:
        return None
    return NodeLesions(largest=a.lesions[0].mask)


def reference_lesions(volume: Volume, truth: np.ndarray, masks: str) -> NodeLesions | None:
    """The lesions a model after segmentation is trained or scored on: the ground truth's
    (``masks="truth"``: its largest component, the whole mask as the source) or the node's own
    (``"node"``, :func:`node_lesions`; None when the node reports none)."""
    if masks == "truth":
        return NodeLesions(largest=largest_component(truth))
    return node_lesions(volume)
