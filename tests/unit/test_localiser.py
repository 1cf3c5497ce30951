"""The spine localiser: its grid, its training, and the shipped weights on held-out phantoms of both looks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.spine_io import BODY, CLASSES, DISC, GRID_MM, GRID_SIZE, from_grid, labels_to_grid, to_grid
from pipeline.anatomy import body_from_probabilities, ellipse_mask, locate_body
from pipeline.localiser import DEFAULT_LOCALISER, get_localiser


@pytest.mark.parametrize(("shape", "px"), [((512, 512), 0.47), ((256, 192), 1.06), ((320, 320), 1.2),
                                           ((100, 100), 4.0)])
def test_grid_round_trip_keeps_geometry(shape: tuple[int, int], px: float) -> None:
    """A block survives to_grid -> from_grid in place, whether the image is padded or cropped; the
    grid's pixels are GRID_MM whatever the matrix."""
    image = np.zeros((2, *shape), dtype=np.float32)
    r0, r1, c0, c1 = shape[0] * 3 // 8, shape[0] // 2, shape[1] * 3 // 8, shape[1] * 5 // 8
    image[:, r0:r1, c0:c1] = 1.0
    grid = to_grid(image, (px, px))
    assert grid.shape == (2, 1, GRID_SIZE, GRID_SIZE)
    assert float(grid.sum()) / 2 == pytest.approx(image[0].sum() * (px / GRID_MM) ** 2, rel=0.1)
    back = from_grid(torch.cat([grid, 1 - grid], 1), shape, (px, px))
    assert back.shape == (2, 2, *shape)
    assert ((back[:, 0] >= 0.5) == (image >= 0.5)).mean() > 0.995
    labels = labels_to_grid(image.astype(np.uint8) * DISC, (px, px))
    assert labels.dtype == torch.uint8 and set(labels.unique().tolist()) == {0, DISC}


def test_body_from_probabilities_measures_the_column() -> None:
    """An ellipse of body (disc on one slice) plus a stray blob: the largest column wins, its
    centre and semi-axes are the ellipse's, the disc slice has no body mask."""
    shape = (4, 120, 120)
    prob = np.zeros((4, CLASSES, *shape[1:]), dtype=np.float32)
    prob[:, 0] = 1.0
    ell = ellipse_mask(shape[1:], (60.0, 50.0), (20.0, 30.0))
    prob[:, 0][:, ell], prob[:, BODY][:, ell] = 0.0, 1.0
    prob[2, BODY][ell], prob[2, DISC][ell] = 0.0, 1.0
    blob = ellipse_mask(shape[1:], (10.0, 10.0), (3.0, 3.0))
    prob[:, 0][:, blob], prob[:, BODY][:, blob] = 0.0, 1.0
    smooth = np.full(shape, 100.0, dtype=np.float32)
    body = body_from_probabilities(prob, smooth, (1.0, 1.0))
    assert body is not None and body.method == "localiser"
    assert body.centre == pytest.approx((60.0, 50.0), abs=0.5)
    assert body.semi_axes == pytest.approx((20.0, 30.0), rel=0.05)
    assert body.mask[[0, 1, 3]].sum() == 3 * ell.sum() and not body.mask[2].any() and not body.mask[:, 10, 10].any()
    prob[:, BODY] = prob[:, DISC] = 0.0
    assert body_from_probabilities(prob, smooth, (1.0, 1.0)) is None


def _centre_in(truth_body: np.ndarray, centre: tuple[float, float]) -> bool:
    return bool(truth_body.any(0)[int(round(centre[0])), int(round(centre[1]))])


def test_shipped_localiser_finds_the_body_in_both_looks() -> None:
    """Held-out seeds (never trained on): the centre lies in the true body in every study, and the
    body mask overlaps the truth."""
    from phantom import generate_study
    from phantom.randomised import generate_randomised
    from training.train_spine import classic_targets

    for seed in range(900100, 900106):
        r = generate_randomised(seed, matrix=(256, 256))
        px = r.meta["pixel_mm"]
        image = r.pixels[0].astype(np.float32)
        body = locate_body(image, image, (px, px))
        assert body.method == "localiser" and _centre_in(r.body, body.centre), seed
        assert (body.mask & r.body).sum() > 0.6 * body.mask.sum()
    for seed in range(900100, 900103):
        study = generate_study(seed, matrix=(256, 256))
        px = study.params.pixel_spacing_mm
        image = study.pixels[0].astype(np.float32)
        body = locate_body(image, image, (px, px))
        truth = classic_targets(study.params, image.shape) == BODY
        assert body.method == "localiser" and _centre_in(truth, body.centre), seed


def test_shipped_localiser_is_checksummed_and_documented() -> None:
    meta = json.loads(Path(f"{DEFAULT_LOCALISER}.json").read_text())
    assert get_localiser().sha256 == meta["sha256"]
    assert DEFAULT_LOCALISER.stat().st_size < 3_000_000
    assert "randomised" in meta["data"]


def test_training_runs_two_steps(tmp_path: Path) -> None:
    from training.train_spine import SpineConfig, train

    cfg = SpineConfig(studies=2, val_studies=1, epochs=1, steps_per_epoch=2, batch=2, threads=1)
    result = train(cfg, tmp_path / "work", tmp_path / "spine.pt")
    assert len(result["history"]) == 1 and np.isfinite(result["history"][0]["loss"])
    assert 0.0 <= result["history"][0]["body_dice"] <= 1.0
    assert Path(f"{tmp_path / 'spine.pt'}.sha256").read_text().split()[0] == result["sha256"]


def test_fine_tuning_starts_from_the_given_weights(tmp_path: Path) -> None:
    """``--init``: the run starts from the shipped weights (checksum verified); with a learning rate
    of ~0 its convolutions stay the shipped ones, where a fresh start draws new ones."""
    from models import weights
    from training.train_spine import SpineConfig, train

    shipped, _ = weights.verified_state(DEFAULT_LOCALISER)
    for init, same in ((str(DEFAULT_LOCALISER), True), (None, False)):
        cfg = SpineConfig(studies=2, val_studies=1, epochs=1, steps_per_epoch=1, batch=2, threads=1, lr=1e-12,
                          init=init)
        out = tmp_path / f"spine-{same}.pt"
        train(cfg, tmp_path / f"work-{same}", out)
        state, _ = weights.verified_state(out)
        convs = [k for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
        assert convs and all(torch.allclose(state[k], shipped[k], atol=1e-3) for k in convs) is same


def test_fine_tuning_from_missing_weights_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong ``--init`` stops at once with exit status 2 and the path, before any data is made."""
    from dicomnode.cli import main

    argv = ["train-spine", "--init", str(tmp_path / "nowhere.pt"), "--work", str(tmp_path / "work"), "--studies", "2"]
    assert main(argv) == 2
    assert "nowhere.pt" in capsys.readouterr().err and not (tmp_path / "work").exists()
