"""Image analysis for the spinal-metastasis node: pure functions over arrays and metadata.

``pipeline`` never imports ``dicomnode`` (no networking, no database). The node calls it through
the names exported here. They are imported on first use, so that a process that only receives
(the SCP) does not load torch and the models' code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.analysis import Analysis, analyse
    from pipeline.errors import InputRejected
    from pipeline.volume import Volume, load_series

_EXPORTS = {"Analysis": "pipeline.analysis", "analyse": "pipeline.analysis", "InputRejected": "pipeline.errors",
            "Volume": "pipeline.volume", "load_series": "pipeline.volume"}

__all__ = ["Analysis", "InputRejected", "Volume", "analyse", "load_series"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
