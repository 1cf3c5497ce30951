"""The protocol rule's geometry checks: slice counts, spacing, gaps, phases and frames (no network, no database)."""

from __future__ import annotations

import dataclasses

import pytest

from dicomnode.config import ProtocolConfig
from dicomnode.protocol import Outcome, SliceInfo, evaluate, slice_normal
from tests.unit.test_protocol import MR, VIBE, stack, verdict


def evenly(n: int = 12, spacing: float = 3.0) -> list[float]:
    return [k * spacing for k in range(n)]


def phased(*phase_positions: list[float]) -> list[SliceInfo]:
    """One axial stack per temporal phase (numbered from 1), each at its own positions."""
    out: list[SliceInfo] = []
    for number, positions in enumerate(phase_positions, start=1):
        out += [dataclasses.replace(s, temporal_position=number) for s in stack(positions=positions)]
    return out


def test_slices_in_any_order_are_complete() -> None:
    assert verdict(slices=stack()[::-1]).outcome is Outcome.COMPLETE


def test_the_slice_count_detail_names_phase_and_counts() -> None:
    v = verdict(slices=stack(n=11))
    assert v.detail == "phase 1: 11 of 12 slices"


def test_thin_slices_a_millimetre_apart_are_complete() -> None:
    assert verdict(slices=stack(spacing=1.0, thickness=1.0)).outcome is Outcome.COMPLETE


def test_slices_a_thousandth_of_a_millimetre_apart_are_not_duplicates() -> None:
    """Duplicates are positions less than 0.001 mm apart; at exactly 0.001 mm the step is merely uneven."""
    v = verdict(slices=stack(positions=[0.0, 0.001] + [k * 3.0 for k in range(1, 11)]))
    assert v.reasons == ("uneven_spacing",)


def test_a_duplicate_is_reported_instead_of_a_gap() -> None:
    v = verdict(slices=stack(positions=evenly(11) + [15.0005]))
    assert v.reasons == ("duplicate_position",) and v.detail == "phase 1: two slices at the same position"


def test_a_gap_names_its_size_and_the_usual_spacing() -> None:
    v = verdict(slices=stack(positions=evenly(6) + [k * 3.0 for k in range(7, 13)]))
    assert v.reasons == ("gap",) and v.detail == "phase 1: a gap of 6.00 mm (spacing 3.00 mm)"


def test_a_step_of_exactly_one_and_a_half_spacings_is_uneven_not_a_gap() -> None:
    v = verdict(slices=stack(positions=evenly(6) + [k * 3.0 + 1.5 for k in range(6, 12)]))  # one step of 4.5
    assert v.reasons == ("uneven_spacing",) and v.detail == "phase 1: spacing varies around 3.00 mm"


def test_uneven_spacing_is_reported_around_the_median_step() -> None:
    steps = [2.0, 3.3, 2.6, 3.1, 2.7, 3.4, 2.8, 3.2, 2.9, 3.5, 3.0]  # median 3.0; others 2.8 and 3.1 nearby
    positions = [sum(steps[:k]) for k in range(12)]
    v = verdict(slices=stack(positions=positions, thickness=3.0))
    assert v.reasons == ("uneven_spacing",) and v.detail == "phase 1: spacing varies around 3.00 mm"


def test_a_slice_slightly_off_within_the_tolerance_is_complete() -> None:
    """One slice 0.2 mm off (steps of 2.8 and 3.2 mm, within 10 % of 3 mm) is still even enough."""
    positions = evenly()
    positions[5] += 0.2
    assert verdict(slices=stack(positions=positions)).outcome is Outcome.COMPLETE


def test_spacing_limits_are_inclusive() -> None:
    """A step of exactly 1.5 median spacings, deviating by exactly the tolerance, is accepted."""
    cfg = ProtocolConfig(spacing_tolerance=0.5)
    positions = evenly(6, 4.0) + [k * 4.0 + 2.0 for k in range(6, 12)]  # one step of 6 mm among 4 mm steps
    v = evaluate(VIBE, (MR,), stack(positions=positions, thickness=4.0), cfg)
    assert v.outcome is Outcome.COMPLETE


def test_spacing_of_exactly_one_and_a_half_thicknesses_is_contiguous_enough() -> None:
    assert verdict(slices=stack(spacing=4.5, thickness=3.0)).outcome is Outcome.COMPLETE


def test_overlapping_slices_are_complete() -> None:
    assert verdict(slices=stack(spacing=1.5, thickness=3.0)).outcome is Outcome.COMPLETE


def test_spacing_wider_than_the_thickness_names_both() -> None:
    v = verdict(slices=stack(spacing=6.0, thickness=3.0))
    assert v.reasons == ("gap",) and v.detail == "spacing 6.00 mm against slice thickness 3.00 mm"


def test_a_gap_found_twice_is_one_reason_with_both_details() -> None:
    v = verdict(slices=stack(positions=evenly(6, 6.0) + [k * 6.0 for k in range(7, 13)], thickness=3.0))
    assert v.reasons == ("gap",)
    assert v.detail == "phase 1: a gap of 12.00 mm (spacing 6.00 mm); spacing 6.00 mm against slice thickness 3.00 mm"


def test_without_a_slice_thickness_only_the_spacing_is_checked() -> None:
    slices = [dataclasses.replace(s, slice_thickness=None) for s in stack(spacing=6.0)]
    assert verdict(slices=slices).outcome is Outcome.COMPLETE


def test_a_one_slice_protocol_has_no_spacing_to_check() -> None:
    cfg = ProtocolConfig(slices_per_phase=1)
    v = evaluate(VIBE, (MR,), stack(n=1, thickness=0.5), cfg)
    assert v.outcome is Outcome.COMPLETE and v.detail == "1 phase(s) x 1 slices"


def test_phases_beyond_the_header_count_are_all_required_complete() -> None:
    """Without NumberOfTemporalPositions, the phases actually present set the count."""
    v = verdict(slices=phased(evenly(), evenly()))
    assert v.outcome is Outcome.COMPLETE and v.phases == 2 and v.detail == "2 phase(s) x 12 slices"


def test_a_missing_phase_names_how_many_are_present() -> None:
    slices = [s for s in stack(phases=5) if s.temporal_position != 5]
    v = verdict({"NumberOfTemporalPositions": 5}, slices)
    assert v.reasons == ("phase_count",) and v.detail == "4 of 5 temporal phases present"


def test_phases_must_be_numbered_from_one() -> None:
    slices = phased(evenly(), evenly(), evenly())
    slices = [dataclasses.replace(s, temporal_position=4) if s.temporal_position == 3 else s for s in slices]
    v = verdict({"NumberOfTemporalPositions": 3}, slices)
    assert v.reasons == ("phase_count",) and v.detail == "3 of 3 temporal phases present"


def test_phases_without_a_first_one_are_counted_not_compared() -> None:
    """Phases 2 and 3 without a phase 1: a numbering problem, with no phase 1 to align the others to."""
    slices = [dataclasses.replace(s, temporal_position=(s.temporal_position or 0) + 1)
              for s in phased(evenly(), evenly())]
    v = verdict({"NumberOfTemporalPositions": 2}, slices)
    assert v.reasons == ("phase_count",) and v.detail == "2 of 2 temporal phases present"


def test_short_phases_are_reported_in_phase_order() -> None:
    slices = phased(evenly(), evenly(10), evenly(11))[::-1]
    v = verdict({"NumberOfTemporalPositions": 3}, slices)
    assert v.reasons == ("slice_count",)
    assert v.detail == "phase 2: 10 of 12 slices; phase 3: 11 of 12 slices"


def test_a_phase_half_a_millimetre_off_is_inconsistent() -> None:
    v = verdict({"NumberOfTemporalPositions": 2}, phased(evenly(), [p + 0.5 for p in evenly()]))
    assert v.reasons == ("inconsistent_geometry",) and v.detail == "phase 2 is not at the positions of phase 1"


def test_a_later_phase_at_other_positions_is_inconsistent() -> None:
    shifted = [p + 1.5 for p in evenly()]
    v = verdict({"NumberOfTemporalPositions": 3}, phased(evenly(), evenly(), shifted))
    assert v.reasons == ("inconsistent_geometry",) and v.detail == "phase 3 is not at the positions of phase 1"


def test_phases_within_a_tenth_of_a_millimetre_are_aligned() -> None:
    nudged = [0.1] + evenly()[1:]  # the first slice exactly 0.1 mm off
    v = verdict({"NumberOfTemporalPositions": 2}, phased(evenly(), nudged))
    assert v.outcome is Outcome.COMPLETE and v.phases == 2


def test_alignment_is_not_judged_while_a_phase_is_otherwise_wrong() -> None:
    shifted = [p + 1.5 for p in evenly(11)] + [40.0]
    v = verdict({"NumberOfTemporalPositions": 2}, phased(evenly(), shifted))
    assert "inconsistent_geometry" not in v.reasons


@pytest.mark.parametrize("change", [
    {"rows": 320},
    {"columns": 320},
    {"pixel_spacing": [0.9, 0.8]},
    {"orientation": [1.0, 0.0, 0.0, 0.0, 0.995, 0.0998]},
])
def test_one_slice_of_another_frame_is_inconsistent(change: dict) -> None:
    slices = stack()
    slices[7] = dataclasses.replace(slices[7], **change)
    v = verdict(slices=slices)
    assert v.reasons == ("inconsistent_geometry",) and v.detail == "orientation, matrix or pixel spacing differ"


def test_cosines_within_a_thousandth_are_one_frame() -> None:
    slices = stack()
    slices[7] = dataclasses.replace(slices[7], orientation=[1.0, 0.0, 0.0, 0.0, 1.0, 0.001])
    assert verdict(slices=slices).outcome is Outcome.COMPLETE


@pytest.mark.parametrize("index", [0, 7])
def test_a_slice_without_pixel_spacing_does_not_break_the_frame(index: int) -> None:
    slices = stack()
    slices[index] = dataclasses.replace(slices[index], pixel_spacing=None)
    assert verdict(slices=slices).outcome is Outcome.COMPLETE


@pytest.mark.parametrize("change", [{"position": None}, {"orientation": None}])
def test_a_slice_without_position_or_orientation_is_missing_geometry(change: dict) -> None:
    slices = stack()
    slices[0] = dataclasses.replace(slices[0], **change)
    v = verdict(slices=slices)
    assert v.reasons == ("missing_geometry",) and v.detail == "an instance lacks ImagePositionPatient/Orientation"


def test_parallel_cosines_are_inconsistent_and_of_unknown_orientation() -> None:
    slices = [dataclasses.replace(s, orientation=[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]) for s in stack()]
    v = verdict(slices=slices)
    assert v.reasons == ("orientation", "inconsistent_geometry")
    assert v.detail == "orientation unknown; row and column cosines are parallel"


def test_slice_normal_is_the_unit_cross_product_of_the_cosines() -> None:
    row, column = [2 / 3, 2 / 3, 1 / 3], [-2 / 3, 1 / 3, 2 / 3]
    assert slice_normal(row + column) == pytest.approx((1 / 3, -2 / 3, 2 / 3))
    assert slice_normal([2 * v for v in row] + [3 * v for v in column]) == pytest.approx((1 / 3, -2 / 3, 2 / 3))
    assert slice_normal(column + row) == pytest.approx((-1 / 3, 2 / 3, -2 / 3))


def test_nearly_parallel_cosines_still_have_a_normal() -> None:
    """Cosines are parallel only when their cross product is shorter than 1e-6."""
    n = slice_normal([1.0, 0.0, 0.0, 1.0, 1e-6, 0.0])
    assert n == pytest.approx((0.0, 0.0, 1.0))
