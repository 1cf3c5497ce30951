"""The phantom looks the models are trained and evaluated on, as (seed, pixels, mask) studies.

* ``classic``: ``phantom.generate_study``, tissues painted slice by slice with PHANTOM.md's table
  (one vendor look, tilt in the headers only);
* ``randomised``: ``phantom.generate_randomised``, 3D label maps with discs, endplates, posterior
  elements, organs and rendered tilt, every tissue's intensity random (SynthSeg-style).

Two looks built by different methods give a leave-one-look-out check: a model trained on one is
scored on the other, which it never saw. Seeds are disjoint per use (see ``SEEDS``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from training.parallel import map_studies
from training.seg_data import SliceSet, prepare

LOOKS = ("classic", "randomised")
# where each use draws its seeds from: training, validation during training, held-out evaluation
SEEDS = {"train": 0, "validation": 800_000, "held_out": 900_000}


def studies(look: str, seeds: range | list[int], dynamic_fraction: float = 0.25
            ) -> Iterator[tuple[int, np.ndarray, np.ndarray, float]]:
    """(seed, pixels (phases, slices, rows, cols), mask, pixel spacing in mm) for each seed of ``look``."""
    if look == "classic":
        from phantom import generate_study

        for seed in seeds:
            rng = np.random.default_rng([seed, 99])
            phases = int(rng.integers(3, 9)) if rng.random() < dynamic_fraction else 1
            study = generate_study(seed, phases=phases)
            yield seed, study.pixels, study.mask, float(study.params.pixel_spacing_mm)
    elif look == "randomised":
        from phantom.randomised import generate_randomised

        for seed in seeds:
            r = generate_randomised(seed)
            yield seed, r.pixels, r.mask, float(r.meta["pixel_mm"])
    else:
        raise ValueError(f"unknown phantom look {look!r}: use one of {', '.join(LOOKS)}")


def mixed(seeds: range | list[int], randomised_fraction: float
          ) -> Iterator[tuple[int, np.ndarray, np.ndarray, float]]:
    """Studies of both looks: each seed is drawn from ``randomised`` with the given probability."""
    for seed in seeds:
        look = "randomised" if np.random.default_rng([seed, 7]).random() < randomised_fraction else "classic"
        yield from studies(look, [seed])


def _prepare_one(args: tuple[str, int, float]) -> tuple[torch.Tensor, torch.Tensor]:
    look, seed, fraction = args
    source = mixed([seed], fraction) if look == "mixed" else studies(look, [seed])
    _, pixels, mask, px = next(iter(source))
    prepared = prepare(pixels, mask, (px, px))
    return prepared.images, prepared.masks


def prepared_studies(look: str, seeds: range | list[int], *, randomised_fraction: float = 0.7,
                     processes: int = 1, desc: str = "phantoms") -> list[SliceSet]:
    """Each study of ``look`` ("classic", "randomised" or "mixed") prepared at network size, made
    in ``processes`` worker processes (one thread each); the order follows ``seeds``."""
    if look not in (*LOOKS, "mixed"):
        raise ValueError(f"unknown phantom look {look!r}: use one of {', '.join((*LOOKS, 'mixed'))}")
    jobs = [(look, seed, randomised_fraction) for seed in seeds]
    return [SliceSet(images, masks) for images, masks in map_studies(_prepare_one, jobs, processes, desc)]
