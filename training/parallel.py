"""Making phantom studies in worker processes: one thread each, the order of the inputs kept."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from tqdm import tqdm

In = TypeVar("In")
Out = TypeVar("Out")


def map_studies(fn: Callable[[In], Out], jobs: Sequence[In], processes: int, desc: str) -> list[Out]:
    """``[fn(j) for j in jobs]`` with a progress bar, in ``processes`` spawned processes (one torch
    thread each, so they do not fight over the cores) when more than one; the calling process keeps
    its own thread setting for training. ``fn`` must be importable (a module-level function)."""
    if processes <= 1:
        return [fn(j) for j in tqdm(jobs, desc=desc, unit="study")]
    with multiprocessing.get_context("spawn").Pool(processes, initializer=torch.set_num_threads,
                                                  initargs=(1,)) as pool:
        return list(tqdm(pool.imap(fn, jobs), total=len(jobs), desc=desc, unit="study"))
