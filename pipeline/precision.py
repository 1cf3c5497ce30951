"""The U-Net's inference precision: a closed set, parsed where it enters (configuration, CLI).

``auto`` (the default) picks bf16 only where the processor computes it natively (AVX-512 BF16 or
AMX on x86, or a CUDA device): there bf16 autocast is about 1.8x faster than fp32 at the same Dice
(``bench/unet.py``). On a processor without it (an AVX2-only CPU) PyTorch emulates bf16 and the
same network runs about 2.7x slower than in fp32, so ``auto`` takes fp32 there.
"""

from __future__ import annotations

import enum
from functools import cache
from pathlib import Path


class Precision(enum.StrEnum):
    AUTO = "auto"  # bf16 where the hardware has it, else fp32
    BF16 = "bf16"  # channels-last tensors and bf16 autocast
    FP32 = "fp32"  # plain fp32


def parse_precision(value: str | Precision) -> Precision:
    """``value`` as a :class:`Precision`; ``ValueError`` says what is accepted."""
    try:
        return Precision(value)
    except ValueError:
        raise ValueError(f"precision {value!r} is not one of {', '.join(repr(str(p)) for p in Precision)}") from None


@cache
def native_bf16() -> bool:
    """Whether this machine's CPU has bf16 arithmetic (Linux: the flags in /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve(precision: str | Precision) -> Precision:
    """``auto`` made concrete for this machine; bf16 and fp32 as given."""
    chosen = parse_precision(precision)
    if chosen is Precision.AUTO:
        return Precision.BF16 if native_bf16() else Precision.FP32
    return chosen
