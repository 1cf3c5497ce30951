"""Early wake-ups for the polling loops of one process.

The worker polls the job queue and the sender the outbox, because jobs and results may come from
other processes sharing the database. Within one `spinenode serve`, the assembler rings the
workers' wake-up when it queues a job and a worker rings the sender's when it leaves results in
the outbox, so nothing waits for the next poll. A ring is never lost where it matters: whoever
rings has committed first, and a loop always polls the database after waking.
"""

from __future__ import annotations

import threading


class Wakeup:
    """``wait`` returns at ``timeout``, or at once when ``ring`` was called since the last wait."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def ring(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True when rung."""
        rung = self._event.wait(timeout)
        self._event.clear()
        return rung
