"""The domain-randomised phantom look (3D label maps, random tissue intensities)."""

from __future__ import annotations

import numpy as np
import pytest

from phantom.anatomy3d import Label, coordinates
from phantom.randomised import generate_randomised
from training.looks import LOOKS, studies


@pytest.fixture(scope="module")
def study():  # noqa: ANN201
    return generate_randomised(11, matrix=(256, 256))


def test_same_seed_same_arrays(study) -> None:  # noqa: ANN001
    again = generate_randomised(11, matrix=(256, 256))
    assert np.array_equal(study.pixels, again.pixels) and np.array_equal(study.mask, again.mask)
    assert not np.array_equal(study.pixels, generate_randomised(12, matrix=(256, 256)).pixels)


def test_shapes_types_and_truth(study) -> None:  # noqa: ANN001
    assert study.pixels.shape == (1, 12, 256, 256) and study.pixels.dtype == np.uint16
    assert study.mask.shape == (12, 256, 256) and study.mask.any()
    assert (study.spine | ~study.mask).all()  # every lesion voxel lies in the spine mask
    assert 500 <= int(study.pixels.max()) <= 65535


@pytest.mark.parametrize("label", [0, 1])
def test_lesions_enhance_as_the_specification_fixes(label: int) -> None:
    """Mean lesion signal against marrow within the class's peak range, whatever else is random."""
    for seed in range(3):
        s = generate_randomised(100 + seed, matrix=(256, 256), label=label)
        assert s.label == label
        image = s.pixels[0].astype(float)
        marrow = np.median(image[s.spine & ~s.mask & (image > 0)])
        ratio = float(np.median(image[s.mask])) / marrow
        assert 0.9 < ratio < 4.5, ratio  # noise, texture and the lesion pattern blur the 1.3-3.0 band


def test_tilt_is_rendered_in_the_pixels() -> None:
    flat = coordinates((12, 8, 8), (3.0, 1.0, 1.0), (0.0, 0.0), (0.0, 0.0, 0.0))
    tilted = coordinates((12, 8, 8), (3.0, 1.0, 1.0), (10.0, 0.0), (0.0, 0.0, 0.0))
    assert np.ptp(flat.z[0]) == 0 and np.ptp(tilted.z[0]) > 1  # one slice spans several heights


def test_looks_yield_studies_of_each_kind() -> None:
    assert set(LOOKS) == {"classic", "randomised"}
    for look in LOOKS:
        seed, pixels, mask, px = next(iter(studies(look, [5])))
        assert seed == 5 and pixels.ndim == 4 and mask.shape == pixels.shape[1:] and 0.3 < px < 2.5
    with pytest.raises(ValueError, match="unknown phantom look"):
        next(iter(studies("other", [1])))
    assert int(Label.LESION) == max(Label)


def test_single_phase_study_is_unchanged_by_the_dynamic_variant(study) -> None:  # noqa: ANN001
    """Figures of seed 11's single-phase study made before the dynamic variant existed (commit
    cf53142): drawing the dynamic curves from their own generator leaves it as it was."""
    pixels = study.pixels.astype(float)
    assert int(study.mask.sum()) == 3375 and int(study.pixels.max()) == 4582
    assert pixels.mean() == pytest.approx(650.3578, rel=1e-5) and pixels.std() == pytest.approx(474.7936, rel=1e-5)


@pytest.mark.parametrize("metastasis", [True, False])
def test_lesion_kinetics_follow_the_specification(metastasis: bool) -> None:
    """PHANTOM.md: a metastasis peaks within the first two post-contrast phases and has lost 10-35 %
    of its enhancement by the last; a primary enhances progressively, its peak at the last phase."""
    from phantom.randomised import _lesion_curve

    rng = np.random.default_rng(5)
    for phases in range(3, 9):
        for _ in range(50):
            g = _lesion_curve(rng, metastasis, phases)
            assert g.shape == (phases,) and g[0] == 0.0 and g.max() == pytest.approx(1.0)
            if metastasis:
                assert int(np.argmax(g)) in (1, 2) and 0.65 - 1e-9 <= g[-1] <= 0.90 + 1e-9, g
                assert np.all(np.diff(g[int(np.argmax(g)):]) <= 1e-12)  # no second rise after the peak
            else:
                assert int(np.argmax(g)) == phases - 1 and np.all(np.diff(g) >= 0), g


@pytest.mark.parametrize("phases", [3, 8])
def test_dynamic_study_keeps_the_anatomy_and_the_class_kinetics(phases: int) -> None:
    """A dynamic study of a seed is the single-phase study's anatomy and lesions scanned ``phases``
    times; in its pixels, with noise, texture and bias, a metastasis washes out (the node's own
    measure, :func:`pipeline.plausibility.washout`), a primary does not, and both peak above marrow
    as their class's range says."""
    from pipeline.plausibility import washout

    for seed, label in ((21, 1), (22, 0), (23, 1)):
        single = generate_randomised(seed, matrix=(256, 192), label=label)
        dynamic = generate_randomised(seed, matrix=(256, 192), label=label, phases=phases)
        assert dynamic.pixels.shape == (phases, 12, 256, 192) and dynamic.pixels.dtype == np.uint16
        assert np.array_equal(dynamic.mask, single.mask) and np.array_equal(dynamic.body, single.body)
        assert dynamic.meta["phases"] == phases and dynamic.label == label
        pixels = dynamic.pixels.astype(float)
        signal = np.array([phase[dynamic.mask].mean() for phase in pixels])
        peak = int(np.argmax(signal))
        assert signal[0] < 0.8 * signal[peak]  # phase 1 is before contrast
        lost = washout(pixels, dynamic.mask)
        assert lost is not None
        if label:
            assert peak in (1, 2) and 0.05 < lost < 0.40, (signal, lost)
        else:
            assert peak == phases - 1 and lost < 0.02, (signal, lost)
        normal = dynamic.body & ~dynamic.mask
        ratio = signal[peak] / np.median(pixels[peak][normal])
        assert ratio > (1.4 if label else 1.1), ratio  # 1.7-3.0 / 1.3-2.4, less texture, blur and partial volume


def test_dynamic_phase_counts_outside_the_specification_are_refused() -> None:
    for phases in (0, 2, 9):
        with pytest.raises(ValueError, match="phases must be"):
            generate_randomised(1, matrix=(256, 256), phases=phases)


def test_randomised_items_are_dynamic_only_when_asked() -> None:
    from training.classifier_data import look_items, randomised_items

    (_, single, _, _), = randomised_items([31], phases=1)
    (_, default, _, _), = look_items("randomised", [60000])  # no phases, no share: single-phase as before
    (_, dynamic, mask, _), = randomised_items([31], phases=None, dynamic_fraction=1.0)
    assert single.phases == 1 and default.phases == 1 and 3 <= dynamic.phases <= 8
    assert len(dynamic.sop_instance_uids) == dynamic.phases and len(set(sum(dynamic.sop_instance_uids, ()))) == \
        12 * dynamic.phases
    assert np.all(np.diff(dynamic.phase_times_s) > 0) and mask.shape == dynamic.pixels.shape[1:]


@pytest.mark.parametrize("seed", [900064, 905016])
def test_every_study_has_a_lesion_in_a_vertebral_body(seed: int) -> None:
    """PHANTOM.md: "every study has at least one lesion inside or arising from the vertebral body".
    These held-out seeds of the shifted look once drew every lesion centre in the posterior elements
    (a spinous process, a lamina): the lesion lay wholly outside the bodies."""
    r = generate_randomised(seed)
    assert (r.mask & r.body).any()


def test_the_study_says_whether_its_tissues_follow_the_table() -> None:
    """Half the studies draw every tissue's signal far outside PHANTOM.md's table (``wild``, for
    training); evaluation reports the two kinds apart, so each study records which it is."""
    table = generate_randomised(900006)  # 256 x 192; seed 900000 is wild (test_segmentation)
    assert table.meta["contrast"] == "table"
