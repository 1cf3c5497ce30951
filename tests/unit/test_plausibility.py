"""The plausibility checks that decide between a coded finding and "indeterminate"."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.plausibility import IndeterminateReason, Limits, Verdict, assess, inside_fraction, keep_in_body, washout

GOOD = {"inside_body": 1.0, "peak_enhancement": 2.0, "agreement_dice": 0.8, "p_classifier": 0.9, "p_radiomics": 0.8}


def test_a_plausible_study_gets_its_class() -> None:
    assert assess(**GOOD) == Verdict(True, ())
    assert assess(**GOOD | {"p_classifier": 0.1, "p_radiomics": 0.2}) == Verdict(False, ())


@pytest.mark.parametrize(("change", "reason"), [
    ({"inside_body": 0.49}, IndeterminateReason.LESION_OUTSIDE_VERTEBRAL_BODY),
    ({"peak_enhancement": 1.29}, IndeterminateReason.ENHANCEMENT_IMPLAUSIBLE),
    ({"peak_enhancement": 3.61}, IndeterminateReason.ENHANCEMENT_IMPLAUSIBLE),
    ({"agreement_dice": 0.39}, IndeterminateReason.SEGMENTATIONS_DISAGREE),
    ({"p_classifier": 0.69, "p_radiomics": 0.9}, IndeterminateReason.PROBABILITY_UNCERTAIN),
    ({"p_classifier": 0.31, "p_radiomics": 0.1}, IndeterminateReason.PROBABILITY_UNCERTAIN),
    ({"p_radiomics": 0.49}, IndeterminateReason.MODELS_DISAGREE),
    ({"washout_fraction": 0.049}, IndeterminateReason.KINETICS_DISAGREE),
    ({"p_classifier": 0.1, "p_radiomics": 0.2, "washout_fraction": 0.05}, IndeterminateReason.KINETICS_DISAGREE),
])
def test_each_failed_check_makes_it_indeterminate(change: dict, reason: IndeterminateReason) -> None:
    verdict = assess(**GOOD | change)
    assert verdict.indeterminate
    assert verdict.reasons == (reason,)
    assert verdict.summary() == {"finding": "indeterminate", "reasons": [str(reason)]}


def test_limits_are_inclusive_where_the_specification_is() -> None:
    edge = GOOD | {"inside_body": 0.5, "peak_enhancement": 1.3, "agreement_dice": 0.4,
                   "p_classifier": 0.7, "p_radiomics": 0.5}
    assert assess(**edge) == Verdict(True, ())
    assert assess(**GOOD | {"peak_enhancement": 3.6}) == Verdict(True, ())
    assert assess(**GOOD | {"p_classifier": 0.3, "p_radiomics": 0.0}) == Verdict(False, ())


def test_no_agreement_or_radiomics_is_not_held_against_the_study() -> None:
    assert assess(**GOOD | {"agreement_dice": None, "p_radiomics": None}) == Verdict(True, ())
    assert assess(**GOOD | {"washout_fraction": None}) == Verdict(True, ())


def test_kinetics_agree_with_each_class() -> None:
    assert assess(**GOOD | {"washout_fraction": 0.05}) == Verdict(True, ())
    assert assess(**GOOD | {"p_classifier": 0.1, "p_radiomics": 0.2, "washout_fraction": 0.049}) == Verdict(False, ())


def test_washout_from_the_lesion_mean_curve() -> None:
    """Pre 100, then 200, 300 (peak enhancement 2.0), 250 (1.5): a quarter washed out; a rising
    curve has none; single-phase or two-phase series have no curve to judge."""
    lesion = np.zeros((2, 4, 4), dtype=bool)
    lesion[1, 1:3, 1:3] = True
    pixels = np.zeros((4, 2, 4, 4), dtype=np.float32)
    for k, value in enumerate((100, 200, 300, 250)):
        pixels[k][lesion] = value
    assert washout(pixels, lesion) == pytest.approx(0.25)
    rising = pixels.copy()
    rising[3][lesion] = 400
    assert washout(rising, lesion) == pytest.approx(0.0)
    assert washout(pixels[:2], lesion) is None and washout(pixels[:1], lesion) is None
    flat = np.full_like(pixels, 100.0)
    assert washout(flat, lesion) is None and washout(pixels, np.zeros_like(lesion)) is None


def test_keep_in_body_drops_what_lies_outside() -> None:
    body = np.zeros((2, 40, 40), dtype=bool)
    body[:, 10:20, 10:20] = True
    mask = np.zeros_like(body)
    mask[:, 12:16, 12:16] = True  # inside
    mask[:, 30:34, 30:34] = True  # 10 mm away at 1 mm pixels: outside the 5 mm margin
    mask[:, 12:16, 18:26] = True  # straddles the edge: 6 of 8 columns within 5 mm -> kept
    kept = keep_in_body(mask, body, (1.0, 1.0))
    assert kept[:, 12:16, 12:16].all() and kept[:, 12:16, 18:24].all() and not kept[:, 30:34, 30:34].any()
    outside = np.zeros_like(body)
    outside[:, 30:34, 30:34] = True
    assert (keep_in_body(outside, body, (1.0, 1.0)) == outside).all()  # nothing qualifies: mask kept whole


def test_several_reasons_are_all_reported() -> None:
    verdict = assess(inside_body=0.0, peak_enhancement=1.0, agreement_dice=0.0, p_classifier=0.5, p_radiomics=0.0,
                     washout_fraction=0.0)
    assert verdict.reasons == tuple(IndeterminateReason)  # every check failed, reported in this order


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="uncertain band"):
        Limits(uncertain_low=0.6)
    with pytest.raises(ValueError, match="min_peak_enhancement"):
        Limits(min_peak_enhancement=4.0)


def test_inside_fraction_counts_the_margin_in_millimetres() -> None:
    body = np.zeros((1, 40, 40), dtype=bool)
    body[0, 10:20, 10:20] = True
    lesion = np.zeros_like(body)
    lesion[0, 21:23, 14:16] = True  # rows 21-22: 2 and 3 pixels beyond the body's last row (19)
    assert inside_fraction(lesion, body, (1.0, 1.0), margin_mm=0.0) == 0.0
    assert inside_fraction(lesion, body, (1.0, 1.0), margin_mm=3.0) == 1.0
    assert inside_fraction(lesion, body, (2.0, 2.0), margin_mm=4.0) == 0.5  # 2 px of margin reach row 21 only
    assert inside_fraction(np.zeros_like(body), body, (1.0, 1.0), margin_mm=5.0) == 0.0
    assert inside_fraction(lesion, np.zeros_like(body), (1.0, 1.0), margin_mm=5.0) == 0.0


def test_every_reason_has_a_code_in_the_sr() -> None:
    from pipeline.outputs.sr import INDETERMINATE_REASONS

    assert set(INDETERMINATE_REASONS) == set(IndeterminateReason)
    assert len({c.value for c in INDETERMINATE_REASONS.values()}) == len(IndeterminateReason)
