"""One model per key per process, made once even when threads ask at the same time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pipeline.per_process import PerProcess


def test_each_key_is_made_once_whatever_the_threads() -> None:
    made: list[tuple[Path, str]] = []

    def slow(path: Path, precision: str) -> object:
        made.append((path, precision))
        time.sleep(0.05)  # long enough for the other threads to ask meanwhile
        return object()

    models = PerProcess(slow)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(models.get(Path("a.pt"), "fp32"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == [(Path("a.pt"), "fp32")] and all(g is got[0] for g in got)
    other = models.get(Path("a.pt"), "bf16")
    assert other is not got[0] and made[-1] == (Path("a.pt"), "bf16")
    assert models.get(Path("a.pt"), "bf16") is other and len(made) == 2
