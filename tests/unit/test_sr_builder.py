"""The TID 1500 SR built from a small hand-made analysis: every value in the content tree.

Six 48 x 48 slices (0.77 x 0.61 mm pixels, 3 mm slices) with two hand-made lesions; the SR is
written and read back with highdicom's reader, as a viewer or archive would see it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any, cast

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import MRImageStorage

from pipeline.classification import Classification
from pipeline.lesions import Lesion, find_lesions
from pipeline.outputs import sr as sr_module
from pipeline.outputs.identity import ResultIdentity
from pipeline.outputs.seg import build_seg
from pipeline.outputs.sr import (
    BIDIRECTIONAL_TRACKING,
    INDETERMINATE,
    INDETERMINATE_REASON,
    LONG_AXIS,
    PRIMARY_BONE_MALIGNANCY,
    SHORT_AXIS,
    build_measurement_sr,
)
from pipeline.planar import measure_planar
from pipeline.plausibility import IndeterminateReason, Verdict
from pipeline.uids import derived_uid
from pipeline.volume import Volume

SPACING = (3.0, 0.77, 0.61)  # slice, row, column (mm)
SLICES, SIZE = 6, 48


def _header(k: int) -> Dataset:
    """Slice ``k``'s header, as the volume keeps it (no pixel data)."""
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = derived_uid("test-sr", "mr", k)
    ds.StudyInstanceUID = derived_uid("test-sr", "study")
    ds.SeriesInstanceUID = derived_uid("test-sr", "series")
    ds.FrameOfReferenceUID = derived_uid("test-sr", "frame")
    ds.Modality, ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "MR", "TEST^SR", "SR1", "", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101112", "1", "A1"
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber, ds.InstanceNumber = 5, k + 1
    ds.Rows = ds.Columns = SIZE
    ds.PixelSpacing, ds.SliceThickness = list(SPACING[1:]), SPACING[0]
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, SPACING[0] * k]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


@dataclass(frozen=True)
class Case:
    source: list[Dataset]
    seg: Dataset
    lesions: list[Lesion]
    identity: ResultIdentity


@pytest.fixture(scope="module")
def case() -> Case:
    """The inputs, shared (each test builds its SR, so that mutmut maps it to the builder): two
    lesions, the larger (index 1) largest on slice 3, the smaller (index 2) on slices 0-1."""
    source = [_header(k) for k in range(SLICES)]
    volume = Volume(pixels=np.zeros((1, SLICES, SIZE, SIZE), dtype=np.float32),
                    positions=np.array([[0.0, 0.0, SPACING[0] * k] for k in range(SLICES)]),
                    orientation=(1, 0, 0, 0, 1, 0), spacing=SPACING,
                    sop_instance_uids=(tuple(str(ds.SOPInstanceUID) for ds in source),),
                    study_uid=str(source[0].StudyInstanceUID), series_uid=str(source[0].SeriesInstanceUID))
    mask = np.zeros((SLICES, SIZE, SIZE), dtype=bool)
    mask[1:5, 10:20, 10:26] = True
    mask[3, 14:18, 6:30] = True  # slice 3 is the largest
    mask[0:2, 36:40, 36:42] = True
    image = np.where(mask, 250.0, 100.0).astype(np.float32)
    image[mask & (np.arange(SIZE)[None, None, :] >= 20)] = 310.0
    lesions = find_lesions(mask, volume, image, marrow_level=97.0)
    identity = ResultIdentity(source_series_uid=volume.series_uid, unet_sha256="ab" * 32, classifier_sha256="cd" * 32,
                              analysed=True)
    seg = build_seg(source, unet_mask=mask, rg_mask=mask, identity=identity)
    return Case(source, seg, lesions, identity)


def _read(sr: Dataset) -> hd.sr.Comprehensive3DSR:
    buffer = io.BytesIO()
    sr.save_as(buffer)
    buffer.seek(0)
    return cast(hd.sr.Comprehensive3DSR, hd.sr.srread(buffer))


def _report(sr: hd.sr.Comprehensive3DSR) -> Any:
    """The content tree as highdicom's reader parses it (a TID 1500 Measurement Report; typed
    Any, as highdicom types its groups' optional parts as optional even where the template has them)."""
    return sr.content


def _sr(case: Case, **kwargs: object) -> hd.sr.Comprehensive3DSR:
    options: dict = {"lesion_segment": 2, "agreement_dice": None, "identity": case.identity} | kwargs
    return _read(build_measurement_sr(case.source, case.seg, case.lesions, **options))


CLASSIFICATION = Classification(probability_metastasis=0.812345, sha256="cd" * 32, lesion_index=2,
                                channels=("peak",))


@pytest.fixture
def full(case: Case) -> hd.sr.Comprehensive3DSR:
    """Every optional input given: classification (of lesion 2), radiomics, Dice and overlap, a plain verdict."""
    return _sr(case, agreement_dice=0.876543, agreement_overlap=0.912345, classification=CLASSIFICATION,
               radiomics={"rad_score": 1.25, "probability_metastasis": 0.75, "sha256": "ef" * 32},
               verdict=Verdict(True, ()))


@pytest.fixture
def bare(case: Case) -> hd.sr.Comprehensive3DSR:
    """No classifier, no radiomics, no Dice."""
    return _sr(case)


def _items(node: Dataset | list, code: Code) -> list[Dataset]:
    """Content items named ``code`` anywhere below ``node`` (a content item or a sequence of them)."""
    found = []
    for item in node.get("ContentSequence", []) if isinstance(node, Dataset) else node:
        concept = item.ConceptNameCodeSequence[0]
        if (concept.CodeValue, concept.CodingSchemeDesignator) == (code.value, code.scheme_designator):
            found.append(item)
        found.extend(_items(item, code))
    return found


def _values(group: Any) -> dict[str, tuple[float, str]]:
    return {m.name.meaning: (float(m.value), m.unit.value) for m in group.get_measurements()}


def _study_level(sr: hd.sr.Comprehensive3DSR) -> Any:
    (group,) = [g for g in _report(sr).get_image_measurement_groups()
                if not g.tracking_identifier.startswith(BIDIRECTIONAL_TRACKING)]
    return group


def _evaluations(group: Any) -> list[tuple[str, str]]:
    return [(e.name.value, e.value.value) for e in group.get_qualitative_evaluations()]


def test_the_hand_made_lesions(case: Case) -> None:
    assert [(les.index, les.voxels, les.largest_slice) for les in case.lesions] == [(1, 672, 3), (2, 48, 0)]


def test_each_lesion_has_a_volumetric_group_with_its_measurements(case: Case, bare: hd.sr.Comprehensive3DSR) -> None:
    """Volume (mm3, 1 decimal), maximum 3D diameter (mm, 1 decimal), mean and peak enhancement
    (ratio, 3 decimals), on the lesion's tracking identifier and UID."""
    groups = _report(bare).get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Lesion 1", "Lesion 2"]
    assert [g.tracking_uid for g in groups] == [case.identity.uid("lesion", "1"), case.identity.uid("lesion", "2")]
    for group, lesion in zip(groups, case.lesions, strict=True):
        assert _values(group) == {
            "Volume": (round(lesion.voxels * 3.0 * 0.77 * 0.61, 1), "mm3"),
            "Diameter": (round(lesion.max_diameter_mm, 1), "mm"),
            "Mean enhancement ratio to normal marrow": (round(lesion.mean_enhancement, 3), "1"),
            "Peak enhancement ratio to normal marrow": (round(lesion.peak_enhancement, 3), "1")}
        (diameter,) = [m for m in group.get_measurements() if m.name == codes.SCT.Diameter]
        assert diameter.derivation == codes.cid7464.Maximum
        assert group.finding_type == codes.SCT.Neoplasm
        assert [site.value for site in group.finding_sites] == [codes.SCT.BoneStructureOfSpine]
    assert _values(groups[0])["Volume"] == (946.9, "mm3")  # 672 voxels of 1.40910 mm3
    assert _values(groups[1])["Peak enhancement ratio to normal marrow"] == (round(310 / 97, 3), "1")


def test_volumetric_groups_reference_the_lesion_segment_of_the_seg(case: Case, bare: hd.sr.Comprehensive3DSR) -> None:
    for group in _report(bare).get_volumetric_roi_measurement_groups():
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == case.seg.SOPInstanceUID
        assert ref.referenced_sop_class_uid == case.seg.SOPClassUID
        assert list(ref.referenced_segment_numbers) == [2]
        assert ref.source_series_for_segmentation.value == case.source[0].SeriesInstanceUID


def test_groups_name_the_algorithm_with_the_model_version(case: Case, bare: hd.sr.Comprehensive3DSR) -> None:
    """TID 4019: the release as the Algorithm Version (LO, 64 characters at most), each model's
    checksum as an Algorithm Parameter, so no part of the version is cut off."""
    content = _report(bare)
    groups = [*content.get_volumetric_roi_measurement_groups(), *content.get_planar_roi_measurement_groups(),
              *content.get_image_measurement_groups()]
    assert len(groups) == 7
    for group in groups:
        assert {item.TextValue for item in _items(group, codes.DCM.AlgorithmName)} == {"spinenode"}
        release, *checksums = case.identity.software_versions
        assert [item.TextValue for item in _items(group, codes.DCM.AlgorithmVersion)] == [release]
        assert [item.TextValue for item in _items(group, codes.DCM.AlgorithmParameters)] == checksums
        assert len(checksums) == 2 and all(" sha256 " in c for c in checksums)


def test_each_lesion_is_outlined_on_its_largest_slice_with_its_area(case: Case,
                                                                     bare: hd.sr.Comprehensive3DSR) -> None:
    """TID 1410: a closed POLYLINE on the source image where the lesion is largest, and its area
    in mm2 (1 decimal); the outline shares the lesion's tracking identifier and UID."""
    groups = _report(bare).get_planar_roi_measurement_groups()
    assert [(g.tracking_identifier, g.tracking_uid) for g in groups] == [
        ("Lesion 1", case.identity.uid("lesion", "1")), ("Lesion 2", case.identity.uid("lesion", "2"))]
    for group, lesion in zip(groups, case.lesions, strict=True):
        planar = measure_planar(lesion.mask[lesion.largest_slice], (0.77, 0.61))
        image = case.source[lesion.largest_slice]
        assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        np.testing.assert_allclose(group.roi.value, planar.outline, atol=1e-4)
        (reference,) = group.roi.ContentSequence[0].ReferencedSOPSequence
        assert (reference.ReferencedSOPInstanceUID, reference.ReferencedSOPClassUID) == (image.SOPInstanceUID,
                                                                                        image.SOPClassUID)
        assert _values(group) == {"Area": (round(planar.area_mm2, 1), "mm2")}
        assert group.finding_type == codes.SCT.Neoplasm


def test_each_lesion_has_a_long_and_short_axis_a_viewer_draws_as_bidirectional(
        case: Case, bare: hd.sr.Comprehensive3DSR) -> None:
    """TID 1501: long and short axis in mm (1 decimal), each from a two-point POLYLINE on the
    largest slice, under their own UID and an identifier OHIF reads as its Bidirectional tool."""
    groups = [g for g in _report(bare).get_image_measurement_groups()
              if g.tracking_identifier.startswith(BIDIRECTIONAL_TRACKING)]
    assert [(g.tracking_identifier, g.tracking_uid) for g in groups] == [
        ("Cornerstone3DTools@^0.1.0:Bidirectional:Lesion 1", case.identity.uid("lesion-axes", "1")),
        ("Cornerstone3DTools@^0.1.0:Bidirectional:Lesion 2", case.identity.uid("lesion-axes", "2"))]
    for group, lesion in zip(groups, case.lesions, strict=True):
        planar = measure_planar(lesion.mask[lesion.largest_slice], (0.77, 0.61))
        assert planar.short_axis is not None and planar.short_axis_mm is not None
        long_axis, short_axis = group.get_measurements()
        assert (long_axis.name, short_axis.name) == (LONG_AXIS, SHORT_AXIS)
        assert [float(long_axis.value), float(short_axis.value)] == [round(planar.long_axis_mm, 1),
                                                                     round(planar.short_axis_mm, 1)]
        assert long_axis.unit == short_axis.unit == codes.UCUM.Millimeter
        for measurement, points in ((long_axis, planar.long_axis), (short_axis, planar.short_axis)):
            (scoord,) = measurement.referenced_coordinates
            assert scoord.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
            np.testing.assert_allclose(scoord.value, points, atol=1e-4)
            (image,) = scoord.ContentSequence
            assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == case.source[
                lesion.largest_slice].SOPInstanceUID
        assert group.finding_type == codes.SCT.Neoplasm


def test_a_lesion_without_a_short_axis_has_only_its_long_axis(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the planar measurement finds no perpendicular chord, only the long axis is reported."""
    lesion = case.lesions[1]
    planar = replace(measure_planar(lesion.mask[lesion.largest_slice], (0.77, 0.61)), short_axis=None,
                     short_axis_mm=None)
    monkeypatch.setattr(sr_module, "measure_planar", lambda mask, spacing: planar)
    sr = _read(build_measurement_sr(case.source, case.seg, [lesion], lesion_segment=1, agreement_dice=None,
                                    identity=case.identity))
    (axes,) = [g for g in _report(sr).get_image_measurement_groups()
               if g.tracking_identifier.startswith(BIDIRECTIONAL_TRACKING)]
    assert [(m.name, float(m.value)) for m in axes.get_measurements()] == [(LONG_AXIS, round(planar.long_axis_mm, 1))]


def test_a_short_axis_without_its_length_is_left_out(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    lesion = case.lesions[1]
    planar = replace(measure_planar(lesion.mask[lesion.largest_slice], (0.77, 0.61)), short_axis_mm=None)
    monkeypatch.setattr(sr_module, "measure_planar", lambda mask, spacing: planar)
    sr = _read(build_measurement_sr(case.source, case.seg, [lesion], lesion_segment=1, agreement_dice=None,
                                    identity=case.identity))
    (axes,) = [g for g in _report(sr).get_image_measurement_groups()
               if g.tracking_identifier.startswith(BIDIRECTIONAL_TRACKING)]
    assert [m.name for m in axes.get_measurements()] == [LONG_AXIS]


def test_study_level_finding_is_the_classifiers_on_the_lesion_it_classified(case: Case,
                                                                           full: hd.sr.Comprehensive3DSR) -> None:
    """The class is a finding on lesion 2 (the one classified here), with its probabilities,
    the Dice agreement and the overlap coefficient, the radiomics values and the intended use."""
    group = _study_level(full)
    assert (group.tracking_identifier, group.tracking_uid) == ("Lesion 2", case.identity.uid("lesion", "2"))
    assert group.finding_type == codes.SCT.BonyMetastasis
    assert [site.value for site in group.finding_sites] == [codes.SCT.BoneStructureOfSpine]
    assert _values(group) == {"3D classifier probability of spinal metastasis": (0.8123, "1"),
                              "Dice agreement of U-Net and region growing": (0.8765, "1"),
                              "Overlap coefficient of U-Net and region growing": (0.9123, "1"),
                              "Radiomics score (Rad-score)": (1.25, "1"),
                              "Radiomics model probability of spinal metastasis": (0.75, "1")}
    assert _evaluations(group) == [("INTENDED_USE", "RESEARCH_ONLY")]


def test_without_a_classifier_the_study_level_group_has_no_finding(case: Case, bare: hd.sr.Comprehensive3DSR) -> None:
    """Only the intended use, on the largest lesion; no finding, no site, no measurements."""
    group = _study_level(bare)
    assert (group.tracking_identifier, group.tracking_uid) == ("Lesion 1", case.identity.uid("lesion", "1"))
    assert group.finding_type is None and group.finding_sites == []
    assert group.get_measurements() == []
    assert _evaluations(group) == [("INTENDED_USE", "RESEARCH_ONLY")]


def test_without_a_verdict_the_classifiers_class_is_coded(case: Case) -> None:
    primary = replace(CLASSIFICATION, probability_metastasis=0.2)
    group = _study_level(_sr(case, classification=primary))
    assert group.finding_type == PRIMARY_BONE_MALIGNANCY
    assert [site.value for site in group.finding_sites] == [codes.SCT.BoneStructureOfSpine]
    assert _values(group) == {"3D classifier probability of spinal metastasis": (0.2, "1")}
    assert group.tracking_identifier == "Lesion 2"


def test_the_verdict_decides_the_finding_over_the_classifier(case: Case) -> None:
    """A plausibility verdict of "primary" is coded even when P(metastasis) is above 0.5."""
    group = _study_level(_sr(case, classification=CLASSIFICATION, verdict=Verdict(False, ())))
    assert group.finding_type == PRIMARY_BONE_MALIGNANCY


def test_an_indeterminate_verdict_codes_each_reason(case: Case) -> None:
    reasons = tuple(IndeterminateReason)
    group = _study_level(_sr(case, classification=CLASSIFICATION, verdict=Verdict(None, reasons)))
    assert group.finding_type == INDETERMINATE
    assert [site.value for site in group.finding_sites] == [codes.SCT.BoneStructureOfSpine]
    assert _evaluations(group) == [("INTENDED_USE", "RESEARCH_ONLY")] + [
        (INDETERMINATE_REASON.value, code) for code in (
            "OUTSIDE_BODY", "ENH_IMPLAUSIBLE", "SEG_DISAGREE", "PROB_UNCERTAIN", "MODELS_DISAGREE", "KINETIC_CONFLICT",
            "UNLIKE_TRAINING")]
    assert _values(group)["3D classifier probability of spinal metastasis"] == (0.8123, "1")  # still reported


def test_the_report_is_an_unverified_partial_comprehensive_3d_sr(case: Case, full: hd.sr.Comprehensive3DSR) -> None:
    assert full.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert (full.SeriesInstanceUID, full.SOPInstanceUID) == (case.identity.uid("sr", "series"),
                                                             case.identity.uid("sr", "instance"))
    assert (full.SeriesNumber, full.InstanceNumber) == (9702, 1)
    assert full.SeriesDescription == "AI lesion measurements (NOT FOR DIAGNOSIS)"
    assert full.Manufacturer == "spinenode project"
    assert (full.CompletionFlag, full.VerificationFlag) == ("PARTIAL", "UNVERIFIED")
    assert full.PreliminaryFlag == "PRELIMINARY"
    assert (full.StudyInstanceUID, full.PatientID) == (case.source[0].StudyInstanceUID, "SR1")
    assert (full.ContentDate, full.ContentTime) == ("20240102", "101112")  # pinned to the study's


def test_the_report_names_its_device_observer_and_procedure(case: Case, full: hd.sr.Comprehensive3DSR) -> None:
    root = full.ContentSequence
    assert _items(root, codes.DCM.ObserverType)[0].ConceptCodeSequence[0].CodeValue == codes.cid270.Device.value
    assert [i.UID for i in _items(root, codes.DCM.DeviceObserverUID)] == [case.identity.uid("device", "observer")]
    assert [i.TextValue for i in _items(root, codes.DCM.DeviceObserverName)] == ["spinenode"]
    assert [i.TextValue for i in _items(root, codes.DCM.DeviceObserverManufacturer)] == ["spinenode project"]
    assert [i.TextValue for i in _items(root, codes.DCM.DeviceObserverModelName)] == ["spinenode"]
    (procedure,) = _items(root, codes.DCM.ProcedureReported)
    assert procedure.ConceptCodeSequence[0].CodeValue == codes.LN.MRISpineReport.value


def test_the_report_lists_its_evidence_and_the_measured_images(case: Case, full: hd.sr.Comprehensive3DSR) -> None:
    """Evidence: every source image and the SEG; image library: the images a lesion lies on (0-4 of 6)."""
    evidence = {str(item.ReferencedSOPInstanceUID)
                for seq in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
                for study in full.get(seq, []) for series in study.ReferencedSeriesSequence
                for item in series.ReferencedSOPSequence}
    assert evidence == {str(ds.SOPInstanceUID) for ds in case.source} | {str(case.seg.SOPInstanceUID)}
    library = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
               for group in _items(full.ContentSequence, codes.DCM.ImageLibraryGroup)
               for item in group.ContentSequence if item.ValueType == "IMAGE"}
    assert library == {str(ds.SOPInstanceUID) for ds in case.source[:5]}


def test_the_report_names_each_algorithm_as_contributing_equipment(case: Case, full: hd.sr.Comprehensive3DSR) -> None:
    names = [item.ManufacturerModelName for item in full.ContributingEquipmentSequence
             if item.get("Manufacturer") == "spinenode project"]
    assert names == [a.model_name for a in case.identity.algorithms]


def test_the_same_analysis_gives_the_same_report(case: Case, full: hd.sr.Comprehensive3DSR) -> None:
    again = _sr(case, agreement_dice=0.876543, agreement_overlap=0.912345, classification=CLASSIFICATION,
                radiomics={"rad_score": 1.25, "probability_metastasis": 0.75, "sha256": "ef" * 32},
                verdict=Verdict(True, ()))
    assert again.SOPInstanceUID == full.SOPInstanceUID and again.ContentSequence == full.ContentSequence


def test_segment_numbers_follow_the_seg_order() -> None:
    """The SR's measurement groups reference a lesion source by the number ``build_seg`` gave it:
    the U-Net's segment first when it ran, region growing's alone otherwise."""
    from pipeline.analysis import LesionSource
    from pipeline.outputs.seg import segment_numbers

    assert segment_numbers(unet_ran=True) == {LesionSource.UNET: 1, LesionSource.REGION_GROWING: 2}
    assert segment_numbers(unet_ran=False) == {LesionSource.REGION_GROWING: 1}
