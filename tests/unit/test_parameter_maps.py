"""CE parameter maps on dynamic and single-phase phantoms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from phantom import generate_study, write_study
from phantom.params import METASTASIS, PRIMARY
from pipeline.parameter_maps import SINGLE_PHASE_NOTE, ParameterMaps, compute, with_marrow_reference
from pipeline.volume import Volume, load_series


def _maps(tmp_path: Path, seed: int, label: int, phases: int):  # noqa: ANN202
    study = generate_study(seed, label=label, phases=phases, matrix=(256, 256))
    volume = load_series(sorted((write_study(study, tmp_path) / "series").glob("*.dcm")))
    return study, volume, compute(volume, marrow_level=float(np.median(volume.pixels[-1])))


def test_phase_times_come_from_the_headers(tmp_path: Path) -> None:
    study, volume, _ = _maps(tmp_path, 3, METASTASIS, 5)
    steps = np.diff(volume.phase_times_s)
    assert len(volume.phase_times_s) == 5 and np.all((steps >= 9.9) & (steps <= 14.1))


def test_metastasis_washes_out_and_primary_does_not(tmp_path: Path) -> None:
    for seed in (41, 42):
        met_study, _, met = _maps(tmp_path / f"m{seed}", seed, METASTASIS, 6)
        pri_study, _, pri = _maps(tmp_path / f"p{seed}", seed, PRIMARY, 6)
        assert met.dynamic and pri.dynamic
        met_out = float(np.median(met.outflow[met_study.mask]))
        pri_out = float(np.median(pri.outflow[pri_study.mask]))
        assert met_out < 0 <= pri_out + 1e-6
        assert float(np.median(met.inflow[met_study.mask])) > float(np.median(pri.inflow[pri_study.mask]))
        assert float(np.median(met.peak[met_study.mask])) > 0.3


def test_single_phase_has_no_invented_dynamics(tmp_path: Path) -> None:
    study, _, maps = _maps(tmp_path, 5, METASTASIS, 1)
    assert maps.inflow is None and maps.outflow is None and maps.note == SINGLE_PHASE_NOTE
    assert set(maps.available()) == {"peak"}
    assert float(np.median(maps.peak[study.mask])) > 1.3  # lesion brighter than marrow


# Hand-made time curves: one row of voxels, each column a curve; phase 1 is pre-contrast.
TIMES = (0.0, 10.0, 25.0, 45.0)
CURVES = {  # pre, then three post-contrast phases
    "washout": (100.0, 250.0, 200.0, 150.0),  # relative 1.5, 1.0, 0.5: peak at 10 s
    "progressive": (100.0, 120.0, 150.0, 200.0),  # 0.2, 0.5, 1.0: peak at the last phase
    "plateau": (100.0, 110.0, 180.0, 170.0),  # 0.1, 0.8, 0.7: peak at 25 s, one phase before the last
    "flat": (200.0, 200.0, 200.0, 200.0),  # no enhancement
    "air": (0.0, 7.84, 7.84, 7.84),  # no pre-contrast signal: divided by the noise floor
}


def _dynamic(curves: Sequence[Sequence[float]], times: tuple[float, ...] = TIMES) -> Volume:
    """A (phases, 1, 1, len(curves)) volume, each column one curve."""
    pixels = np.array(curves, dtype=np.float32).T[:, None, None, :]
    return Volume(pixels=pixels, positions=np.zeros((1, 3)), orientation=(1, 0, 0, 0, 1, 0), spacing=(1.0, 1.0, 1.0),
                  sop_instance_uids=tuple(("1",) for _ in range(pixels.shape[0])), study_uid="1", series_uid="2",
                  phase_times_s=times)


def _by_curve(maps_row: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(CURVES, maps_row[0, 0], strict=True)}


@pytest.fixture
def curve_maps() -> ParameterMaps:
    """Function-scoped: cheap, and each test then calls ``compute`` itself (mutmut maps tests to
    the functions they call, fixtures included only while the test runs)."""
    return compute(_dynamic(list(CURVES.values())), marrow_level=100.0)


def test_peak_is_the_largest_relative_enhancement(curve_maps: ParameterMaps) -> None:
    """The air voxel's pre-contrast 0 is replaced by 2 % of the 99th percentile of the
    pre-contrast image (196 here: between 100 and 200), so its 7.84 is twice the floor."""
    assert curve_maps.peak.dtype == np.float32
    assert _by_curve(curve_maps.peak) == pytest.approx(
        {"washout": 1.5, "progressive": 1.0, "plateau": 0.8, "flat": 0.0, "air": 7.84 / (196 * 0.02)})


def test_inflow_is_the_peak_over_the_time_to_peak(curve_maps: ParameterMaps) -> None:
    assert curve_maps.inflow is not None and curve_maps.inflow.dtype == np.float32
    assert _by_curve(curve_maps.inflow) == pytest.approx(
        {"washout": 1.5 / 10, "progressive": 1.0 / 45, "plateau": 0.8 / 25, "flat": 0.0, "air": 2.0 / 10}, rel=1e-5)


def test_outflow_is_the_change_from_peak_to_last_phase(curve_maps: ParameterMaps) -> None:
    """Negative for a wash-out, 0 when the peak is the last phase."""
    assert curve_maps.outflow is not None and curve_maps.outflow.dtype == np.float32
    assert _by_curve(curve_maps.outflow) == pytest.approx(
        {"washout": (0.5 - 1.5) / 35, "progressive": 0.0, "plateau": (0.7 - 0.8) / 20, "flat": 0.0, "air": 0.0},
        rel=1e-5, abs=1e-9)


def test_dynamic_maps_are_all_available_with_a_note(curve_maps: ParameterMaps) -> None:
    assert curve_maps.dynamic
    assert set(curve_maps.available()) == {"peak", "inflow", "outflow"}
    assert curve_maps.available()["inflow"] is curve_maps.inflow
    assert curve_maps.available()["outflow"] is curve_maps.outflow
    assert curve_maps.note == "dynamic series: 4 phases over 45 s"


def test_a_dark_pre_contrast_image_is_divided_by_the_minimum_floor() -> None:
    """All pre-contrast signal 0: the floor is 0.001, not 2 % of nothing."""
    maps = compute(_dynamic([(0.0, 0.002, 0.001)], times=(0.0, 10.0, 20.0)), marrow_level=1.0)
    assert float(maps.peak[0, 0, 0]) == pytest.approx(2.0)


def test_phase_times_without_headers_are_the_nominal_twelve_seconds() -> None:
    """No times, times of the wrong length, or all zero (no acquisition times): 12 s a phase."""
    curve = [CURVES["washout"]]
    for times in ((), (0.0, 10.0), (0.0, 0.0, 0.0, 0.0)):
        maps = compute(_dynamic(curve, times=times), marrow_level=100.0)
        assert maps.inflow is not None and maps.outflow is not None
        assert float(maps.inflow[0, 0, 0]) == pytest.approx(1.5 / 12)
        assert float(maps.outflow[0, 0, 0]) == pytest.approx((0.5 - 1.5) / 24)
        assert maps.note == "dynamic series: 4 phases over 36 s"


def test_header_times_are_used_only_when_they_increase() -> None:
    """Two phases at one time would divide the inflow of a lesion peaking there by nothing (it was
    0.5 / 0.001 = 500 here): such headers are not used, each phase is the nominal 12 s apart."""
    maps = compute(_dynamic([(100.0, 150.0, 120.0)], times=(0.0, 0.0, 30.0)), marrow_level=100.0)
    assert maps.inflow is not None and float(maps.inflow[0, 0, 0]) == pytest.approx(0.5 / 12)
    increasing = compute(_dynamic([(100.0, 120.0, 150.0)], times=(0.0, 5.0, 30.0)), marrow_level=100.0)
    assert increasing.inflow is not None and float(increasing.inflow[0, 0, 0]) == pytest.approx(0.5 / 30)


def test_sub_second_phase_times_are_used_as_they_are() -> None:
    maps = compute(_dynamic([(100.0, 150.0, 120.0)], times=(0.0, 0.5, 1.0)), marrow_level=100.0)
    assert maps.inflow is not None and maps.outflow is not None
    assert float(maps.inflow[0, 0, 0]) == pytest.approx(0.5 / 0.5)
    assert float(maps.outflow[0, 0, 0]) == pytest.approx((0.2 - 0.5) / 0.5)


def test_two_phases_are_a_dynamic_series() -> None:
    maps = compute(_dynamic([(100.0, 130.0)], times=(0.0, 15.0)), marrow_level=100.0)
    assert maps.dynamic and float(maps.peak[0, 0, 0]) == pytest.approx(0.3)
    assert maps.inflow is not None and float(maps.inflow[0, 0, 0]) == pytest.approx(0.02)


def test_single_phase_peak_is_the_signal_over_marrow() -> None:
    volume = _dynamic([(50.0,), (300.0,)], times=())
    maps = compute(volume, marrow_level=0.5)
    np.testing.assert_allclose(maps.peak[0, 0], [100.0, 600.0])
    assert not maps.dynamic and set(maps.available()) == {"peak"}
    assert float(compute(volume, marrow_level=0.0).peak[0, 0, 0]) == pytest.approx(50.0 / 1e-6)


def test_available_needs_both_dynamic_maps() -> None:
    peak = np.zeros((1, 1, 1), dtype=np.float32)
    assert set(ParameterMaps(peak, peak, None, "").available()) == {"peak"}
    assert set(ParameterMaps(peak, None, peak, "").available()) == {"peak"}
    assert not ParameterMaps(peak, None, peak, "").dynamic


def test_marrow_reference_is_grown_on_the_peak_image_with_the_in_plane_spacing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Training's maps are made as the node makes them: region growing on the post-contrast peak
    with the (row, column) pixel spacing, the maps relative to the marrow level it finds."""
    import pipeline.region_growing as region_growing

    seen: list[tuple[np.ndarray, tuple[float, ...]]] = []

    def segment(image: np.ndarray, pixel_mm: tuple[float, ...]) -> SimpleNamespace:
        seen.append((image, tuple(pixel_mm)))
        return SimpleNamespace(marrow_level=50.0)

    monkeypatch.setattr(region_growing, "segment", segment)
    single = _dynamic([(100.0,), (400.0,)], times=())
    image, marrow, maps = with_marrow_reference(single)  # single phase: the signal over the marrow level
    np.testing.assert_allclose(maps.peak[0, 0], [2.0, 8.0])
    volume = replace(_dynamic([CURVES["washout"], CURVES["plateau"]]), spacing=(3.0, 0.7, 0.9))
    image, marrow, maps = with_marrow_reference(volume)
    np.testing.assert_allclose(image[0, 0], [250.0, 180.0])
    assert len(seen) == 2 and seen[1][1] == (0.7, 0.9) and seen[1][0] is image
    assert marrow == 50.0 and maps.dynamic
    np.testing.assert_allclose(maps.peak[0, 0], [1.5, 0.8], rtol=1e-6)
