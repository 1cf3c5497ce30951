"""The U-Net's inference precision: a closed set, parsed where it enters (configuration, CLI)."""

from __future__ import annotations

import enum


class Precision(enum.StrEnum):
    BF16 = "bf16"  # the fast path: channels-last tensors and bf16 autocast on the CPU
    FP32 = "fp32"  # plain fp32


def parse_precision(value: str | Precision) -> Precision:
    """``value`` as a :class:`Precision`; ``ValueError`` says what is accepted."""
    try:
        return Precision(value)
    except ValueError:
        raise ValueError(f"precision {value!r} is not one of {', '.join(repr(str(p)) for p in Precision)}") from None
