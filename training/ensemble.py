"""Classifier weights combined into one ensemble file: ``python -m training.ensemble A.pt B.pt --out C.pt``.

Each input is a file ``spinenode train-classifier --out`` wrote (one network) or an ensemble; the
output holds every network, P(metastasis) being their mean (:class:`models.inception3d.Ensemble`;
the networks of a file named by ``--dynamic-only`` count for dynamic series only), with one checksum
and a ``.json`` naming each member's checksum and training data. With ``--calibration-single N``
and ``--calibration-dynamic M`` the mean is calibrated per kind of series on N single-phase and M
dynamic validation phantoms of each look (:mod:`training.calibration`; an input's own calibration
is not carried over, since it was fitted to that file's mean). With ``--work`` (the cube caches of
``spinenode train-classifier``) the ensemble is scored on the held-out phantoms as
``train-classifier`` scores one network, and the report is printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, cast

import torch

from models import weights
from models.inception3d import Ensemble, InceptionResNet3D, load
from training.node_segmentation import MASKS


def members_of(path: Path) -> list[tuple[InceptionResNet3D, bool]]:
    """The networks in one weights file (checksum verified), each with its ``dynamic_only`` flag."""
    model, _ = load(path)
    if isinstance(model, Ensemble):
        return list(zip(cast(list[InceptionResNet3D], list(model.members)), model.dynamic_only.tolist(), strict=True))
    return [(model, False)]


def combine(paths: list[Path], dynamic_only: frozenset[Path] = frozenset()) -> Ensemble:
    """One ensemble of every network in ``paths``; those of a file in ``dynamic_only`` (and the
    dynamic-only members of an ensemble file) join the mean for dynamic series only."""
    networks = [(net, flag or path in dynamic_only) for path in paths for net, flag in members_of(path)]
    ensemble = Ensemble(len(networks))
    for slot, (net, _) in zip(ensemble.members, networks, strict=True):
        slot.load_state_dict(net.state_dict())
    ensemble.dynamic_only = torch.tensor([flag for _, flag in networks])
    ensemble.check()
    return ensemble.eval()


def _member_meta(path: Path) -> list[dict[str, Any]]:
    """What the ``.json`` says of each network in ``path``: an ensemble file lists its members
    (their ``dynamic_only`` flags are then set from the weights, which is what applies)."""
    meta = weights.saved_meta(path)
    if "members" in meta:
        return [dict(m) for m in meta["members"]]
    return [{"file": path.name, "sha256": weights.sha256_file(path), "data": meta.get("data"),
             "steps": meta.get("steps")}]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", type=Path, nargs="+", help="classifier weights files (with .sha256 beside)")
    parser.add_argument("--dynamic-only", type=Path, nargs="*", default=[],
                        help="inputs whose networks join the mean for dynamic series only")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None,
                        help="cube caches: score on the held-out phantoms (and calibrate)")
    for name, default in (("single", 60), ("dynamic", 40), ("randomised", 40), ("randomised-dynamic", 0)):
        parser.add_argument(f"--held-out-{name}", type=int, default=default, help="held-out studies of this set")
    parser.add_argument("--calibration-single", type=int, default=0,
                        help="single-phase validation studies per look to calibrate on (0: not calibrated)")
    parser.add_argument("--calibration-dynamic", type=int, default=0,
                        help="dynamic validation studies per look to calibrate on (0: not calibrated)")
    parser.add_argument("--masks", choices=MASKS, default="truth",
                        help="held-out cubes around the ground truth's lesion or the node's own")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1, help="worker processes making the held-out cubes")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    calibrating = args.calibration_single > 0 or args.calibration_dynamic > 0
    if calibrating and args.work is None:
        parser.error("calibration needs --work (where the validation studies' cubes are cached)")
    dynamic_only = frozenset(args.dynamic_only)
    if not dynamic_only <= set(args.inputs):
        parser.error("--dynamic-only names a file that is not one of the inputs")
    # before --out may overwrite one of them
    members = [m for p in args.inputs for m in _member_meta(p)]
    try:
        ensemble = combine(args.inputs, dynamic_only)
    except ValueError as exc:
        parser.error(str(exc))
    if len(members) != len(ensemble.members):
        parser.error(f"the inputs' .json files name {len(members)} networks, the weights hold "
                     f"{len(ensemble.members)}")
    for entry, flag in zip(members, ensemble.dynamic_only.tolist(), strict=True):  # as the weights apply them
        entry.pop("dynamic_only", None)
        if flag:
            entry["dynamic_only"] = True
    meta: dict[str, Any] = {"model": "Ensemble of InceptionResNet3D", "members": members, "in_channels": 5,
                            "width": 4, "torch": torch.__version__}
    result: dict[str, Any] = {}
    if calibrating:
        from training.calibration import calibrate

        args.work.mkdir(parents=True, exist_ok=True)
        result["calibration"] = calibrate(ensemble, args.work, single=args.calibration_single,
                                          dynamic=args.calibration_dynamic, processes=args.processes)
        meta["calibration"] = {key: {k: v for k, v in fit.items() if not k.startswith("reliability")}
                               if isinstance(fit, dict) else fit for key, fit in result["calibration"].items()}
    result |= {"sha256": weights.save(ensemble, args.out, meta), "members": members}
    if args.work is not None:
        from training.train_classifier import TrainConfig, held_out

        cfg = TrainConfig(held_out_single=args.held_out_single, held_out_dynamic=args.held_out_dynamic,
                          held_out_randomised=args.held_out_randomised,
                          held_out_randomised_dynamic=args.held_out_randomised_dynamic, masks=args.masks,
                          processes=args.processes)
        result["held_out"] = held_out(ensemble, cfg, args.work, None)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
