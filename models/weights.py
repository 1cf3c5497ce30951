"""Shipped weights: saved small (fp16 state dict), loaded with their SHA-256 checked first."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class WeightsError(RuntimeError):
    """Shipped weights are missing or do not match their checksum."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(model: nn.Module, path: Path, meta: dict[str, Any]) -> str:
    """Write the state dict in fp16 (floats only) plus ``.sha256`` and ``.json`` beside it."""
    return save_state(model.state_dict(), path, meta)


def save_state(state: dict[str, torch.Tensor], path: Path, meta: dict[str, Any]) -> str:
    """:func:`save` for a state dict that is not (yet) in a module; returns the file's SHA-256."""
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    digest = sha256_file(path)
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    Path(f"{path}.json").write_text(json.dumps(meta | {"sha256": digest}, indent=2, sort_keys=True) + "\n")
    return digest


def saved_meta(path: Path) -> dict[str, Any]:
    """What :func:`save` wrote in the ``.json`` beside ``path``; empty when there is none."""
    meta_file = Path(f"{path}.json")
    return json.loads(meta_file.read_text()) if meta_file.exists() else {}


def load_into(model: nn.Module, path: Path) -> str:
    """Verify ``path`` against its ``.sha256`` file, load it into ``model``; returns the digest."""
    state, digest = verified_state(path)
    model.load_state_dict(state)
    return digest


def verified_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict in ``path`` (floats as fp32) once its SHA-256 matches its ``.sha256`` file,
    and that digest; raises :class:`WeightsError` when either file is missing or they differ."""
    path = Path(path)
    check = Path(f"{path}.sha256")
    if not path.exists() or not check.exists():
        raise WeightsError(f"weights {path} or its checksum file is missing")
    expected = check.read_text().split()[0]
    digest = sha256_file(path)
    if digest != expected:
        raise WeightsError(f"weights {path} have SHA-256 {digest}, expected {expected}: refusing to load")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, digest
