"""CE parameter maps on dynamic and single-phase phantoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phantom import generate_study, write_study
from phantom.params import METASTASIS, PRIMARY
from pipeline.parameter_maps import SINGLE_PHASE_NOTE, compute
from pipeline.volume import load_series


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
