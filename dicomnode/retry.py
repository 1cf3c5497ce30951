"""Retry policy: how long to wait before the next attempt, and when to give up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff: ``base_s * 2 ** (attempt - 1)``, capped at ``max_s``.

    ``attempt`` is the number of the attempt that just failed (1 for the first).
    """

    max_attempts: int = 5
    base_s: float = 10.0
    max_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_s <= 0 or self.max_s < self.base_s:
            raise ValueError(f"need 0 < base_s <= max_s, got base_s={self.base_s}, max_s={self.max_s}")

    def next_wait(self, attempt: int) -> float | None:
        """Seconds before the next attempt, or None when attempts are exhausted."""
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        if attempt >= self.max_attempts:
            return None
        return min(self.max_s, self.base_s * 2 ** (attempt - 1))
