"""The TID 1500 Measurement Report (Comprehensive 3D SR), made for viewers as much as for archives.

Per lesion, on the source slice where it is largest:

* a volumetric group (TID 1411) referencing its SEG segment: volume, maximum 3D diameter, mean and
  peak enhancement;
* a planar group (TID 1410): its outline, an SCOORD POLYLINE (closed) on that image, with its area;
* a measurement group (TID 1501): its long and short axis, each a length in mm inferred from a
  two-point SCOORD POLYLINE on that image (a bidirectional measurement, as RECIST's).

The volumetric and planar groups share the lesion's tracking identifier ("Lesion 1") and UID: one
finding. The axes have their own UID, so that a viewer that merges groups by tracking UID (OHIF
draws one shape per UID) draws both; their identifier starts with the prefix OHIF reads as its
Bidirectional tool (so they are listed in its measurement panel) and ends with the lesion's name.
The study-level group (TID 1501) carries the 3D classifier's finding on the lesion it classified
(the largest) under that lesion's tracking identifier: "Finding" (DCM 121071) = SCT bony
metastasis or primary malignant neoplasm of bone, at the spine, with its probability of
metastasis, the Rad-score and the radiomics model's probability, the Dice agreement of U-Net and
region growing and their overlap coefficient (what the plausibility check on their agreement looks
at), and the intended use. When the plausibility checks (``pipeline.plausibility``)
do not support a diagnosis, the finding is SCT 82334004 "Indeterminate" and each reason is a
coded qualitative evaluation (99SPINENODE INDET_REASON); the probabilities are still reported.
VerificationFlag UNVERIFIED (nobody verified it), completion PARTIAL."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pipeline.classification import Classification
from pipeline.lesions import Lesion
from pipeline.outputs.identity import MANUFACTURER, MODEL_NAME, ResultIdentity
from pipeline.planar import measure_planar
from pipeline.plausibility import IndeterminateReason, Verdict

SR_SERIES_NUMBER = 9702
SCHEME = "99SPINENODE"  # private coding scheme (99 prefix) for concepts without a standard code
# (Code Value is an SH: at most 16 characters; tests/unit/test_codes.py checks every one)
MEAN_ENHANCEMENT = Code("ENH_MEAN", SCHEME, "Mean enhancement ratio to normal marrow")
PEAK_ENHANCEMENT = Code("ENH_PEAK", SCHEME, "Peak enhancement ratio to normal marrow")
DICE_AGREEMENT = Code("DICE_UNET_RG", SCHEME, "Dice agreement of U-Net and region growing")
OVERLAP_AGREEMENT = Code("OVERLAP_UNET_RG", SCHEME, "Overlap coefficient of U-Net and region growing")
RAD_SCORE = Code("RAD_SCORE", SCHEME, "Radiomics score (Rad-score)")
RADIOMICS_PROBABILITY = Code("RAD_PROB_MET", SCHEME, "Radiomics model probability of spinal metastasis")
CLASSIFIER_PROBABILITY = Code("CLS_PROB_MET", SCHEME, "3D classifier probability of spinal metastasis")
PRIMARY_BONE_MALIGNANCY = Code("93725000", "SCT", "Primary malignant neoplasm of bone")
INDETERMINATE = Code("82334004", "SCT", "Indeterminate")
AI_CLASS = {True: codes.SCT.BonyMetastasis, False: PRIMARY_BONE_MALIGNANCY, None: INDETERMINATE}
INDETERMINATE_REASON = Code("INDET_REASON", SCHEME, "Reason the finding is indeterminate")
INDETERMINATE_REASONS = {
    IndeterminateReason.LESION_OUTSIDE_VERTEBRAL_BODY: Code("OUTSIDE_BODY", SCHEME,
                                                            "Lesion outside the located vertebral body"),
    IndeterminateReason.ENHANCEMENT_IMPLAUSIBLE: Code("ENH_IMPLAUSIBLE", SCHEME,
                                                      "Lesion enhancement outside the plausible range"),
    IndeterminateReason.SEGMENTATIONS_DISAGREE: Code("SEG_DISAGREE", SCHEME,
                                                     "U-Net and region growing segmentations disagree"),
    IndeterminateReason.PROBABILITY_UNCERTAIN: Code("PROB_UNCERTAIN", SCHEME,
                                                    "Classifier probability in the uncertain band"),
    IndeterminateReason.MODELS_DISAGREE: Code("MODELS_DISAGREE", SCHEME,
                                              "3D classifier and radiomics model disagree"),
    IndeterminateReason.KINETICS_DISAGREE: Code("KINETIC_CONFLICT", SCHEME,
                                                "Lesion time-intensity curve contradicts the class"),
    IndeterminateReason.IMAGE_UNLIKE_TRAINING: Code("UNLIKE_TRAINING", SCHEME,
                                                    "Image unlike those the models were trained on"),
}
INTENDED_USE = Code("INTENDED_USE", SCHEME, "Intended use")
RESEARCH_ONLY = Code("RESEARCH_ONLY", SCHEME, "Research use only, not for diagnostic use")
PROCEDURE = codes.LN.MRISpineReport


def observation_context(identity: ResultIdentity) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=identity.uid("device", "observer"), name="spinenode", manufacturer_name=MANUFACTURER,
        model_name=MODEL_NAME)
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.cid270.Device,
                                                      observer_identifying_attributes=device))


def _lesion_group(lesion: Lesion, seg: Dataset, segment_number: int, identity: ResultIdentity,
                  algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    ratio = codes.UCUM.NoUnits
    measurements = [
        hd.sr.Measurement(name=codes.SCT.Volume, value=round(lesion.volume_mm3, 1), unit=codes.UCUM.CubicMillimeter),
        hd.sr.Measurement(name=codes.SCT.Diameter, value=round(lesion.max_diameter_mm, 1), unit=codes.UCUM.Millimeter,
                          derivation=codes.cid7464.Maximum),
        hd.sr.Measurement(name=MEAN_ENHANCEMENT, value=round(lesion.mean_enhancement, 3), unit=ratio),
        hd.sr.Measurement(name=PEAK_ENHANCEMENT, value=round(lesion.peak_enhancement, 3), unit=ratio),
    ]
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=lesion_tracking(lesion.index, identity),
        referenced_segment=hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID,
                                                   sop_instance_uid=seg.SOPInstanceUID,
                                                   segment_number=segment_number,
                                                   source_series=hd.sr.SourceSeriesForSegmentation(
                                                       identity.source_series_uid)),
        finding_type=codes.SCT.Neoplasm,
        finding_sites=[hd.sr.FindingSite(codes.SCT.BoneStructureOfSpine)],
        algorithm_id=algorithm,
        measurements=measurements,
    )


# SCT's codes for the two diameters, with the meanings PS3.16 CID 7470 spells (dcmjs and OHIF match
# them case-sensitively to show a bidirectional measurement)
LONG_AXIS = Code("103339001", "SCT", "Long Axis")
SHORT_AXIS = Code("103340004", "SCT", "Short Axis")
# The Tracking Identifier prefix with which OHIF (dcmjs's Cornerstone3D adapters) turns a group into
# its Bidirectional tool, listed in its measurement panel; the rest of the identifier names the lesion.
BIDIRECTIONAL_TRACKING = "Cornerstone3DTools@^0.1.0:Bidirectional"


def lesion_tracking(lesion_index: int, identity: ResultIdentity) -> hd.sr.TrackingIdentifier:
    """One lesion as a tracked finding: its volumetric group, its outline and the study-level
    finding made on it share this identifier and UID."""
    return hd.sr.TrackingIdentifier(uid=identity.uid("lesion", str(lesion_index)), identifier=f"Lesion {lesion_index}")


def outline_group(lesion: Lesion, image: Dataset, outline: np.ndarray, area_mm2: float, identity: ResultIdentity,
                  algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410: the lesion's outline on ``image`` (an SCOORD POLYLINE, closed) with its area."""
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=outline,
                               source_image=hd.sr.SourceImageForRegion(image.SOPClassUID, image.SOPInstanceUID))
    area = hd.sr.Measurement(name=codes.SCT.Area, value=round(area_mm2, 1), unit=codes.UCUM.SquareMillimeter)
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=lesion_tracking(lesion.index, identity), referenced_region=region,
        finding_type=codes.SCT.Neoplasm, algorithm_id=algorithm, measurements=[area])


def axes_group(lesion: Lesion, image: Dataset, axes: Sequence[tuple[Code, np.ndarray, float]],
               identity: ResultIdentity, algorithm: hd.sr.AlgorithmIdentification,
               ) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501: the long and short axis, each a length in mm inferred from a two-point SCOORD
    POLYLINE on ``image``; its own tracking UID, so that a viewer draws it beside the outline."""
    source = hd.sr.SourceImageForRegion(image.SOPClassUID, image.SOPInstanceUID)
    measurements = [hd.sr.Measurement(
        name=name, value=round(length, 1), unit=codes.UCUM.Millimeter,
        referenced_coordinates=[hd.sr.CoordinatesForMeasurement(hd.sr.GraphicTypeValues.POLYLINE, points, source)])
        for name, points, length in axes]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=identity.uid("lesion-axes", str(lesion.index)),
                                                     identifier=f"{BIDIRECTIONAL_TRACKING}:Lesion {lesion.index}"),
        finding_type=codes.SCT.Neoplasm, algorithm_id=algorithm, measurements=measurements)


def planar_groups(lesion: Lesion, source: Sequence[Dataset], identity: ResultIdentity,
                  algorithm: hd.sr.AlgorithmIdentification) -> list:
    """Outline, long axis and short axis of ``lesion`` on ``source[lesion.largest_slice]``."""
    image = source[lesion.largest_slice]
    planar = measure_planar(lesion.mask[lesion.largest_slice], tuple(image.PixelSpacing))
    axes = [(LONG_AXIS, planar.long_axis, planar.long_axis_mm)]
    if planar.short_axis is not None and planar.short_axis_mm is not None:
        axes.append((SHORT_AXIS, planar.short_axis, planar.short_axis_mm))
    return [outline_group(lesion, image, planar.outline, planar.area_mm2, identity, algorithm),
            axes_group(lesion, image, axes, identity, algorithm)]


def build_measurement_sr(source: Sequence[Dataset], seg: Dataset, lesions: Sequence[Lesion], *,
                         lesion_segment: int, agreement_dice: float | None,
                         agreement_overlap: float | None = None, identity: ResultIdentity,
                         radiomics: dict | None = None,
                         classification: Classification | None = None,
                         verdict: Verdict | None = None) -> hd.sr.Comprehensive3DSR:
    """``verdict``: the plausibility checks' answer; without one the classifier's class is coded."""
    release, *checksums = identity.software_versions
    algorithm = hd.sr.AlgorithmIdentification(name="spinenode", version=release, parameters=checksums or None)
    groups: list = []
    for lesion in lesions:
        groups.append(_lesion_group(lesion, seg, lesion_segment, identity, algorithm))
        groups.extend(planar_groups(lesion, source, identity, algorithm))
    study_level = [hd.sr.QualitativeEvaluation(INTENDED_USE, RESEARCH_ONLY)]
    quality = []
    finding = None
    if verdict is not None:
        finding = AI_CLASS[verdict.metastasis]
        study_level += [hd.sr.QualitativeEvaluation(INDETERMINATE_REASON, INDETERMINATE_REASONS[r])
                        for r in verdict.reasons]
    elif classification is not None:
        finding = AI_CLASS[classification.metastasis]
    if classification is not None:
        quality.append(hd.sr.Measurement(name=CLASSIFIER_PROBABILITY,
                                         value=round(classification.probability_metastasis, 4),
                                         unit=codes.UCUM.NoUnits))
    if agreement_dice is not None:
        quality.append(hd.sr.Measurement(name=DICE_AGREEMENT, value=round(agreement_dice, 4),
                                         unit=codes.UCUM.NoUnits))
    if agreement_overlap is not None:
        quality.append(hd.sr.Measurement(name=OVERLAP_AGREEMENT, value=round(agreement_overlap, 4),
                                         unit=codes.UCUM.NoUnits))
    if radiomics is not None:
        quality.append(hd.sr.Measurement(name=RAD_SCORE, value=float(radiomics["rad_score"]),
                                         unit=codes.UCUM.NoUnits))
        quality.append(hd.sr.Measurement(name=RADIOMICS_PROBABILITY,
                                         value=float(radiomics["probability_metastasis"]), unit=codes.UCUM.NoUnits))
    classified = lesions[0].index if classification is None else classification.lesion_index
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=lesion_tracking(classified, identity),  # the class is that of the lesion classified
        finding_type=finding, finding_sites=[hd.sr.FindingSite(codes.SCT.BoneStructureOfSpine)] if finding else None,
        algorithm_id=algorithm, measurements=quality or None, qualitative_evaluations=study_level))
    return report_sr(groups, [*source, seg], identity, kind="sr", series_number=SR_SERIES_NUMBER,
                     description="AI lesion measurements (NOT FOR DIAGNOSIS)", complete=False,
                     library=measured_images(source, lesions))


def measured_images(source: Sequence[Dataset], lesions: Sequence[Lesion]) -> list[Dataset]:
    """The source images a reported lesion lies on, in order: the images its measurements were made
    on, which the TID 1600 Image Library lists (each entry costs highdicom ~40 ms to build and copy)."""
    used = np.zeros(len(source), dtype=bool)
    for lesion in lesions:
        used |= lesion.mask.reshape(lesion.mask.shape[0], -1).any(axis=1)
    return [ds for ds, on in zip(source, used, strict=True) if on]


def report_sr(groups: Sequence, evidence: Sequence[Dataset], identity: ResultIdentity, *, kind: str,
              series_number: int, description: str, complete: bool,
              library: Sequence[Dataset] = ()) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 report with the device observer, as an UNVERIFIED Comprehensive 3D SR with
    deterministic UIDs; ``evidence[0]`` gives patient, study, date and time; ``library``: the
    images its measurements were made on (the TID 1600 Image Library)."""
    report = hd.sr.MeasurementReport(observation_context=observation_context(identity),
                                     procedure_reported=PROCEDURE, imaging_measurements=list(groups),
                                     referenced_images=list(library) or None)
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(evidence), content=report[0],
        series_instance_uid=identity.uid(kind, "series"), series_number=series_number,
        sop_instance_uid=identity.uid(kind, "instance"), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=complete, is_final=False, is_verified=False,
        series_description=description,
    )
    identity.add_algorithms(sr)
    identity.pin(sr, kind, evidence[0])
    return sr
