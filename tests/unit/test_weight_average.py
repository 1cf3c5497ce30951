"""Weights averaged into one network (``python -m training.weight_average``): the mean, the shares,
the checksums of the inputs in the ``.json``, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from models import weights
from training.weight_average import average, main


def _net(fill: float, batches: int) -> nn.Module:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(fill)
    net[1].running_mean.fill_(fill)
    net[1].num_batches_tracked.fill_(batches)
    return net


def _saved(tmp_path: Path, name: str, fill: float, batches: int, meta: dict) -> Path:
    path = tmp_path / name
    weights.save(_net(fill, batches), path, meta)
    return path


def test_the_output_is_the_share_weighted_mean_with_its_inputs_named(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    a = _saved(tmp_path, "a.pt", 1.0, 7, {"command": "spinenode train-unet A"})
    b = _saved(tmp_path, "b.pt", 3.0, 5, {"note": "epoch 8 of B"})
    out = tmp_path / "c.pt"
    assert main([str(a), str(b), "--shares", "3", "1", "--out", str(out), "--note", "why"]) == 0
    net = _net(0.0, 0)
    digest = weights.load_into(net, out)  # written with a checksum the loader accepts
    assert torch.allclose(net[0].weight, torch.full_like(net[0].weight, 1.5))  # 0.75 x 1 + 0.25 x 3
    assert torch.allclose(net[1].running_mean, torch.full((2,), 1.5))
    assert int(net[1].num_batches_tracked) == 7  # an integer buffer: the first input's
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["sha256"] == digest and meta["note"] == "why" and meta["model"] == "weight average"
    assert [(i["file"], i["sha256"], i["share"]) for i in meta["inputs"]] == [
        ("a.pt", weights.sha256_file(a), 0.75), ("b.pt", weights.sha256_file(b), 0.25)]
    assert meta["inputs"][0]["command"] == "spinenode train-unet A" and meta["inputs"][1]["note"] == "epoch 8 of B"
    assert json.loads(capsys.readouterr().out)["sha256"] == digest


def test_floats_are_averaged_and_integers_come_from_the_first_state() -> None:
    states = [{"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(4)},
              {"w": torch.tensor([1.0, 4.0]), "n": torch.tensor(9)}]
    mean = average(states, [1.0, 1.0])
    assert torch.equal(mean["w"], torch.tensor([0.5, 3.0])) and int(mean["n"]) == 4


def test_the_cli_defaults_to_equal_shares(tmp_path: Path) -> None:
    a, b = _saved(tmp_path, "a.pt", 0.0, 1, {}), _saved(tmp_path, "b.pt", 2.0, 1, {})
    assert main([str(a), str(b), "--out", str(tmp_path / "c.pt")]) == 0
    state, _ = weights.verified_state(tmp_path / "c.pt")
    assert torch.allclose(state["0.weight"], torch.ones_like(state["0.weight"]))
    meta = json.loads((tmp_path / "c.pt.json").read_text())
    assert [i["share"] for i in meta["inputs"]] == [0.5, 0.5]


@pytest.mark.parametrize(("states", "shares", "message"), [
    ([{"w": torch.zeros(2)}, {"v": torch.zeros(2)}], [1.0, 1.0], "other tensors"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}], [1.0, 1.0], "shape"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(2)}], [1.0], "2 weights files and 1 shares"),
    ([{"w": torch.zeros(2)}, {"w": torch.zeros(2)}], [1.0, 0.0], "positive"),
])
def test_inputs_that_cannot_be_averaged_are_refused(states: list, shares: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        average(states, shares)


def test_the_cli_refuses_tampered_or_mismatched_inputs_and_writes_nothing(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    a = _saved(tmp_path, "a.pt", 1.0, 1, {})
    other = tmp_path / "other.pt"
    weights.save(nn.Conv2d(1, 3, 3), other, {})
    out = tmp_path / "c.pt"
    with pytest.raises(SystemExit) as exit_info:
        main([str(a), str(other), "--out", str(out)])
    assert exit_info.value.code == 2 and "other tensors" in capsys.readouterr().err
    b = _saved(tmp_path, "b.pt", 2.0, 1, {})
    raw = bytearray(b.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one byte changed after the checksum was written
    b.write_bytes(bytes(raw))
    with pytest.raises(SystemExit):
        main([str(a), str(b), "--out", str(out)])
    assert "SHA-256" in capsys.readouterr().err and not out.exists()
