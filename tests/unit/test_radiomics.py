"""Radiomics features, mRMR, the LASSO signature and its Rad-score."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.radiomics_signature import Signature
from phantom import generate_study
from pipeline.lesions import largest_component
from pipeline.radiomics import extract
from training.signature import cross_validate, fit, mrmr
from training.train_radiomics import study_features


def test_the_papers_1316_features_per_map() -> None:
    study = generate_study(8, matrix=(256, 256), label=1)
    px = study.params.pixel_spacing_mm
    feats = extract({"peak": study.pixels[0].astype(np.float32) / 200}, largest_component(study.mask), (3.0, px, px))
    assert len(feats) == 1316
    assert all(k.startswith("peak_") for k in feats)
    kinds = {k.split("_")[1].split("-")[0] for k in feats}
    assert {"original", "wavelet", "log"} <= kinds


def test_dynamic_studies_have_features_for_three_maps() -> None:
    feats, label = study_features(44, phases=4)
    assert label in (0, 1)
    assert {k.split("_")[0] for k in feats} == {"peak", "inflow", "outflow"} and len(feats) == 3 * 1316


def test_only_the_signatures_features_gives_the_same_values() -> None:
    """What the node does: extract just the shipped signatures' features (single and dynamic)."""
    from pipeline.analysis import SIGNATURES
    from pipeline.parameter_maps import compute

    study = generate_study(45, matrix=(256, 256), phases=4)
    volume = study.volume()
    maps = compute(volume, float(np.percentile(volume.pixels[0], 60)))
    lesion = largest_component(study.mask)
    full = extract(maps.available(), lesion, volume.spacing)
    for mode in ("single", "dynamic"):
        names = Signature.load(SIGNATURES / f"radiomics_{mode}.json").features
        part = extract(maps.available(), lesion, volume.spacing, only=names)
        assert sorted(part) == sorted(names)
        assert all(part[n] == full[n] for n in names)


def test_the_node_computes_only_what_its_signature_names() -> None:
    """On each filtered image the node's extractor computes just the named features (one of the
    8 wavelet decompositions here, one LoG sigma), not every class on every image."""
    from pipeline.radiomics import _crop, _extractor, _image

    study = generate_study(45, matrix=(256, 256), phases=1)
    volume = study.volume()
    lesion = largest_component(study.mask)
    box = _crop(lesion, volume.spacing)
    names = frozenset({"wavelet-LHL_glcm_MCC", "log-sigma-2-0-mm-3D_firstorder_Median"})
    result = _extractor(names).execute(_image(volume.pixels[0][box].astype(np.float32), volume.spacing),
                                       _image(lesion[box].astype(np.uint8), volume.spacing))
    assert {k for k in result if not k.startswith("diagnostics")} == names


def _synthetic(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 40))
    x[:, 3] += 1.5 * y  # informative
    x[:, 4] = x[:, 3] + 0.01 * rng.normal(size=n)  # redundant copy of 3
    x[:, 9] -= 1.2 * y  # informative, other sign
    x[:, 20] = 7.0  # constant: dropped
    return x, y, [f"f{i}" for i in range(40)]


def test_mrmr_prefers_relevant_and_avoids_redundant_features() -> None:
    x, y, _ = _synthetic()
    z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    chosen = mrmr(z[:, [i for i in range(40) if i != 20]], y, k=3)
    assert 3 in chosen[:2] or 4 in chosen[:2]
    assert not ({3, 4} <= set(chosen[:2]))  # the copy is redundant with the first pick


def test_signature_rad_score_is_the_weighted_sum(tmp_path: Path) -> None:
    x, y, names = _synthetic()
    sig = fit(x, y, names, "single")
    assert {"f3", "f9"} & set(sig.features) and "f20" not in sig.features
    values = {n: float(v) for n, v in zip(names, x[0], strict=True)}
    z = [(values[f] - m) / s for f, m, s in zip(sig.features, sig.means, sig.stds, strict=True)]
    assert sig.rad_score(values) == pytest.approx(sig.intercept + float(np.dot(sig.coefficients, z)))
    assert sig.probability(values) == pytest.approx(1 / (1 + math.exp(-sig.rad_score(values))))
    sig.save(tmp_path / "sig.json")
    again = Signature.load(tmp_path / "sig.json")
    assert again.rad_score(values) == pytest.approx(sig.rad_score(values))
    assert {"scikit-learn", "pyradiomics-bhklab", "numpy"} <= set(again.versions)


def test_cross_validation_refits_inside_folds() -> None:
    x, y, names = _synthetic()
    cv = cross_validate(x, y, names, "single", folds=5)
    assert set(cv["metrics"]) == {"acc", "pre", "rec", "f1", "auc"}
    assert cv["metrics"]["auc"]["mean"] > 0.75 and len(cv["scores"]) == len(y)


def test_too_few_studies_per_class_is_a_training_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fewer studies of a class than folds: a clear message (exit status 2), not a scikit-learn traceback."""
    from dicomnode.cli import main
    from training.errors import TooFewStudiesError

    x, _, names = _synthetic(18)
    y = np.array([0, 1] * 9)
    with pytest.raises(TooFewStudiesError, match="10-fold cross-validation needs at least 10 studies of each "
                                                 "class, got 9 metastasis and 9 primary"):
        cross_validate(x, y, names, "single")
    x, _, names = _synthetic(20)
    with pytest.raises(TooFewStudiesError, match="fold 1/10 .*LASSO"):  # 10 each: a fold trains on 9
        cross_validate(x, np.array([0, 1] * 10), names, "single")
    cache = tmp_path / "features.npz"
    np.savez(cache, x=x[:18], y=y, names=np.array(names))
    argv = ["train-radiomics", "--studies", "18", "--out", str(tmp_path / "sig.json"), "--cache", str(cache)]
    assert main(argv) == 2
    assert "at least 10 studies of each class" in capsys.readouterr().err
    assert not (tmp_path / "sig.json").exists()


def test_feature_table_takes_both_looks(tmp_path: Path) -> None:
    """Classic studies first, then the randomised look's, the same features for each; the
    randomised look is single-phase only."""
    from training.errors import TrainingError
    from training.train_radiomics import build_table, train

    x, y, names = build_table(range(30000, 30001), 1, tmp_path / "t.npz", range(70000, 70002))
    assert x.shape == (3, len(names)) and len(names) == 1316 and np.isfinite(x).mean() > 0.95
    assert set(y.tolist()) <= {0, 1}
    again = build_table(range(0), 1, tmp_path / "t.npz")  # read back from the cache
    assert np.array_equal(again[0], x, equal_nan=True)
    with pytest.raises(TrainingError, match="single-phase"):
        train(10, 40000, 5, tmp_path / "sig.json", None, None, randomised_studies=2)


def test_feature_table_on_the_nodes_own_lesions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``--masks node`` measures the lesion the node reports (the shipped U-Net), close to the
    truth's on a classic study; a study where the node reports none is left out, and said so."""
    import training.train_radiomics as tr

    truth, _, names = tr.build_table(range(30000, 30001), 1, None)
    node, _, node_names = tr.build_table(range(30000, 30001), 1, None, masks="node")
    assert node_names == names
    volume = names.index("peak_original_shape_VoxelVolume")
    assert 0.7 < node[0, volume] / truth[0, volume] < 1.3
    assert not np.array_equal(node, truth, equal_nan=True)  # its own mask, not the truth's
    import training.node_segmentation as ns

    real = ns.node_lesions
    monkeypatch.setattr(ns, "node_lesions", lambda v: None if v.series_uid == "randomised-70000" else real(v))
    x, y, _ = tr.build_table(range(30000, 30001), 1, None, range(70000, 70001), masks="node")
    assert x.shape[0] == len(y) == 1
    assert "1 of 2 studies left out" in capsys.readouterr().out
    with pytest.raises(tr.TrainingError, match="masks must be one of"):
        tr.build_table(range(1), 1, None, masks="drawn")
