"""The plausibility checks that decide between a coded finding and "indeterminate"."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipeline.plausibility import (
    IndeterminateReason,
    Limits,
    Verdict,
    assess,
    body_share,
    drop_faint,
    inside_fraction,
    keep_in_body,
    washout,
)

GOOD = {"inside_body": 1.0, "peak_enhancement": 2.0, "agreement_overlap": 0.8, "p_classifier": 0.9, "p_radiomics": 0.8}


def test_a_plausible_study_gets_its_class() -> None:
    assert assess(**GOOD) == Verdict(True, ())
    assert assess(**GOOD | {"p_classifier": 0.1, "p_radiomics": 0.2}) == Verdict(False, ())


@pytest.mark.parametrize(("change", "reason"), [
    ({"inside_body": 0.49}, IndeterminateReason.LESION_OUTSIDE_VERTEBRAL_BODY),
    ({"peak_enhancement": 1.29}, IndeterminateReason.ENHANCEMENT_IMPLAUSIBLE),
    ({"peak_enhancement": 5.01}, IndeterminateReason.ENHANCEMENT_IMPLAUSIBLE),
    ({"agreement_overlap": 0.49}, IndeterminateReason.SEGMENTATIONS_DISAGREE),
    ({"p_classifier": 0.69, "p_radiomics": 0.9}, IndeterminateReason.PROBABILITY_UNCERTAIN),
    ({"p_classifier": 0.31, "p_radiomics": 0.1}, IndeterminateReason.PROBABILITY_UNCERTAIN),
    ({"p_radiomics": 0.49}, IndeterminateReason.MODELS_DISAGREE),
    ({"p_radiomics": 0.2}, IndeterminateReason.MODELS_DISAGREE),  # clearly the other class
    ({"p_radiomics": 0.59}, IndeterminateReason.MODELS_DISAGREE),  # the same class, but no clear one
    ({"p_classifier": 0.1, "p_radiomics": 0.41}, IndeterminateReason.MODELS_DISAGREE),
    ({"washout_fraction": 0.049}, IndeterminateReason.KINETICS_DISAGREE),
    ({"p_classifier": 0.1, "p_radiomics": 0.2, "washout_fraction": 0.05}, IndeterminateReason.KINETICS_DISAGREE),
    ({"body_score": 0.849}, IndeterminateReason.IMAGE_UNLIKE_TRAINING),
    ({"body_score": 0.0}, IndeterminateReason.IMAGE_UNLIKE_TRAINING),
])
def test_each_failed_check_makes_it_indeterminate(change: dict, reason: IndeterminateReason) -> None:
    verdict = assess(**GOOD | change)
    assert verdict.indeterminate
    assert verdict.reasons == (reason,)
    assert verdict.summary() == {"finding": "indeterminate", "reasons": [str(reason)]}


def test_limits_are_inclusive_where_the_specification_is() -> None:
    edge = GOOD | {"inside_body": 0.5, "peak_enhancement": 1.3, "agreement_overlap": 0.5,
                   "p_classifier": 0.7, "p_radiomics": 0.6, "body_score": 0.85}
    assert assess(**edge) == Verdict(True, ())
    assert assess(**GOOD | {"p_classifier": 0.1, "p_radiomics": 0.4}) == Verdict(False, ())
    assert assess(**GOOD | {"p_radiomics": 0.59}, limits=Limits(radiomics_margin=0.05)) == Verdict(True, ())
    # no margin: a radiomics P of exactly 0.5 is on the metastasis side, as the classifier's is
    assert assess(**GOOD | {"p_radiomics": 0.5}, limits=Limits(radiomics_margin=0.0)) == Verdict(True, ())
    assert assess(**GOOD | {"peak_enhancement": 5.0}) == Verdict(True, ())
    assert assess(**GOOD | {"p_classifier": 0.3, "p_radiomics": 0.0}) == Verdict(False, ())


def test_a_lesion_covering_a_fifth_of_the_body_is_in_it_whatever_lies_outside() -> None:
    """An expansile primary mostly outside the located body (or one that replaced much of it) is in
    the body when it covers ``min_body_share`` of it, the rule that keeps the U-Net's lesions; one
    that covers less and lies mostly outside is still held back."""
    outside = GOOD | {"inside_body": 0.3}
    assert assess(**outside, body_share=0.2) == Verdict(True, ())
    assert assess(**outside, body_share=0.19).reasons == (IndeterminateReason.LESION_OUTSIDE_VERTEBRAL_BODY,)
    assert assess(**outside).reasons == (IndeterminateReason.LESION_OUTSIDE_VERTEBRAL_BODY,)  # share unknown: 0
    assert assess(**outside, body_share=0.3, limits=Limits(min_body_share=0.31)).indeterminate


def test_body_share_is_the_share_of_the_body_the_lesion_covers() -> None:
    body = np.zeros((2, 10, 10), dtype=bool)
    body[:, :5, :4] = True  # 40 voxels
    lesion = np.zeros_like(body)
    lesion[0, 3:8, :4] = True  # 20 voxels, 8 of them in the body
    assert body_share(lesion, body) == pytest.approx(0.2)
    assert body_share(lesion, np.zeros_like(body)) == 0.0


def test_no_agreement_or_radiomics_is_not_held_against_the_study() -> None:
    assert assess(**GOOD | {"agreement_overlap": None, "p_radiomics": None}) == Verdict(True, ())
    assert assess(**GOOD | {"washout_fraction": None}) == Verdict(True, ())


def test_kinetics_agree_with_each_class() -> None:
    assert assess(**GOOD | {"washout_fraction": 0.05}) == Verdict(True, ())
    # a curve that checks the class: the radiomics model need only give the same class
    assert assess(**GOOD | {"washout_fraction": 0.2, "p_radiomics": 0.55}) == Verdict(True, ())
    assert assess(**GOOD | {"washout_fraction": 0.2, "p_radiomics": 0.5}) == Verdict(True, ())  # 0.5: metastasis
    assert assess(**GOOD | {"washout_fraction": 0.2, "p_radiomics": 0.45}).reasons == (
        IndeterminateReason.MODELS_DISAGREE,)
    assert assess(**GOOD | {"p_classifier": 0.1, "p_radiomics": 0.2, "washout_fraction": 0.049}) == Verdict(False, ())


def test_with_a_curve_a_radiomics_p_near_one_half_is_no_opinion() -> None:
    """Within 0.05 of 0.5 on the other side, radiomics does not hold back a class the kinetics
    agree with; at 0.05 or beyond it does (915004: P 0.785, radiomics 0.484, a metastasis)."""
    curve = {"washout_fraction": 0.2}
    assert assess(**GOOD | curve | {"p_radiomics": 0.484}) == Verdict(True, ())
    assert assess(**GOOD | curve | {"p_radiomics": 0.451}) == Verdict(True, ())
    assert assess(**GOOD | curve | {"p_radiomics": 0.45}).reasons == (IndeterminateReason.MODELS_DISAGREE,)
    primary = GOOD | {"p_classifier": 0.1, "washout_fraction": 0.0}
    assert assess(**primary | {"p_radiomics": 0.5}) == Verdict(False, ())
    assert assess(**primary | {"p_radiomics": 0.549}) == Verdict(False, ())
    assert assess(**primary | {"p_radiomics": 0.55}).reasons == (IndeterminateReason.MODELS_DISAGREE,)
    assert assess(**primary | {"p_radiomics": 0.9}).reasons == (IndeterminateReason.MODELS_DISAGREE,)
    wider = Limits(radiomics_dynamic_margin=0.2)
    assert assess(**GOOD | curve | {"p_radiomics": 0.31}, limits=wider) == Verdict(True, ())
    assert assess(**GOOD | curve | {"p_radiomics": 0.3}, limits=wider).reasons == (IndeterminateReason.MODELS_DISAGREE,)
    # without a curve the same P holds the class back
    assert assess(**GOOD | {"p_radiomics": 0.484}).reasons == (IndeterminateReason.MODELS_DISAGREE,)


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
    half = np.zeros_like(body)
    half[:, 12:16, 12:16] = True  # a lesion inside, so that something qualifies
    half[:, 30, 21:29] = True  # 11 rows below the body: nothing within 5 mm
    half[:, 19, 21:29] = True  # on the body's last row: columns 21-24 within 5 mm, 25-28 not
    kept = keep_in_body(half, body, (1.0, 1.0))
    assert kept[:, 19, 21:29].all() and not kept[:, 30, 21:29].any()  # exactly half inside: kept


def test_several_reasons_are_all_reported() -> None:
    verdict = assess(inside_body=0.0, peak_enhancement=1.0, agreement_overlap=0.0, p_classifier=0.5, p_radiomics=0.0,
                     washout_fraction=0.0, body_score=0.5)
    assert verdict.reasons == tuple(IndeterminateReason)  # every check failed, reported in this order


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="uncertain band"):
        Limits(uncertain_low=0.6)
    for low in (5.5, 5.0):  # an empty range (5.0: the default upper limit itself) is refused
        with pytest.raises(ValueError, match="min_peak_enhancement"):
            Limits(min_peak_enhancement=low)
    assert Limits(radiomics_margin=0.0).radiomics_margin == 0.0  # no margin: the side of 0.5 alone
    for margin in (-0.01, 0.5):
        with pytest.raises(ValueError, match="radiomics_margin"):
            Limits(radiomics_margin=margin)
        with pytest.raises(ValueError, match="radiomics_dynamic_margin"):
            Limits(radiomics_dynamic_margin=margin)
    assert Limits(radiomics_dynamic_margin=0.0).radiomics_dynamic_margin == 0.0


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


def test_washout_sees_a_peak_in_the_first_post_contrast_phase() -> None:
    """Pre 100, then 300 (peak, first post-contrast phase), 250, 200: half the peak enhancement is
    gone by the last phase; three phases (two post-contrast) are enough to judge."""
    lesion = np.ones((1, 2, 2), dtype=bool)
    pixels = np.stack([np.full((1, 2, 2), v, dtype=np.float32) for v in (100, 300, 250, 200)])
    assert washout(pixels, lesion) == pytest.approx(0.5)
    assert washout(pixels[:3], lesion) == pytest.approx(0.25)


def test_verdict_summaries() -> None:
    assert Verdict(True, ()).summary() == {"finding": "metastasis", "reasons": []}
    assert Verdict(False, ()).summary() == {"finding": "primary", "reasons": []}
    assert not Verdict(False, ()).indeterminate
    assert Verdict(None, (IndeterminateReason.ENHANCEMENT_IMPLAUSIBLE,)).indeterminate


def test_uncertain_band_may_reach_the_ends() -> None:
    assert Limits(uncertain_low=0.0, uncertain_high=1.0).uncertain_low == 0.0
    assert Limits(uncertain_low=0.5, uncertain_high=0.5).uncertain_high == 0.5
    with pytest.raises(ValueError, match="uncertain band"):
        Limits(uncertain_high=1.01)
    with pytest.raises(ValueError, match="uncertain band"):
        Limits(uncertain_low=-0.01)


def test_margin_is_in_millimetres_along_each_axis() -> None:
    """Rows 0.5 mm, columns 1 mm: 5 mm is 10 rows but 5 columns."""
    from pipeline.plausibility import grown_body

    body = np.zeros((1, 41, 41), dtype=bool)
    body[0, 20, 20] = True
    grown = grown_body(body, (0.5, 1.0), 5.0)
    assert grown[0, 10, 20] and not grown[0, 9, 20] and grown[0, 30, 20] and not grown[0, 31, 20]
    assert grown[0, 20, 15] and not grown[0, 20, 14] and grown[0, 20, 25] and not grown[0, 20, 26]
    assert grown.sum() == 159  # the ellipse's pixels (rows +-10, columns +-5)
    assert not grown_body(np.zeros_like(body), (0.5, 1.0), 5.0).any()


def _dilated_by_disc(body: np.ndarray, pixel_mm: tuple[float, float], margin_mm: float) -> np.ndarray:
    """The definition: binary dilation by the elliptical disc of ``margin_mm`` in pixels."""
    radius = np.array([margin_mm / pixel_mm[0], margin_mm / pixel_mm[1]])
    size = np.maximum(1, np.ceil(radius)).astype(int)
    yy, xx = np.mgrid[-size[0]:size[0] + 1, -size[1]:size[1] + 1]
    disc = (yy / max(radius[0], 1e-6)) ** 2 + (xx / max(radius[1], 1e-6)) ** 2 <= 1.0
    return ndimage.binary_dilation(body, structure=disc[None])


@pytest.mark.parametrize("pixel_mm", [(1.0, 1.0), (0.5, 1.0), (0.7, 0.7), (0.8125, 0.6)])
@pytest.mark.parametrize("margin_mm", [0.0, 1.0, 3.0, 5.0])
def test_the_grown_body_is_the_dilation_by_the_disc(pixel_mm: tuple[float, float], margin_mm: float) -> None:
    """On random bodies touching the edges, with a slice left empty."""
    rng = np.random.default_rng(int(margin_mm * 10 + pixel_mm[0] * 100))
    body = rng.random((3, 48, 40)) > 0.97
    body[1] = False
    body[2, 0, 5] = body[2, 47, 39] = True
    from pipeline.plausibility import grown_body

    assert np.array_equal(grown_body(body, pixel_mm, margin_mm), _dilated_by_disc(body, pixel_mm, margin_mm))


def test_keep_in_body_judges_each_connected_lesion() -> None:
    """In-plane diagonal neighbours belong to one lesion (8-connectivity), judged as a whole;
    lesions of different sizes are each judged by their own share inside."""
    body = np.zeros((1, 60, 60), dtype=bool)
    body[0, 10:30, 10:30] = True
    mask = np.zeros_like(body)
    mask[0, 20:28, 20:28] = True  # 64 px inside
    mask[0, 28, 28] = mask[0, 29, 29] = True  # diagonal tail, inside
    mask[0, 36:40, 36:40] = True  # a separate 16 px lesion, outside the 5 mm margin
    mask[0, 45:47, 45:47] = True  # a small one far outside
    mask[0, 12:14, 31:52] = True  # 42 px, 14 of them within the margin: a third inside, dropped
    kept = keep_in_body(mask, body, (1.0, 1.0))
    assert kept[0, 20:28, 20:28].all() and kept[0, 29, 29]
    assert not kept[0, 36:40, 36:40].any() and not kept[0, 45:47, 45:47].any() and not kept[0, 12:14, 31:52].any()
    assert kept.sum() == 66


def test_keep_in_body_keeps_a_lesion_that_fills_much_of_the_body() -> None:
    """A lesion that has replaced bone: the located body (normal bone) holds a fifth of it and it
    lies mostly outside, but it covers at least ``min_body_share`` of the body's voxels and is kept;
    a component that merely touches the body is still judged by its share inside."""
    body = np.zeros((2, 80, 80), dtype=bool)
    body[:, 10:20, 10:20] = True  # 200 voxels
    lesion = np.zeros_like(body)
    lesion[:, 10:20, 16:56] = True  # 800 voxels: 80 in the body (40 % of it), 180 within 5 mm (22 %)
    cord = np.zeros_like(body)
    cord[:, 5:70, 2:4] = True
    cord[:, 14:16, 4:11] = True  # a spur touching the body: 4 voxels in it, 24 of 288 within 5 mm
    spot = np.zeros_like(body)
    spot[:, 11:13, 11:13] = True  # wholly inside
    kept = keep_in_body(lesion | cord | spot, body, (1.0, 1.0))
    assert (kept == (lesion | spot)).all()
    strict = keep_in_body(lesion | cord | spot, body, (1.0, 1.0), Limits(min_body_share=0.5))
    assert (strict == spot).all()
    small = np.zeros_like(body)
    small[:, 10:14, 18:40] = True  # 176 voxels, 16 in the body (8 % of it), 56 within 5 mm (32 %): dropped
    assert (keep_in_body(small | cord | spot, body, (1.0, 1.0)) == spot).all()


def test_drop_faint_drops_the_networks_one_slice_doubts() -> None:
    """A component on one slice with a mean probability below 0.85 is dropped; one as faint over
    several slices, or as small but confident, is kept; the limits move both lines."""
    probability = np.zeros((4, 30, 30))
    probability[0:3, 2:6, 2:6] = 0.6  # faint, three slices: kept
    probability[2:4, 26:29, 26:29] = 0.6  # faint, two slices: kept
    probability[1, 10:14, 10:14] = 0.7  # faint, one slice: dropped
    probability[2, 20:24, 20:24] = 0.95  # confident, one slice: kept
    probability[3, 10:14, 20:22] = 0.6
    probability[3, 10:14, 22:24] = 0.99  # one slice, mean 0.795: dropped
    probability[3, 20:24, 2:6] = 0.75  # one slice, mean 0.75: dropped, kept when that is the line
    mask = probability >= 0.5
    kept = drop_faint(mask, probability)
    assert kept[0:3, 2:6, 2:6].all() and kept[2, 20:24, 20:24].all()
    assert not kept[1, 10:14, 10:14].any() and not kept[3, 10:14, 20:24].any() and not kept[3, 20:24, 2:6].any()
    assert kept[2:4, 26:29, 26:29].all() and kept.sum() == 48 + 18 + 16
    at_the_line = drop_faint(mask, probability, Limits(faint_probability=0.75))  # exact in binary
    assert at_the_line[3, 20:24, 2:6].all() and not at_the_line[1, 10:14, 10:14].any()
    wider = drop_faint(mask, probability, Limits(faint_max_slices=3))
    assert not wider[0:3, 2:6, 2:6].any() and wider[2, 20:24, 20:24].all()


def test_drop_faint_keeps_the_mask_when_every_component_is_faint() -> None:
    probability = np.zeros((2, 20, 20), dtype=np.float32)
    probability[0, 2:6, 2:6] = 0.6
    probability[1, 10:14, 10:14] = 0.7
    mask = probability >= 0.5
    assert (drop_faint(mask, probability) == mask).all()
    empty = np.zeros_like(mask)
    assert not drop_faint(empty, probability).any()


def test_keep_in_body_measures_the_share_against_the_whole_body() -> None:
    """A lesion's share of the body is counted against all of the body's voxels, not those near
    the mask (the components are labelled in the mask's bounding box, a speed-up only)."""
    body = np.zeros((2, 60, 60), dtype=bool)
    body[:, 10:20, 10:20] = True  # 200 voxels
    lesion = np.zeros_like(body)
    lesion[:, 10:13, 15:45] = True  # 180 voxels: 30 in the body (15 % of it), 60 within 5 mm (33 %)
    spot = np.zeros_like(body)
    spot[:, 11:13, 11:13] = True  # wholly inside
    assert (keep_in_body(lesion | spot, body, (1.0, 1.0)) == spot).all()
    assert (keep_in_body(lesion | spot, body, (1.0, 1.0), Limits(min_body_share=0.15)) == (lesion | spot)).all()
