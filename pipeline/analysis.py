"""The pipeline's entry point for the node: one series in, an :class:`Analysis` out.

Stages (timed): load the series, region growing, U-Net, lesion measurements, CE parameter maps,
radiomics (Rad-score of the largest lesion), the 3D classifier (metastasis vs primary malignant
bone tumour, on the cube around the largest lesion). The lesions reported are the U-Net's when
its weights are available, else region growing's; the Dice between the two masks is kept as a
quality measure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.unet_io import segmentation_input
from pipeline.classification import Classification
from pipeline.cube import CHANNELS, classifier_cube
from pipeline.errors import InputRejected
from pipeline.lesions import Lesion, find_lesions
from pipeline.metrics import dice
from pipeline.parameter_maps import ParameterMaps
from pipeline.parameter_maps import compute as compute_maps
from pipeline.region_growing import RegionGrowingResult
from pipeline.region_growing import segment as region_growing
from pipeline.volume import Volume, load_series


@dataclass(frozen=True, kw_only=True)
class Analysis:
    volume: Volume
    image: np.ndarray  # (slices, rows, cols): post-contrast, or the peak of a dynamic series
    region_growing: RegionGrowingResult
    unet_mask: np.ndarray | None
    unet_sha256: str | None
    lesions: list[Lesion]
    lesion_source: str  # "unet" or "region_growing"
    agreement_dice: float | None
    radiomics: dict[str, Any] | None = None  # mode, rad_score, probability, features used
    classification: Classification | None = None
    maps_note: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the job records (JSON-able)."""
        return {
            "shape": list(self.volume.shape),
            "phases": self.volume.phases,
            "spacing_mm": [round(v, 4) for v in self.volume.spacing],
            "lesion_source": self.lesion_source,
            "unet_sha256": self.unet_sha256,
            "agreement_dice": None if self.agreement_dice is None else round(self.agreement_dice, 4),
            "lesions": [{"index": les.index, "volume_mm3": round(les.volume_mm3, 1),
                         "max_diameter_mm": round(les.max_diameter_mm, 1),
                         "mean_enhancement": round(les.mean_enhancement, 3),
                         "peak_enhancement": round(les.peak_enhancement, 3)} for les in self.lesions],
            "radiomics": self.radiomics,
            "classification": None if self.classification is None else self.classification.summary(),
            "parameter_maps": self.maps_note,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _check_range(image: np.ndarray) -> None:
    if not np.isfinite(image).all():
        raise InputRejected("input_out_of_range", "pixel values are not finite")
    if float(image.max()) <= 0 or float(np.percentile(image, 99)) <= 0:
        raise InputRejected("input_out_of_range", "the image is empty (no signal)")


SIGNATURES = Path(__file__).resolve().parent.parent / "models" / "weights"


def radiomics_score(volume: Volume, maps: ParameterMaps, lesion_mask: np.ndarray) -> dict[str, Any] | None:
    """Rad-score of the lesion with the shipped signature for the series' kind (single-phase or
    dynamic); None when that signature is not shipped."""
    from models.radiomics_signature import Signature
    from pipeline.radiomics import extract

    mode = "dynamic" if maps.dynamic else "single"
    path = SIGNATURES / f"radiomics_{mode}.json"
    if not path.exists():
        return None
    signature = Signature.load(path)
    features = extract(maps.available(), lesion_mask, volume.spacing, only=signature.features)
    return {
        "mode": mode,
        "rad_score": round(signature.rad_score(features), 4),
        "probability_metastasis": round(signature.probability(features), 4),
        "features": {f: round(features[f], 6) for f in signature.features},
    }


def classify(volume: Volume, image: np.ndarray, maps: ParameterMaps, marrow_level: float,
             lesion: Lesion, lesions_mask: np.ndarray) -> Classification:
    """The class of the study from the cube around ``lesion`` (the largest)."""
    from pipeline.classification import get_classifier

    classifier = get_classifier()
    cube = classifier_cube(image, maps, marrow_level, lesion.mask, volume.spacing, lesions_mask)
    present = {"inflow": maps.dynamic, "outflow": maps.dynamic}
    channels = tuple(name for name in CHANNELS if present.get(name, True))
    return Classification(classifier.probability(cube), classifier.sha256, lesion.index, channels)


def analyse(paths: Sequence[Path], *, use_unet: bool = True, precision: str = "bf16",
            use_radiomics: bool = True, use_classifier: bool = True) -> Analysis:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    volume = load_series(paths)
    image = segmentation_input(volume.pixels)
    _check_range(image)
    timings["load"] = time.perf_counter() - t
    pixel_mm = (volume.spacing[1], volume.spacing[2])
    t = time.perf_counter()
    rg = region_growing(image, pixel_mm)
    timings["region_growing"] = time.perf_counter() - t
    unet_mask, sha = None, None
    if use_unet:
        from pipeline.segmentation import get_segmenter

        t = time.perf_counter()
        segmenter = get_segmenter(precision=precision)
        unet_mask, sha = segmenter.segment(image), segmenter.sha256
        timings["unet"] = time.perf_counter() - t
    t = time.perf_counter()
    source_mask = unet_mask if unet_mask is not None else rg.mask
    lesions = find_lesions(source_mask, volume, image, rg.marrow_level)
    timings["lesions"] = time.perf_counter() - t
    if not lesions:
        raise InputRejected("no_lesion", "no lesion of at least 20 mm3 was found in the vertebral body")
    t = time.perf_counter()
    maps = compute_maps(volume, rg.marrow_level)
    timings["parameter_maps"] = time.perf_counter() - t
    radiomics, classification = None, None
    if use_radiomics:
        t = time.perf_counter()
        radiomics = radiomics_score(volume, maps, lesions[0].mask)
        timings["radiomics"] = time.perf_counter() - t
    if use_classifier:
        t = time.perf_counter()
        classification = classify(volume, image, maps, rg.marrow_level, lesions[0], source_mask)
        timings["classifier"] = time.perf_counter() - t
    return Analysis(
        volume=volume, image=image, region_growing=rg, unet_mask=unet_mask, unet_sha256=sha,
        lesions=lesions, lesion_source="unet" if unet_mask is not None else "region_growing",
        agreement_dice=None if unet_mask is None else dice(unet_mask, rg.mask), timings=timings,
        radiomics=radiomics, classification=classification, maps_note=maps.note,
    )
