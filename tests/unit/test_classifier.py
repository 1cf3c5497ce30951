"""Classifier training (a step or two on tiny inputs), site labels, and the shipped weights."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from scipy import ndimage

from pipeline.classification import DEFAULT_WEIGHTS, Classifier
from training.classifier_data import CubeSet, phantom_items, read_labels, site_items
from training.train_classifier import TrainConfig, cross_validate, predict, train_network


@pytest.fixture(scope="module")
def tiny_set() -> CubeSet:
    return CubeSet.build(phantom_items(range(40000, 40006), phases=1), total=6)


def test_cubes_are_made_as_the_node_makes_them(tiny_set: CubeSet) -> None:
    assert tuple(tiny_set.cubes.shape) == (6, 5, 12, 64, 64) and tiny_set.cubes.dtype == torch.float16
    assert not bool(tiny_set.dynamic.any())
    assert torch.all(tiny_set.cubes[:, 2:4] == 0)  # single-phase: no inflow/outflow channels
    assert bool((tiny_set.cubes[:, 4].float().amax(dim=(1, 2, 3)) == 1).all())  # the lesion mask
    centre = tiny_set.cubes[:, 0, :, 24:40, 24:40].float().amax(dim=(1, 2, 3))
    assert bool((centre > 1.2).all())  # the lesion (>= 1.3x marrow at peak) is in the middle
    # the mask channel holds the lesion classified alone, also where the study has two (40004)
    components = [ndimage.label(c[4].float().numpy() > 0.5, structure=np.ones((3, 3, 3)))[1] for c in tiny_set.cubes]
    assert components == [1] * 6


def test_training_and_cross_validation_run_on_tiny_inputs(tiny_set: CubeSet, tmp_path: Path) -> None:
    cfg = TrainConfig(steps=2, batch=4, folds=2)
    model = train_network(tiny_set, cfg, desc="test")
    prob = predict(model, tiny_set.cubes)
    assert prob.shape == (6,) and np.all((prob >= 0) & (prob <= 1))
    cv = cross_validate(tiny_set, TrainConfig(steps=1, batch=4, folds=2))
    assert set(cv["metrics"]) == {"acc", "pre", "rec", "f1", "auc"}
    assert len(cv["per_fold"]) == 2 and "single" in cv["pooled_out_of_fold"]
    tiny_set.save(tmp_path / "c.npz")
    again = CubeSet.load(tmp_path / "c.npz")
    assert torch.equal(again.cubes, tiny_set.cubes) and again.names == tiny_set.names


def test_randomised_cubes_join_the_classic_ones(tiny_set: CubeSet) -> None:
    """The randomised look's studies become cubes the same way (made in a worker process here), and
    the training set is the concatenation of both looks."""
    from training.classifier_data import phantom_cubes

    randomised = phantom_cubes("randomised", range(60000, 60002), processes=2)
    assert tuple(randomised.cubes.shape) == (2, 5, 12, 64, 64) and randomised.names == ["randomised-60000",
                                                                                         "randomised-60001"]
    assert not bool(randomised.dynamic.any()) and bool((randomised.cubes[:, 4].float().amax(dim=(1, 2, 3)) == 1).all())
    both = CubeSet.concat([tiny_set, randomised])
    assert len(both) == 8 and both.names[-1] == "randomised-60001"
    assert torch.equal(both.labels[6:], randomised.labels) and torch.equal(both.cubes[:6], tiny_set.cubes)


def test_label_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "labels.csv"
    good.write_text("study_instance_uid,label\n# a comment\n1.2.3,metastasis\n1.2.4, Primary\n")
    assert read_labels(good) == {"1.2.3": 1, "1.2.4": 0}
    bad = tmp_path / "bad.csv"
    bad.write_text("1.2.3,benign\n")
    with pytest.raises(ValueError, match="bad.csv:1.*metastasis"):
        read_labels(bad)


def test_a_site_folder_with_a_label_file_gives_labelled_cubes(tmp_path: Path) -> None:
    from phantom import generate_study, write_study

    labels = tmp_path / "labels.csv"
    rows = []
    for seed, phases in ((41, 1), (42, 3)):
        study = generate_study(seed, matrix=(256, 256), phases=phases)
        folder = write_study(study, tmp_path / "site")
        uid = pydicom.dcmread(next((folder / "series").glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
        rows.append(f"{uid},{study.params.label_name}")
        expected = study.label
    labels.write_text("\n".join(rows[1:]) + "\n")  # the first study is unlabelled: skipped
    items = site_items(tmp_path / "site", labels)
    assert [(name, label) for name, _, _, label in items] == [("study_42", expected)]
    data = CubeSet.build(items)
    assert bool(data.dynamic[0]) and torch.any(data.cubes[0, 2:4] != 0)  # inflow/outflow present


def test_cubes_around_the_nodes_own_lesions(tiny_set: CubeSet, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``--masks node``: the cube is centred on the lesion the node reports (close to the truth's
    on classic studies, not the truth itself); a study where the node finds none is left out,
    and its radiomics probability is not asked for."""
    import training.classifier_data as cd
    from training.train_classifier import radiomics_probabilities

    node = cd.phantom_cubes("classic", range(40000, 40002), phases=1, masks="node")
    assert node.names == tiny_set.names[:2] and torch.equal(node.labels, tiny_set.labels[:2])
    for k in range(2):
        truth_mask, node_mask = tiny_set.cubes[k, 4] > 0.5, node.cubes[k, 4] > 0.5
        overlap = 2 * float((truth_mask & node_mask).sum()) / float(truth_mask.sum() + node_mask.sum())
        assert 0.7 < overlap < 1.0
    import training.node_segmentation as ns

    real = ns.node_lesions
    monkeypatch.setattr(ns, "node_lesions", lambda v: None if v.series_uid.endswith("40000") else real(v))
    one = cd.phantom_cubes("classic", range(40000, 40002), phases=1, masks="node", desc="test cubes")
    assert one.names == ["phantom-40001"] and torch.equal(one.cubes[0], node.cubes[1])
    assert "test cubes: 1 of 2 studies left out" in capsys.readouterr().out
    rad = radiomics_probabilities(phantom_items(range(40000, 40002), phases=1), "node", one.names)
    assert rad.shape == (1,) and 0 <= rad[0] <= 1
    with pytest.raises(cd.TrainingDataError, match="masks must be one of"):
        cd.phantom_cubes("classic", range(1), masks="drawn")


def test_shipped_classifier_separates_held_out_phantoms() -> None:
    """Committed weights on held-out seeds (training never used 900000+): mostly right."""
    classifier = Classifier(DEFAULT_WEIGHTS)
    items = list(phantom_items(range(912000, 912010), phases=1))
    data = CubeSet.build(items)
    prob = np.array([classifier.probability(c.float().numpy()) for c in data.cubes])
    correct = ((prob >= 0.5) == data.labels.numpy().astype(bool)).sum()
    assert correct >= 8, (prob, data.labels)


def test_reliability_bins_compare_prediction_with_outcome() -> None:
    from training.train_classifier import reliability

    y = np.array([0, 0, 1, 1, 1, 0])
    prob = np.array([0.05, 0.15, 0.95, 0.85, 0.5, 0.45])
    curve = reliability(y, prob)
    assert [b["bin"] for b in curve] == ["0.0-0.2", "0.4-0.6", "0.8-1.0"]
    assert [b["studies"] for b in curve] == [2, 2, 2]
    assert curve[0] == {"bin": "0.0-0.2", "studies": 2, "mean_predicted": 0.1, "observed_metastasis": 0.0}
    assert curve[1]["observed_metastasis"] == 0.5 and curve[2]["mean_predicted"] == 0.9


def test_an_ensemble_file_averages_its_members(tiny_set: CubeSet, tmp_path: Path) -> None:
    """Two trained networks combined into one file (one checksum) give the mean of their
    probabilities through the node's Classifier; a one-network file still loads as before."""
    from models import weights
    from training.ensemble import combine, main

    paths = []
    for seed in (1, 2):
        net = train_network(tiny_set, TrainConfig(steps=1, batch=4, seed=seed), desc="test")
        paths.append(tmp_path / f"net{seed}.pt")
        weights.save(net, paths[-1], {"data": f"tiny seed {seed}", "steps": 1})
    cubes = tiny_set.cubes[:3].float()
    singles = [Classifier(p) for p in paths]
    each = np.array([[c.probability(cube.numpy()) for cube in cubes] for c in singles])
    assert main([str(paths[0]), str(paths[1]), "--out", str(tmp_path / "both.pt")]) == 0
    both = Classifier(tmp_path / "both.pt")
    assert len(both.model.members) == 2  # type: ignore[union-attr]
    got = np.array([both.probability(cube.numpy()) for cube in cubes])
    np.testing.assert_allclose(got, each.mean(axis=0), atol=2e-3)  # fp16 storage
    assert not np.allclose(each[0], each[1], atol=1e-3)  # the members differ: the mean is a real mean
    three = combine([tmp_path / "both.pt", paths[0]])
    assert len(three.members) == 3
    meta = (tmp_path / "both.pt.json").read_text()
    assert weights.sha256_file(paths[1]) in meta and "tiny seed 2" in meta


def test_cached_cubes_of_the_node_s_lesions_are_named_by_its_mask_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cubes around the node's lesions depend on how the U-Net's output becomes a mask: the cache
    name holds the U-Net's checksum and, from version 2 (the mirror average), the mask version, so
    cubes made with version 1 (named by the checksum alone) are never read back as version 2's."""
    import pipeline.segmentation
    from models import weights
    from pipeline.segmentation import DEFAULT_WEIGHTS as UNET_WEIGHTS
    from training.train_classifier import _cache_tag

    unet = weights.sha256_file(UNET_WEIGHTS)[:8]
    assert "-node" not in _cache_tag("truth")
    assert _cache_tag("node") == f"{_cache_tag('truth')}-node{unet}m2"
    monkeypatch.setattr(pipeline.segmentation, "MASK_VERSION", 3)
    assert _cache_tag("node") == f"{_cache_tag('truth')}-node{unet}m3"
    monkeypatch.setattr(pipeline.segmentation, "MASK_VERSION", 1)
    assert _cache_tag("node") == f"{_cache_tag('truth')}-node{unet}"


def test_held_out_scores_both_models_and_caches_their_inputs(tiny_set: CubeSet, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Held-out phantoms: the classifier's and the radiomics model's figures and the reliability
    curve; a second run reads the cubes and the radiomics probabilities back from ``--work``."""
    import training.classifier_data
    import training.train_classifier as tc

    model = train_network(tiny_set, TrainConfig(steps=1, batch=4), desc="test")
    cfg = TrainConfig(held_out_single=6, held_out_dynamic=0)
    first = tc.held_out(model, cfg, tmp_path, tmp_path / "roc.png")["single"]
    assert first["studies"] == 6 and first["masks"] == "truth" and first["left_out"] == 0
    assert set(first["classifier"]) == set(first["radiomics"]) == {"acc", "pre", "rec", "f1", "auc"}
    assert sum(b["studies"] for b in first["classifier_reliability"]) == 6
    assert (tmp_path / "roc.png").stat().st_size > 10_000

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("made again instead of read from the cache")

    monkeypatch.setattr(tc, "radiomics_probabilities", refuse)
    monkeypatch.setattr(training.classifier_data, "map_studies", refuse)
    again = tc.held_out(model, cfg, tmp_path, None)["single"]
    assert again["radiomics"] == first["radiomics"] and again["classifier"] == first["classifier"]


def test_held_out_scores_the_randomised_looks_dynamic_studies(tiny_set: CubeSet, tmp_path: Path) -> None:
    """The shifted look's dynamic set (seeds 905000-): every study dynamic, both models scored."""
    import training.train_classifier as tc

    model = train_network(tiny_set, TrainConfig(steps=1, batch=4), desc="test")
    cfg = TrainConfig(held_out_single=0, held_out_dynamic=0, held_out_randomised_dynamic=3)
    result = tc.held_out(model, cfg, tmp_path, None)
    assert set(result) == {"randomised_dynamic"}
    scored = result["randomised_dynamic"]
    assert scored["studies"] == 3 and scored["look"] == "randomised" and scored["seeds"] == "905000-905002"
    cached = CubeSet.load(next(tmp_path.glob("randomisedv2-905000-3-*.npz")))
    assert bool(cached.dynamic.all()) and 0 < int(cached.labels.sum()) < 3
    assert set(scored["radiomics"]) == {"acc", "pre", "rec", "f1", "auc"}


def test_the_randomised_looks_dynamic_studies_join_the_training_set(tmp_path: Path) -> None:
    """``--randomised-dynamic-studies``: dynamic studies of the shifted look (seeds 65000-, apart
    from its single-phase 60000- and held-out 905000-) after the classic and single-phase ones."""
    import training.train_classifier as tc

    cfg = TrainConfig(studies=1, randomised_studies=1, randomised_dynamic_studies=2, processes=2)
    data = tc.load_training_set(cfg, tmp_path, None, None)
    assert data.names == ["phantom-40000", "randomised-60000", "randomised-65000", "randomised-65001"]
    assert data.dynamic.tolist()[1:] == [False, True, True]
    assert "randomised dynamic phantom seeds 65000-65001" in tc._data_description(cfg)


def test_a_look_can_be_left_out_of_the_training_set(tmp_path: Path) -> None:
    """``--studies 0``: the randomised look alone (leave-one-look-out); no study at all is an error."""
    import training.train_classifier as tc
    from training.errors import TrainingDataError

    cfg = TrainConfig(studies=0, randomised_dynamic_studies=1)
    data = tc.load_training_set(cfg, tmp_path, None, None)
    assert data.names == ["randomised-65000"] and tc._data_description(cfg) == \
        "randomised dynamic phantom seeds 65000-65000"
    with pytest.raises(TrainingDataError, match="no training studies"):
        tc.load_training_set(TrainConfig(studies=0), tmp_path, None, None)


def test_held_out_studies_are_segmented_once_for_both_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the node's lesions a held-out study is segmented once: the same lesion gives the cube and
    the radiomics model's probability (the same as scoring the radiomics model on its own)."""
    import training.classifier_data as cd
    import training.node_segmentation as ns
    from training.train_classifier import radiomics_probabilities

    real, calls = ns.node_lesions, []

    def counted(volume):  # noqa: ANN001, ANN202
        calls.append(volume.series_uid)
        return real(volume)

    monkeypatch.setattr(ns, "node_lesions", counted)
    cubes, rad = cd.scored_phantom_cubes("classic", range(40000, 40002), phases=1, masks="node")
    assert len(calls) == 2 and cubes.names == ["phantom-40000", "phantom-40001"]
    alone = cd.phantom_cubes("classic", range(40000, 40002), phases=1, masks="node")
    assert torch.equal(alone.cubes, cubes.cubes)
    assert rad.shape == (2,) and np.allclose(rad, radiomics_probabilities(
        phantom_items(range(40000, 40002), phases=1), "node", cubes.names))


def _dynamic(cubes: torch.Tensor) -> torch.Tensor:
    """``cubes`` as if their series had inflow and outflow maps."""
    out = cubes.float().clone()
    out[:, 2:4] = 0.1
    return out


def test_a_dynamic_only_member_counts_for_dynamic_series_only(tiny_set: CubeSet, tmp_path: Path) -> None:
    """``--dynamic-only``: that file's network joins the mean for a dynamic series (inflow/outflow
    channels present) and is left out for a single-phase one; the flag is saved with the weights,
    the ``.json`` says so, and an ensemble file passes its members' flags on."""

    from models import weights
    from models.inception3d import Ensemble, is_dynamic
    from models.inception3d import load as load_classifier
    from training.ensemble import main

    paths = []
    for seed in (1, 2):
        net = train_network(tiny_set, TrainConfig(steps=1, batch=4, seed=seed), desc="test")
        paths.append(tmp_path / f"net{seed}.pt")
        weights.save(net, paths[-1], {"data": f"tiny seed {seed}", "steps": 1})
    assert main([str(paths[0]), str(paths[1]), "--dynamic-only", str(paths[1]), "--out", str(tmp_path / "e.pt")]) == 0
    model, _ = load_classifier(tmp_path / "e.pt")
    assert isinstance(model, Ensemble) and model.dynamic_only.tolist() == [False, True]
    model.eval()
    single = tiny_set.cubes[:2].float()
    dynamic = _dynamic(single)
    assert not is_dynamic(single).any() and is_dynamic(dynamic).all()
    members = [m.predict_proba(x) for x in (single, dynamic) for m in model.members]
    torch.testing.assert_close(model.predict_proba(single), members[0])
    torch.testing.assert_close(model.predict_proba(dynamic), (members[2] + members[3]) / 2)
    mixed = torch.cat([single[:1], dynamic[1:]])
    expected = torch.stack([members[0][0], (members[2][1] + members[3][1]) / 2])
    torch.testing.assert_close(model.predict_proba(mixed), expected)
    meta = json.loads((tmp_path / "e.pt.json").read_text())["members"]
    assert [m.get("dynamic_only", False) for m in meta] == [False, True]
    assert main([str(tmp_path / "e.pt"), str(paths[0]), "--out", str(tmp_path / "f.pt")]) == 0
    again, _ = load_classifier(tmp_path / "f.pt")
    assert again.dynamic_only.tolist() == [False, True, False]  # type: ignore[union-attr]
    assert [m.get("dynamic_only", False) for m in json.loads((tmp_path / "f.pt.json").read_text())["members"]] == \
        [False, True, False]
    assert main([str(tmp_path / "e.pt"), str(paths[0]), "--dynamic-only", str(tmp_path / "e.pt"),
                 "--out", str(tmp_path / "g.pt")]) == 0  # every network of an ensemble file so marked
    marked, _ = load_classifier(tmp_path / "g.pt")
    assert marked.dynamic_only.tolist() == [True, True, False]  # type: ignore[union-attr]


def test_the_shipped_ensemble_loads_with_its_dynamic_only_flags() -> None:
    """Five networks, the fourth and fifth for dynamic series only, as its ``.json`` says."""

    from models.inception3d import Ensemble
    from models.inception3d import load as load_classifier

    model, _ = load_classifier(DEFAULT_WEIGHTS)
    assert isinstance(model, Ensemble) and model.dynamic_only.tolist() == [False, False, False, True, True]
    meta = json.loads(Path(f"{DEFAULT_WEIGHTS}.json").read_text())
    assert [m.get("dynamic_only", False) for m in meta["members"]] == model.dynamic_only.tolist()
    # calibrated per kind of series, as the .json says (single-phase softened, dynamic sharpened)
    fitted = [[meta["calibration"][kind]["slope"], meta["calibration"][kind]["intercept"]]
              for kind in ("single", "dynamic")]
    torch.testing.assert_close(model.calibration, torch.tensor(fitted), atol=1e-3, rtol=0)
    assert model.calibration[0, 0] < 1 < model.calibration[1, 0]


def test_ensembles_saved_before_the_flag_load_and_an_all_dynamic_one_is_refused(tiny_set: CubeSet,
                                                                                 tmp_path: Path) -> None:
    """A file without the ``dynamic_only`` and ``calibration`` buffers (saved before 2026-12-01)
    loads with no member flagged and the mean uncalibrated; an ensemble whose every member is
    dynamic-only is refused (a single-phase series would get no probability), by ``combine`` and by
    ``training.ensemble``; the dynamic-only member is not run on a batch without a dynamic cube."""
    import io

    from models import weights
    from models.inception3d import Ensemble
    from models.inception3d import load as load_classifier
    from training.ensemble import combine, main

    ensemble = Ensemble(2)
    state = {k: v for k, v in ensemble.state_dict().items() if k not in ("dynamic_only", "calibration")}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    old = tmp_path / "old.pt"
    old.write_bytes(buffer.getvalue())
    Path(f"{old}.sha256").write_text(f"{weights.sha256_file(old)}  old.pt\n")
    loaded, _ = load_classifier(old)
    assert isinstance(loaded, Ensemble) and loaded.dynamic_only.tolist() == [False, False]
    assert loaded.calibration.tolist() == [[1.0, 0.0], [1.0, 0.0]]  # nor calibration: the mean as it was
    net = tmp_path / "net.pt"
    weights.save(train_network(tiny_set, TrainConfig(steps=1, batch=4), desc="test"), net, {"data": "tiny"})
    with pytest.raises(ValueError, match="every network of the ensemble is for dynamic series only"):
        combine([net, net], frozenset({net}))
    with pytest.raises(SystemExit):
        main([str(net), "--dynamic-only", str(net), "--out", str(tmp_path / "none.pt")])
    assert not (tmp_path / "none.pt").exists()

    both = combine([net, net], frozenset())
    both.dynamic_only = torch.tensor([False, True])
    calls: list[int] = []
    second = both.members[1]
    real = second.predict_proba

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return real(x)

    second.predict_proba = counted  # type: ignore[method-assign]
    both.predict_proba(tiny_set.cubes[:2].float())  # single-phase: the second network is not run
    assert calls == []
    both.predict_proba(_dynamic(tiny_set.cubes[:2]))
    assert calls == [1]


def test_calibration_maps_each_kind_of_series_through_its_own_platt_scaling(tiny_set: CubeSet,
                                                                            tmp_path: Path) -> None:
    """P = sigmoid(slope * logit(mean) + intercept) with the single-phase row for a single-phase cube
    and the dynamic row for a dynamic one, in one batch; saved and loaded with the weights; the
    identity leaves the mean exactly as it was."""
    from models import weights
    from models.inception3d import load as load_classifier
    from training.ensemble import combine

    net = tmp_path / "net.pt"
    weights.save(train_network(tiny_set, TrainConfig(steps=1, batch=4), desc="test"), net, {"data": "tiny"})
    ensemble = combine([net])
    single, dynamic = tiny_set.cubes[:2].float(), _dynamic(tiny_set.cubes[2:4])
    batch = torch.cat([single, dynamic])
    mean = ensemble.members[0].predict_proba(batch)
    assert torch.equal(ensemble.predict_proba(batch), mean)
    ensemble.calibration = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    weights.save(ensemble, tmp_path / "cal.pt", {"data": "tiny"})
    loaded, _ = load_classifier(tmp_path / "cal.pt")
    loaded.eval()
    assert loaded.calibration.tolist() == [[2.0, -1.0], [0.5, 0.5]]
    stored_mean = loaded.members[0].predict_proba(batch)  # the network as stored (fp16)
    z = torch.logit(stored_mean)
    expected = torch.sigmoid(torch.cat([2.0 * z[:2] - 1.0, 0.5 * z[2:] + 0.5]))
    torch.testing.assert_close(loaded.predict_proba(batch), expected)
    assert not torch.allclose(expected, stored_mean, atol=1e-2)


def test_platt_scaling_recovers_a_known_slope_and_intercept() -> None:
    """Outcomes drawn with P = sigmoid(1.5 z - 0.7) from a model that says sigmoid(z): the fit finds
    1.5 and -0.7; studies of one class only are refused with a clear error."""
    from training.calibration import platt
    from training.errors import TrainingDataError

    rng = np.random.default_rng(3)
    z = rng.normal(0.0, 2.0, 20_000)
    y = rng.random(z.size) < 1 / (1 + np.exp(-(1.5 * z - 0.7)))
    slope, intercept = platt(1 / (1 + np.exp(-z)), y)
    assert abs(slope - 1.5) < 0.1 and abs(intercept + 0.7) < 0.1
    with pytest.raises(TrainingDataError, match="metastases and primaries"):
        platt(np.array([0.2, 0.9]), np.array([1, 1]))


def test_the_ensemble_command_calibrates_on_validation_phantoms(tiny_set: CubeSet, tmp_path: Path) -> None:
    """``--calibration-single N --calibration-dynamic M``: the ensemble is fitted per kind on the cubes
    of the calibration sets' seeds (read from ``--work``, as ``train-classifier`` caches them), the
    fit is saved with the weights and named in the ``.json``; without ``--work`` it is refused."""

    from models import weights
    from models.inception3d import load as load_classifier
    from training.calibration import CALIBRATION_SETS
    from training.ensemble import main
    from training.train_classifier import _cubes_file

    net = tmp_path / "net.pt"
    weights.save(train_network(tiny_set, TrainConfig(steps=1, batch=4), desc="test"), net, {"data": "tiny"})
    for k, s in enumerate(CALIBRATION_SETS):  # 3 studies per look and kind, in both classes
        part = tiny_set.subset(np.arange(3) + 3 * (k % 2))
        if s.dynamic:
            part = CubeSet(_dynamic(part.cubes).half(), part.labels, torch.ones(3, dtype=torch.bool), part.names)
        part.save(_cubes_file(tmp_path, s.look, s.seeds(3), None if s.dynamic else 1, 1.0 if s.dynamic else None,
                              "node"))
    assert 0 < int(tiny_set.labels.sum()) < len(tiny_set)
    out = tmp_path / "cal.pt"
    assert main([str(net), "--out", str(out), "--work", str(tmp_path), "--calibration-single", "3",
                 "--calibration-dynamic", "3", "--held-out-single", "0", "--held-out-dynamic", "0",
                 "--held-out-randomised", "0"]) == 0
    meta = json.loads(Path(f"{out}.json").read_text())["calibration"]
    assert meta["single"]["studies"] == meta["dynamic"]["studies"] == 6
    assert meta["single"]["seeds"] == ["randomised 820000-820002", "classic 830000-830002"]
    model, _ = load_classifier(out)
    fitted = [[meta[k]["slope"], meta[k]["intercept"]] for k in ("single", "dynamic")]
    torch.testing.assert_close(model.calibration, torch.tensor(fitted), atol=1e-4, rtol=0)
    assert model.calibration.tolist() != [[1.0, 0.0], [1.0, 0.0]]
    with pytest.raises(SystemExit):
        main([str(net), "--out", str(tmp_path / "no.pt"), "--calibration-single", "3"])
    assert not (tmp_path / "no.pt").exists()


def _applied_only_when_asked(tiny_set: CubeSet, monkeypatch: pytest.MonkeyPatch, function: str, option: str) -> None:
    """Training runs ``training.train_classifier.<function>`` on every batch when ``option`` is set,
    and never without it."""
    import training.train_classifier as tc

    original = getattr(tc, function)
    batches: list[int] = []

    def counted(cubes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        batches.append(len(cubes))
        return original(cubes, gen)

    monkeypatch.setattr(tc, function, counted)
    train_network(tiny_set, TrainConfig(steps=2, batch=4, **{option: True}), desc="test")
    assert batches == [4, 4]
    train_network(tiny_set, TrainConfig(steps=1, batch=4), desc="test")
    assert batches == [4, 4]


def test_outline_jitter_grows_or_shrinks_the_lesion_mask_alone(tiny_set: CubeSet,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``jitter_outline``: in about half the cubes the lesion channel is grown or shrunk in-plane by
    1 or 2 pixels (a 10 x 10 square becomes 12, 14, 8 or 6 pixels wide on every slice); the other
    channels are untouched; training applies it to every batch when asked, and only then."""
    from training.train_classifier import LESION_CHANNEL, jitter_outline

    x = torch.rand(64, 5, 3, 32, 32)
    x[:, LESION_CHANNEL] = 0.0
    x[:, LESION_CHANNEL, :, 11:21, 11:21] = 1.0
    out = jitter_outline(x, torch.Generator().manual_seed(0))
    others = [c for c in range(5) if c != LESION_CHANNEL]
    assert torch.equal(out[:, others], x[:, others])
    sides = [int(round(float(out[i, LESION_CHANNEL, 1].sum()) ** 0.5)) for i in range(64)]
    assert set(sides) == {6, 8, 10, 12, 14}
    assert 20 <= sides.count(10) <= 44
    for i, side in enumerate(sides):  # the same square on every slice, centred where it was
        lo = 16 - side // 2
        expected = torch.zeros(32, 32)
        expected[lo:lo + side, lo:lo + side] = 1.0
        assert all(torch.equal(out[i, LESION_CHANNEL, k], expected) for k in range(3))
    _applied_only_when_asked(tiny_set, monkeypatch, "jitter_outline", "outline_jitter")


def test_vary_appearance_blurs_or_bends_the_ratio_channels_alone(tiny_set: CubeSet,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``vary_appearance``: the image and peak channels (ratios to marrow) of about half the cubes
    are blurred in-plane and of about half raised to a power in 0.75-1.33, so marrow (1) stays 1;
    the mask, inflow and outflow channels are untouched; training applies it only when asked."""
    from training.train_classifier import LESION_CHANNEL, RATIO_CHANNELS, vary_appearance

    x = torch.ones(200, 5, 3, 32, 32)
    x[:, list(RATIO_CHANNELS), :, 12:20, 12:20] = 2.0  # a lesion at 2 x marrow
    x[:, 2:4] = torch.rand(200, 2, 3, 32, 32)
    x[:, LESION_CHANNEL] = 0.0
    x[:, LESION_CHANNEL, :, 12:20, 12:20] = 1.0
    out = vary_appearance(x, torch.Generator().manual_seed(0))
    others = [c for c in range(5) if c not in RATIO_CHANNELS]
    assert torch.equal(out[:, others], x[:, others])
    assert torch.equal(out[:, RATIO_CHANNELS[0]], out[:, RATIO_CHANNELS[1]])  # both channels alike
    middle = out[:, 0, 1, 16, 16]  # the lesion's middle: 2 ** gamma when not blurred much
    marrow = out[:, 0, 1, 4, 26]  # marrow away from the lesion and the border
    assert torch.allclose(marrow, torch.ones(200), atol=0.02)
    edge = out[:, 0, 1, 12, 16]  # the lesion's edge: a blur pulls it towards marrow
    blurred = (edge < 0.97 * middle).sum()
    assert 60 <= int(blurred) <= 140
    assert middle.min() > 1.3 and middle.max() <= 2 ** 1.33 + 1e-4  # blurred and bent, never past the range
    powered = ((middle - 2.0).abs() > 0.03).sum()
    assert 60 <= int(powered) <= 140
    assert middle.max() > 2.3 and middle.min() < 1.75  # the whole range of exponents is drawn
    _applied_only_when_asked(tiny_set, monkeypatch, "vary_appearance", "vary_appearance")


def test_with_node_cubes_trains_on_both_outlines_of_the_same_studies(tmp_path: Path) -> None:
    """``--with-node-cubes``: the training set is the cubes around the ground truth's lesions and,
    beside them, those around the node's own (made by the shipped U-Net, cached in ``--work`` under
    the node's name); the same studies and labels twice, the mask channels different. It is refused
    with ``--masks node`` (nothing to add), with cross-validation (a study's two cubes would fall
    in different folds) and with a site's folder (its cubes are centred on its SEG's lesions)."""
    from training.errors import TrainingDataError
    from training.train_classifier import LESION_CHANNEL, _cubes_file, _data_description, load_training_set
    from training.train_classifier import train as train_classifier

    cfg = TrainConfig(studies=2, with_node_cubes=True)
    data = load_training_set(cfg, tmp_path, None, None)
    assert len(data) == 4 and data.names[:2] == data.names[2:] and torch.equal(data.labels[:2], data.labels[2:])
    truth, node = data.cubes[:2, LESION_CHANNEL].float(), data.cubes[2:, LESION_CHANNEL].float()
    assert bool((node.amax(dim=(1, 2, 3)) == 1).all()) and not torch.equal(truth, node)
    for masks in ("truth", "node"):
        assert _cubes_file(tmp_path, "classic", range(40000, 40002), None, None, masks).exists()
    assert "beside them, around the node's" in _data_description(cfg)
    assert len(load_training_set(TrainConfig(studies=2), tmp_path, None, None)) == 2
    with pytest.raises(TrainingDataError, match="--masks truth"):
        load_training_set(TrainConfig(studies=2, masks="node", with_node_cubes=True), tmp_path, None, None)
    with pytest.raises(TrainingDataError, match="--no-cv"):
        train_classifier(cfg, tmp_path, None)
    with pytest.raises(TrainingDataError, match="phantoms only"):
        load_training_set(cfg, tmp_path, tmp_path, tmp_path / "labels.csv")


def test_the_saved_network_records_its_whole_recipe(tmp_path: Path) -> None:
    """The ``.json`` beside a trained network holds every option it was trained with (the
    augmentations included), not only what a person remembers to copy into it."""
    from training.train_classifier import train as train_classifier

    cfg = TrainConfig(studies=2, steps=1, batch=2, held_out_single=0, held_out_dynamic=0,
                      vary_appearance=True, outline_jitter=True, seed=7)
    result = train_classifier(cfg, tmp_path, tmp_path / "net.pt", skip_cv=True)
    meta = json.loads((tmp_path / "net.pt.json").read_text())
    assert meta["config"] == asdict(cfg) and meta["sha256"] == result["sha256"]
    assert meta["config"]["vary_appearance"] is True and meta["data"] == "classic phantom seeds 40000-40001"


def test_the_command_line_offers_the_masks_training_knows() -> None:
    """`--masks` of train-radiomics and train-classifier: the choices are training's own."""
    from dicomnode.cli import MASKS as CLI_MASKS
    from training.node_segmentation import MASKS

    assert CLI_MASKS == MASKS
