"""One loaded model per weights file (and settings) per process, made on first use.

Loading a model checks its weights' checksum and builds the network (hundreds of milliseconds to
seconds): a worker does it once, whatever the number of jobs and threads that ask for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``get(*key)`` returns ``make(*key)``, made once per key under a lock."""

    def __init__(self, make: Callable[..., T]) -> None:
        self._make = make
        self._made: dict[tuple[Hashable, ...], T] = {}
        self._lock = threading.Lock()

    def get(self, *key: Hashable) -> T:
        with self._lock:
            if key not in self._made:
                self._made[key] = self._make(*key)
            return self._made[key]
