"""The protocol rule over many header variants (no network, no database)."""

from __future__ import annotations

import math

import pytest

from dicomnode.config import ProtocolConfig
from dicomnode.protocol import Outcome, SliceInfo, axial_angle_deg, evaluate, is_post_contrast, is_vibe_family

MR = "1.2.840.10008.5.1.4.1.1.4"
CFG = ProtocolConfig()
VIBE = {
    "Modality": "MR",
    "SeriesDescription": "t1_vibe_fs_tra_post",
    "MRAcquisitionType": "3D",
    "ScanningSequence": "GR",
    "SequenceName": "*fl3d1",
    "ContrastBolusAgent": "Gd-DTPA",
}


def axial(tilt_deg: float = 0.0) -> list[float]:
    t = math.radians(tilt_deg)
    return [1.0, 0.0, 0.0, 0.0, math.cos(t), math.sin(t)]


def stack(n: int = 12, spacing: float = 3.0, tilt: float = 0.0, phases: int = 1,
          positions: list[float] | None = None, thickness: float = 3.0) -> list[SliceInfo]:
    orient = axial(tilt)
    t = math.radians(tilt)
    normal = (0.0, -math.sin(t), math.cos(t))
    dists = positions if positions is not None else [k * spacing for k in range(n)]
    out = []
    for phase in range(1, phases + 1):
        for d in dists:
            out.append(SliceInfo(
                position=[-120.0 + d * normal[0], -120.0 + d * normal[1], d * normal[2]],
                orientation=orient, pixel_spacing=[0.9, 0.9], slice_thickness=thickness,
                temporal_position=phase if phases > 1 else None, rows=256, columns=256))
    return out


def verdict(attrs: dict | None = None, slices: list[SliceInfo] | None = None, classes=(MR,)):  # noqa: ANN001, ANN201
    return evaluate(VIBE | (attrs or {}), classes, stack() if slices is None else slices, CFG)


def test_complete_single_phase_series() -> None:
    v = verdict()
    assert v.outcome is Outcome.COMPLETE and v.phases == 1


@pytest.mark.parametrize("tilt", [-15.0, 0.0, 10.0, 29.0])
def test_oblique_axial_within_limit_is_complete(tilt: float) -> None:
    assert verdict(slices=stack(tilt=tilt)).outcome is Outcome.COMPLETE


@pytest.mark.parametrize("tilt", [31.0, 60.0])
def test_beyond_axial_limit_is_pending_for_orientation(tilt: float) -> None:
    v = verdict(slices=stack(tilt=tilt))
    assert v.outcome is Outcome.PENDING and "orientation" in v.reasons


def test_sagittal_t2_is_ignored() -> None:
    attrs = {"SeriesDescription": "t2_tse_sag", "MRAcquisitionType": "2D", "ScanningSequence": "SE",
             "SequenceName": "*tse2d1_15", "ContrastBolusAgent": None}
    sag = [SliceInfo(position=[k * 4.0, -100.0, 100.0], orientation=[0, 1, 0, 0, 0, -1],
                     rows=320, columns=320, pixel_spacing=[1, 1]) for k in range(15)]
    v = verdict(attrs, sag)
    assert v.outcome is Outcome.IGNORED and v.reason == "not_vibe_family"


def test_sagittal_vibe_is_wanted_but_refused_for_orientation() -> None:
    sag = [SliceInfo(position=[k * 3.0, -100.0, 100.0], orientation=[0, 1, 0, 0, 0, -1],
                     rows=256, columns=256, pixel_spacing=[1, 1], slice_thickness=3.0) for k in range(12)]
    v = verdict(slices=sag)
    assert v.outcome is Outcome.PENDING and v.reasons == ("orientation",)


def test_not_mr_is_ignored() -> None:
    assert verdict({"Modality": "CT"}).outcome is Outcome.IGNORED


def test_non_image_sop_class_is_ignored() -> None:
    v = verdict(classes=(MR, "1.2.840.10008.5.1.4.1.1.88.33"))
    assert v.outcome is Outcome.IGNORED and v.reason == "not_mr_image"


@pytest.mark.parametrize("attrs", [
    {"MRAcquisitionType": None, "ScanningSequence": None, "SequenceName": None,
     "SeriesDescription": "AX LAVA+C"},  # GE, recognised by its description
    {"MRAcquisitionType": None, "SequenceName": None, "SeriesDescription": "T1 THRIVE post"},  # Philips
    {"MRAcquisitionType": "3D", "ScanningSequence": ["GR", "IR"], "SeriesDescription": "ax"},
    {"MRAcquisitionType": "2D", "ScanningSequence": "GR", "SequenceName": "*fl3d1_ns",
     "SeriesDescription": "dyn"},
])
def test_vendor_variants_of_the_vibe_family(attrs: dict) -> None:
    assert verdict(attrs).outcome is Outcome.COMPLETE


@pytest.mark.parametrize("description", ["t1_vibe_fs_tra_post", "AX T1 +C", "vibe CE", "T1 GD tra", "km vibe"])
def test_contrast_from_description_when_agent_absent(description: str) -> None:
    assert verdict({"ContrastBolusAgent": None, "SeriesDescription": description}).outcome is Outcome.COMPLETE


def test_no_contrast_is_pending() -> None:
    v = verdict({"ContrastBolusAgent": "", "SeriesDescription": "t1_vibe_fs_tra"})
    assert v.outcome is Outcome.PENDING and v.reasons == ("no_contrast",)


def test_eleven_slices_is_pending_for_count() -> None:
    v = verdict(slices=stack(n=11))
    assert v.outcome is Outcome.PENDING and v.reasons == ("slice_count",)


def test_thirteen_slices_is_pending_for_count() -> None:
    assert verdict(slices=stack(n=13)).reasons == ("slice_count",)


def test_duplicate_position_is_refused() -> None:
    dists = [k * 3.0 for k in range(11)] + [15.0]
    v = verdict(slices=stack(positions=dists))
    assert v.outcome is Outcome.PENDING and "duplicate_position" in v.reasons


def test_gap_is_refused() -> None:
    dists = [k * 3.0 for k in range(6)] + [k * 3.0 for k in range(7, 13)]
    assert "gap" in verdict(slices=stack(positions=dists)).reasons


def test_uneven_spacing_is_refused() -> None:
    dists = [0.0, 3.0, 6.0, 9.0, 12.0, 15.4, 18.0, 21.0, 24.0, 27.0, 30.0, 33.0]
    assert "uneven_spacing" in verdict(slices=stack(positions=dists)).reasons


def test_spacing_larger_than_thickness_is_a_gap() -> None:
    assert "gap" in verdict(slices=stack(spacing=6.0, thickness=3.0)).reasons


def test_dynamic_series_complete_with_all_phases() -> None:
    v = verdict({"NumberOfTemporalPositions": 5}, stack(phases=5))
    assert v.outcome is Outcome.COMPLETE and v.phases == 5


def test_dynamic_series_missing_a_phase() -> None:
    slices = [s for s in stack(phases=5) if s.temporal_position != 5]
    v = verdict({"NumberOfTemporalPositions": 5}, slices)
    assert v.outcome is Outcome.PENDING and "phase_count" in v.reasons


def test_dynamic_series_with_a_short_phase() -> None:
    slices = stack(phases=3)[:-1]
    v = verdict({"NumberOfTemporalPositions": 3}, slices)
    assert v.reasons == ("slice_count",)


def test_missing_geometry() -> None:
    slices = stack()
    slices[3] = SliceInfo(position=None, orientation=axial())
    assert verdict(slices=slices).reasons == ("missing_geometry",)


def test_mixed_matrix_is_inconsistent() -> None:
    slices = stack()
    s = slices[4]
    slices[4] = SliceInfo(position=s.position, orientation=s.orientation, pixel_spacing=s.pixel_spacing,
                          slice_thickness=3.0, rows=512, columns=512)
    assert verdict(slices=slices).reasons == ("inconsistent_geometry",)


def test_configurable_slice_count() -> None:
    cfg = ProtocolConfig(slices_per_phase=20)
    assert evaluate(VIBE, (MR,), stack(n=20), cfg).outcome is Outcome.COMPLETE


def test_axial_angle() -> None:
    assert axial_angle_deg(axial(0)) == pytest.approx(0)
    assert axial_angle_deg(axial(15)) == pytest.approx(15)
    assert axial_angle_deg([0, 1, 0, 0, 0, -1]) == pytest.approx(90)
    assert axial_angle_deg([1, 0, 0, 1, 0, 0]) is None


BARE = {"MRAcquisitionType": None, "ScanningSequence": None, "SequenceName": None, "SeriesDescription": "ax"}


@pytest.mark.parametrize("attrs", [
    {"MRAcquisitionType": "3D", "ScanningSequence": "GR"},
    {"MRAcquisitionType": "3d", "ScanningSequence": "gr"},
    {"MRAcquisitionType": "3D", "ScanningSequence": ["IR", "GR"]},
    {"MRAcquisitionType": "3D", "ScanningSequence": "SE\\GR"},
    {"MRAcquisitionType": "2D", "ScanningSequence": "GR", "SequenceName": "*FL3D1"},
    {"MRAcquisitionType": "2D", "ScanningSequence": ["IR", "GR"], "SequenceName": "*fl3d1"},
    {"SeriesDescription": "AX LAVA+C"},
    {"SeriesDescription": "t1_VIBE_tra"},
])
def test_recognised_as_vibe_family(attrs: dict) -> None:
    assert is_vibe_family(BARE | attrs, CFG)


@pytest.mark.parametrize("attrs", [
    {},
    {"MRAcquisitionType": "3D", "ScanningSequence": "SE"},
    {"MRAcquisitionType": "3D", "ScanningSequence": ["SE", "IR"]},
    {"MRAcquisitionType": "2D", "ScanningSequence": "GR"},
    {"MRAcquisitionType": "2D", "ScanningSequence": "SE", "SequenceName": "*fl3d1"},
    {"MRAcquisitionType": "2D", "ScanningSequence": "GR", "SequenceName": "*tse2d1_15"},
])
def test_not_vibe_family(attrs: dict) -> None:
    assert not is_vibe_family(BARE | attrs, CFG)


@pytest.mark.parametrize(("agent", "description", "expected"), [
    ("Gd-DTPA", "t1_vibe_tra", True),
    (["Gd", "DTPA"], "t1_vibe_tra", True),
    ("  ", "t1_vibe_tra", False),
    (None, "t1_vibe_tra", False),
    (None, "T1 VIBE POST", True),
])
def test_post_contrast_from_the_agent_or_the_description(agent: object, description: str, expected: bool) -> None:
    attrs = {"ContrastBolusAgent": agent, "SeriesDescription": description}
    assert is_post_contrast(attrs, CFG) is expected


def test_the_modality_is_matched_in_any_case() -> None:
    assert verdict({"Modality": "mr"}).outcome is Outcome.COMPLETE


def test_enhanced_mr_images_are_analysed() -> None:
    assert verdict(classes=("1.2.840.10008.5.1.4.1.1.4.1",)).outcome is Outcome.COMPLETE


def test_a_series_of_classic_and_enhanced_mr_images_is_analysed() -> None:
    assert verdict(classes=(MR, "1.2.840.10008.5.1.4.1.1.4.1")).outcome is Outcome.COMPLETE


def test_not_mr_names_the_modality_and_the_sop_class_count() -> None:
    v = verdict({"Modality": "CT"}, classes=("1.2.840.10008.5.1.4.1.1.2", MR))
    assert v.reasons == ("not_mr_image",) and v.detail == "modality CT, 2 SOP class(es)"


def test_no_modality_and_no_sop_class_is_ignored() -> None:
    v = verdict({"Modality": None}, classes=())
    assert v.outcome is Outcome.IGNORED and v.detail == "modality absent, 0 SOP class(es)"


def test_an_mr_series_without_sop_classes_is_ignored() -> None:
    assert verdict(classes=()).reasons == ("not_mr_image",)


def test_not_vibe_family_explains_itself() -> None:
    v = verdict(BARE)
    assert v.reasons == ("not_vibe_family",) and v.detail == "not a 3D gradient-echo (VIBE-family) acquisition"


def test_the_axial_limit_itself_is_accepted() -> None:
    limit = axial_angle_deg(axial(20.0))
    assert limit is not None
    cfg = ProtocolConfig(max_axial_angle_deg=limit)
    assert evaluate(VIBE, (MR,), stack(tilt=20.0), cfg).outcome is Outcome.COMPLETE


def test_orientation_detail_gives_the_angle() -> None:
    v = verdict(slices=stack(tilt=45.0))
    assert v.reasons == ("orientation",) and v.detail == "slice normal 45.0 deg from axial"


def test_the_orientation_is_read_from_the_first_slice_that_has_one() -> None:
    slices = stack(tilt=45.0)
    slices[0] = SliceInfo(position=slices[0].position, orientation=None)
    assert verdict(slices=slices).reasons == ("orientation", "missing_geometry")


def test_no_orientation_at_all_is_unknown_orientation() -> None:
    slices = [SliceInfo(position=s.position, orientation=None) for s in stack()]
    v = verdict(slices=slices)
    assert v.reasons == ("orientation", "missing_geometry")
    assert v.detail == "orientation unknown; an instance lacks ImagePositionPatient/Orientation"


def test_every_reason_and_detail_is_kept_in_order() -> None:
    v = verdict({"ContrastBolusAgent": None, "SeriesDescription": "t1_vibe_tra"}, stack(n=11, tilt=45.0))
    assert v.reasons == ("orientation", "no_contrast", "slice_count") and v.reason == "orientation"
    assert v.detail == ("slice normal 45.0 deg from axial; "
                        "no ContrastBolusAgent and no contrast pattern in the description; phase 1: 11 of 12 slices")


def test_a_complete_verdict_has_no_reason_and_counts_phases_and_slices() -> None:
    v = verdict({"NumberOfTemporalPositions": 5}, stack(phases=5))
    assert v.reasons == () and v.reason == ""
    assert v.detail == "5 phase(s) x 12 slices"


@pytest.mark.parametrize("value", [None, "", "abc", [1, 2]])
def test_an_unusable_number_of_temporal_positions_means_one(value: object) -> None:
    v = verdict({"NumberOfTemporalPositions": value})
    assert v.outcome is Outcome.COMPLETE and v.phases == 1


def test_the_number_of_temporal_positions_may_be_text() -> None:
    v = verdict({"NumberOfTemporalPositions": "2"}, stack(phases=2))
    assert v.outcome is Outcome.COMPLETE and v.phases == 2
    assert verdict({"NumberOfTemporalPositions": "2"}).reasons == ("phase_count",)


def test_feet_first_and_head_first_axial_slices_are_both_axial() -> None:
    assert axial_angle_deg([1, 0, 0, 0, -1, 0]) == pytest.approx(0)
    assert axial_angle_deg([1, 0, 0, 0, 0, 1]) == pytest.approx(90)
