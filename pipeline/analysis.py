"""The pipeline's entry point for the node: one loaded series in, an :class:`Analysis` out.

The series is read and loaded before (:func:`pipeline.volume.read_series`,
:func:`pipeline.volume.load_series`); the analysis itself reads no file. Stages (timed):
prepare the image, region growing, U-Net, lesion measurements, CE parameter maps,
radiomics (Rad-score of the largest lesion), the 3D classifier (metastasis vs primary malignant
bone tumour, on the cube around the largest lesion). The lesions reported are the U-Net's when
its weights are available (its components that lie in the located vertebral body,
:func:`pipeline.plausibility.keep_in_body`), else region growing's; the Dice between the two masks
is kept as a quality measure.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.unet_io import segmentation_input
from pipeline.classification import Classification
from pipeline.cube import CHANNELS, classifier_cube
from pipeline.errors import InputRejected
from pipeline.lesions import Lesion, find_lesions
from pipeline.metrics import dice, overlap_coefficient
from pipeline.parameter_maps import ParameterMaps
from pipeline.parameter_maps import compute as compute_maps
from pipeline.plausibility import Limits, Verdict, assess, body_share, inside_fraction, washout
from pipeline.precision import Precision, parse_precision
from pipeline.reasons import Reason
from pipeline.region_growing import RegionGrowingResult, enhancement_image
from pipeline.region_growing import segment as region_growing
from pipeline.volume import Volume


class LesionSource(enum.StrEnum):
    """Which mask the reported lesions come from."""

    UNET = "unet"
    REGION_GROWING = "region_growing"


@dataclass(frozen=True, kw_only=True)
class Analysis:
    volume: Volume
    image: np.ndarray  # (slices, rows, cols): post-contrast, or the peak of a dynamic series
    region_growing: RegionGrowingResult
    unet_mask: np.ndarray | None
    unet_sha256: str | None
    lesions: list[Lesion]
    lesion_source: LesionSource
    agreement_dice: float | None
    agreement_overlap: float | None = None  # what the plausibility check looks at (overlap coefficient)
    radiomics: dict[str, Any] | None = None  # mode, rad_score, probability, features used
    classification: Classification | None = None
    verdict: Verdict | None = None  # the plausibility checks' answer (None: no classifier ran)
    maps_note: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the job records (JSON-able)."""
        return {
            "shape": list(self.volume.shape),
            "phases": self.volume.phases,
            "spacing_mm": [round(v, 4) for v in self.volume.spacing],
            "lesion_source": str(self.lesion_source),
            "unet_sha256": self.unet_sha256,
            "agreement_dice": None if self.agreement_dice is None else round(self.agreement_dice, 4),
            "agreement_overlap": None if self.agreement_overlap is None else round(self.agreement_overlap, 4),
            "lesions": [{"index": les.index, "volume_mm3": round(les.volume_mm3, 1),
                         "max_diameter_mm": round(les.max_diameter_mm, 1),
                         "mean_enhancement": round(les.mean_enhancement, 3),
                         "peak_enhancement": round(les.peak_enhancement, 3)} for les in self.lesions],
            "radiomics": self.radiomics,
            "classification": None if self.classification is None else self.classification.summary(),
            "verdict": None if self.verdict is None else self.verdict.summary(),
            "parameter_maps": self.maps_note,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _check_range(image: np.ndarray) -> None:
    if not np.isfinite(image).all():
        raise InputRejected(Reason.INPUT_OUT_OF_RANGE, "pixel values are not finite")
    if float(image.max()) <= 0 or float(np.percentile(image, 99)) <= 0:
        raise InputRejected(Reason.INPUT_OUT_OF_RANGE, "the image is empty (no signal)")


SIGNATURES = Path(__file__).resolve().parent.parent / "models" / "weights"


def radiomics_score(volume: Volume, maps: ParameterMaps, lesion_mask: np.ndarray) -> dict[str, Any] | None:
    """Rad-score of the lesion with the shipped signature for the series' kind (single-phase or
    dynamic); None when that signature is not shipped."""
    from models.radiomics_signature import Signature
    from models.weights import sha256_file
    from pipeline.radiomics import extract

    mode = "dynamic" if maps.dynamic else "single"
    path = SIGNATURES / f"radiomics_{mode}.json"
    if not path.exists():
        return None
    signature = Signature.load(path)
    features = extract(maps.available(), lesion_mask, volume.spacing, only=signature.features)
    return {
        "mode": mode,
        "sha256": sha256_file(path),
        "rad_score": round(signature.rad_score(features), 4),
        "probability_metastasis": round(signature.probability(features), 4),
        "features": {f: round(features[f], 6) for f in signature.features},
    }


def classify(volume: Volume, image: np.ndarray, maps: ParameterMaps, marrow_level: float,
             lesion: Lesion) -> Classification:
    """The class of the study from the cube around ``lesion`` (the largest)."""
    from pipeline.classification import get_classifier

    classifier = get_classifier()
    cube = classifier_cube(image, maps, marrow_level, lesion.mask, volume.spacing)
    present = {"inflow": maps.dynamic, "outflow": maps.dynamic}
    channels = tuple(name for name in CHANNELS if present.get(name, True))
    return Classification(classifier.probability(cube), classifier.sha256, lesion.index, channels)


def unet_segment(image: np.ndarray, body: np.ndarray, marrow: float, pixel_mm: tuple[float, float],
                 precision: Precision) -> tuple[np.ndarray, str]:
    """The U-Net's lesions of ``image`` in the located ``body`` (normal marrow's level ``marrow``)
    and the checksum of the weights."""
    from pipeline.segmentation import get_segmenter

    segmenter = get_segmenter(precision=precision)
    return segmenter.segment_in_body(image, body, marrow, pixel_mm), segmenter.sha256


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start


def plausibility_verdict(volume: Volume, rg: RegionGrowingResult, lesion: Lesion, overlap: float | None,
                         radiomics: dict[str, Any] | None, classification: Classification) -> Verdict:
    """Whether the largest lesion and the two models support a coded diagnosis."""
    limits = Limits()
    inside = inside_fraction(lesion.mask, rg.body.mask, (volume.spacing[1], volume.spacing[2]), limits.body_margin_mm)
    return assess(inside_body=inside, body_share=body_share(lesion.mask, rg.body.mask),
                  peak_enhancement=lesion.peak_enhancement, agreement_overlap=overlap,
                  p_classifier=classification.probability_metastasis,
                  p_radiomics=None if radiomics is None else float(radiomics["probability_metastasis"]),
                  washout_fraction=washout(volume.pixels, lesion.mask),
                  body_score=rg.body.score if rg.body.method == "localiser" else 0.0, limits=limits)


def _lesions(volume: Volume, image: np.ndarray, rg: RegionGrowingResult, unet_mask: np.ndarray | None
             ) -> tuple[LesionSource, list[Lesion]]:
    """The lesions reported and which mask they come from: the U-Net's; region growing's
    when the U-Net is off, or when it found none that region growing did find (a lesion found by
    one method is reported, not lost; the segmentations then disagree and the finding is
    indeterminate)."""
    if unet_mask is not None:
        found = find_lesions(unet_mask, volume, image, rg.marrow_level)
        if found:
            return LesionSource.UNET, found
    return LesionSource.REGION_GROWING, find_lesions(rg.mask, volume, image, rg.marrow_level)


def analyse(volume: Volume, *, use_unet: bool = True, precision: str | Precision = Precision.AUTO,
            use_radiomics: bool = True, use_classifier: bool = True) -> Analysis:
    """Segment, measure and classify a loaded series (no file is read).

    Returns the :class:`Analysis`; raises :class:`InputRejected` for a series it will not
    analyse (``input_out_of_range``: no finite signal; ``no_lesion``) and ``ValueError`` for a
    precision other than bf16 or fp32.
    """
    precision = parse_precision(precision)
    timings: dict[str, float] = {}
    with _timed(timings, "prepare"):
        image = segmentation_input(volume.pixels)
        _check_range(image)
    with _timed(timings, "region_growing"):
        rg = region_growing(image, (volume.spacing[1], volume.spacing[2]), enhancement_image(volume.pixels))
    unet_mask, sha = None, None
    if use_unet:
        with _timed(timings, "unet"):
            unet_mask, sha = unet_segment(image, rg.body.mask, rg.marrow_level, (volume.spacing[1], volume.spacing[2]),
                                          precision)
    with _timed(timings, "lesions"):
        source, lesions = _lesions(volume, image, rg, unet_mask)
    if not lesions:
        raise InputRejected(Reason.NO_LESION, "no lesion of at least 20 mm3 was found in the vertebral body")
    with _timed(timings, "parameter_maps"):
        maps = compute_maps(volume, rg.marrow_level)
    radiomics, classification = None, None
    if use_radiomics:
        with _timed(timings, "radiomics"):
            radiomics = radiomics_score(volume, maps, lesions[0].mask)
    if use_classifier:
        with _timed(timings, "classifier"):
            classification = classify(volume, image, maps, rg.marrow_level, lesions[0])
    agreement = None if unet_mask is None else dice(unet_mask, rg.mask)
    overlap = None if unet_mask is None else overlap_coefficient(unet_mask, rg.mask)
    verdict = None if classification is None else plausibility_verdict(
        volume, rg, lesions[0], overlap, radiomics, classification)
    return Analysis(
        volume=volume, image=image, region_growing=rg, unet_mask=unet_mask, unet_sha256=sha,
        lesions=lesions, lesion_source=source,
        agreement_dice=agreement, agreement_overlap=overlap, timings=timings, verdict=verdict,
        radiomics=radiomics, classification=classification, maps_note=maps.note,
    )
