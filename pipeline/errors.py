"""Errors the pipeline raises for input it will not analyse (as opposed to failures)."""

from __future__ import annotations


class InputRejected(Exception):
    """The series cannot be analysed as it is; retrying would give the same answer.

    ``reason`` is a short stable code (``undecodable_pixels``, ``inconsistent_geometry`` ...),
    ``detail`` a sentence for people.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
