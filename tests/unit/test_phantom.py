"""The phantom in memory: determinism, ranges and the class statistics of the specification."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from phantom import MATRICES, generate_study, sample_params
from phantom.params import METASTASIS, PRIMARY


def test_same_seed_same_arrays() -> None:
    a, b = generate_study(5, matrix=(256, 256)), generate_study(5, matrix=(256, 256))
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.pixels, generate_study(6, matrix=(256, 256)).pixels)


@pytest.mark.parametrize("matrix", MATRICES)
def test_every_matrix_has_twelve_slices_and_a_lesion(matrix: tuple[int, int]) -> None:
    st = generate_study(11, matrix=matrix)
    assert st.pixels.shape == (1, 12, *matrix) and st.pixels.dtype == np.uint16
    assert st.mask.shape == (12, *matrix) and st.mask.any()


@pytest.mark.parametrize("phases", [3, 8])
def test_dynamic_studies_have_all_phases(phases: int) -> None:
    assert generate_study(3, phases=phases, matrix=(256, 256)).pixels.shape == (phases, 12, 256, 256)


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ValueError, match="phases"):
        sample_params(1, phases=2)
    with pytest.raises(ValueError, match="label"):
        sample_params(1, label=3)


def _lesion_stats(seed: int, label: int, phases: int = 1) -> dict:
    st = generate_study(seed, label=label, phases=phases, matrix=(256, 256))
    p = st.params
    signal = st.pixels[-1].astype(float)
    return {"params": p, "mask": st.mask, "pixels": st.pixels, "max": int(st.pixels.max()),
            "lesion_mean": float(signal[st.mask].mean())}


def test_class_statistics_over_many_studies() -> None:
    """Over a few dozen studies every parameter falls inside the specified ranges."""
    met = [_lesion_stats(s, METASTASIS) for s in range(1000, 1020)]
    pri = [_lesion_stats(s, PRIMARY) for s in range(2000, 2020)]
    for s in met:
        p = s["params"]
        assert 1 <= len(p.lesions) <= 3
        for les in p.lesions:
            assert 6 <= les.diameter_mm <= 25 and 1.7 <= les.peak_factor <= 3.0
            assert les.pattern in {"homogeneous", "rim"}
    for s in pri:
        p = s["params"]
        assert len(p.lesions) == 1
        les = p.lesions[0]
        assert 15 <= les.diameter_mm <= 40 and 1.3 <= les.peak_factor <= 2.4 and les.pattern == "septal"
    everything = met + pri
    for s in everything:
        p = s["params"]
        assert 500 <= s["max"] <= 4000 + 1
        assert 12 <= p.snr <= 40 and abs(p.tilt_deg) <= 15
        assert 35 <= p.body_width_mm <= 50 and 25 <= p.body_depth_mm <= 38
        assert 14 <= p.canal_width_mm <= 20 and 220 <= p.extra["fov_mm"] <= 280
        m = p.tissue_means
        assert 150 <= m["marrow"] <= 260 and 220 <= m["muscle"] <= 320 and 700 <= m["aorta"] <= 1100
    # both classes appear with breaking-through and contained primaries, several metastases
    assert any(s["params"].lesions[0].breaks_cortex for s in pri)
    assert any(not s["params"].lesions[0].breaks_cortex for s in pri)
    assert {len(s["params"].lesions) for s in met} == {1, 2, 3}
    # primaries are bigger on average; components of the mask match the lesion counts roughly
    mean_vox = {k: np.mean([s["mask"].sum() for s in v]) for k, v in (("met", met), ("pri", pri))}
    assert mean_vox["pri"] > mean_vox["met"]
    assert all(ndimage.label(s["mask"])[1] == 1 for s in pri)


def _curve(st) -> np.ndarray:  # noqa: ANN001
    return np.array([st.pixels[k][st.mask].mean() for k in range(st.pixels.shape[0])])


def test_dynamic_curves_differ_by_class() -> None:
    """Metastases wash in fast and wash out; primaries enhance progressively to the last phase."""
    for seed in range(3000, 3006):
        met = generate_study(seed, label=METASTASIS, phases=6, matrix=(256, 256))
        c = _curve(met)
        assert 1 <= int(np.argmax(c)) <= 2  # peak within the first two post-contrast phases
        assert c[-1] < c.max() * 0.97  # wash-out by the last phase
        pri = generate_study(seed, label=PRIMARY, phases=6, matrix=(256, 256))
        c = _curve(pri)
        assert int(np.argmax(c)) == 5 and np.all(np.diff(c) > -0.02 * c.max())
