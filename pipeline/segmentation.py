"""U-Net inference for the worker: weights loaded once per process, checksum verified first.

The fast path is the default: channels-last tensors and bf16 autocast on the CPU (measured in
``bench/unet.py``); ``precision="fp32"`` switches back to plain fp32 (:class:`pipeline.precision.Precision`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models import weights
from models.unet import AttentionResUNet
from models.unet_io import from_network, normalise, to_network
from pipeline.per_process import PerProcess
from pipeline.precision import Precision, resolve

DEFAULT_WEIGHTS = weights.WEIGHTS_DIR / "unet.pt"


class UNetSegmenter:
    def __init__(self, path: Path = DEFAULT_WEIGHTS, *, precision: str | Precision = Precision.AUTO,
                 batch: int = 4) -> None:
        """Raises ``ValueError`` for a precision other than auto, bf16 or fp32."""
        self.precision = resolve(precision)
        self.model = AttentionResUNet()
        self.sha256 = weights.load_into(self.model, path)
        self.model.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.batch = batch

    @torch.no_grad()
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """(slices, rows, cols) post-contrast image -> lesion probability, same shape."""
        x = to_network(normalise(image)).contiguous(memory_format=torch.channels_last)
        out = []
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision is Precision.BF16):
            for i in range(0, len(x), self.batch):
                out.append(torch.softmax(self.model(x[i:i + self.batch]).float(), dim=1)[:, 1])
        return from_network(torch.cat(out), image.shape[1:])

    def segment(self, image: np.ndarray) -> np.ndarray:
        return self.probabilities(image) >= 0.5


_SEGMENTERS: PerProcess[UNetSegmenter] = PerProcess(lambda path, precision: UNetSegmenter(path, precision=precision))


def get_segmenter(path: Path = DEFAULT_WEIGHTS, precision: str | Precision = Precision.AUTO) -> UNetSegmenter:
    """One segmenter per (weights, precision) per process."""
    return _SEGMENTERS.get(Path(path), resolve(precision))
