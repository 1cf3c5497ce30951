"""Image analysis for the spinal-metastasis node: pure functions over arrays and metadata.

``pipeline`` never imports ``dicomnode`` (no networking, no database). The node calls it through
the functions exported here.
"""

from __future__ import annotations

from pipeline.analysis import Analysis, analyse
from pipeline.errors import InputRejected
from pipeline.volume import Volume, load_series

__all__ = ["Analysis", "InputRejected", "Volume", "analyse", "load_series"]
