"""Network weights averaged into one file: ``python -m training.weight_average A.pt B.pt --out C.pt``.

Networks fine-tuned from the same start can be averaged weight by weight (a "model soup": Wortsman
et al., ICML 2022) into one network that is often better than either, at the cost of one network:
the node's time per study does not change, where an ensemble would run every member. Each input is
a file ``spinenode train-unet --out`` (or this module) wrote, checked against its ``.sha256``; all
must hold the same tensors (names and shapes). Floating tensors, BatchNorm's running statistics
among them, are averaged with the given shares (equal by default); integer buffers (BatchNorm's
count of batches seen) are taken from the first input. The ``.json`` beside the output names each
input's checksum and share, and what its own ``.json`` says made it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from models import weights


def average(states: list[dict[str, torch.Tensor]], shares: list[float]) -> dict[str, torch.Tensor]:
    """The share-weighted mean of ``states``, tensor by tensor (integers from the first state);
    raises ValueError when the states do not hold the same tensors or a share is not positive."""
    if not states or len(states) != len(shares):
        raise ValueError(f"{len(states)} weights files and {len(shares)} shares")
    if min(shares) <= 0:
        raise ValueError(f"shares must be positive, got {shares}")
    first = states[0]
    for n, state in enumerate(states[1:], start=2):
        if state.keys() != first.keys():
            raise ValueError(f"input {n} holds other tensors than input 1 (not the same network)")
        for key, tensor in state.items():
            if tensor.shape != first[key].shape:
                raise ValueError(f"input {n}'s {key} has shape {tuple(tensor.shape)}, input 1's "
                                 f"{tuple(first[key].shape)}")
    total = sum(shares)
    mean: dict[str, torch.Tensor] = {}
    for key, tensor in first.items():
        if not tensor.is_floating_point():
            mean[key] = tensor.clone()
            continue
        acc = torch.zeros_like(tensor, dtype=torch.float32)
        for state, share in zip(states, shares, strict=True):
            acc += (share / total) * state[key].float()
        mean[key] = acc
    return mean


def _input_meta(path: Path, digest: str, share: float) -> dict[str, Any]:
    meta = weights.saved_meta(path)
    entry: dict[str, Any] = {"file": path.name, "sha256": digest, "share": share}
    entry |= {k: meta[k] for k in ("command", "data", "inputs", "note") if k in meta}
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", type=Path, nargs="+", help="weights files (with .sha256 beside)")
    parser.add_argument("--shares", type=float, nargs="+", default=None,
                        help="one positive share per input, normalised to sum to 1 (default: equal)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="", help="why: written into the output's .json")
    args = parser.parse_args(argv)
    shares = args.shares if args.shares is not None else [1.0] * len(args.inputs)
    try:
        loaded = [weights.verified_state(p) for p in args.inputs]
        mean = average([state for state, _ in loaded], shares)
    except (ValueError, weights.WeightsError) as exc:
        parser.error(str(exc))
    total = sum(shares)
    # before --out may overwrite one of the inputs
    inputs = [_input_meta(p, digest, share / total)
              for p, (_, digest), share in zip(args.inputs, loaded, shares, strict=True)]
    meta: dict[str, Any] = {"model": "weight average", "inputs": inputs, "torch": torch.__version__}
    if args.note:
        meta["note"] = args.note
    digest = weights.save_state(mean, args.out, meta)
    print(json.dumps({"sha256": digest, "inputs": inputs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
