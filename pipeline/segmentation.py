"""U-Net inference for the worker: weights loaded once per process, checksum verified first.

The fast path is the default: channels-last tensors and bf16 autocast on the CPU (measured in
``bench/unet.py``); ``precision="fp32"`` switches back to plain fp32 (:class:`pipeline.precision.Precision`).
The node reports only the lesions that lie in the located vertebral body, so the network runs on
the window of its grid around that body plus :data:`CONTEXT_MM` (:meth:`UNetSegmenter.probabilities_in_body`),
a fifth to a third of the 512x512 grid; the whole slices when no body was found.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from models import weights
from models.unet import AttentionResUNet
from models.unet_io import from_network, network_window, scale_by_marrow, to_network
from pipeline.anatomy import in_plane_box
from pipeline.per_process import PerProcess
from pipeline.plausibility import drop_faint, keep_in_body
from pipeline.precision import Precision, resolve

DEFAULT_WEIGHTS = weights.WEIGHTS_DIR / "unet.pt"
CONTEXT_MM = 30.0  # around the body: a primary tumour breaking the cortex, and the network's context
# What the node's U-Net masks are, beside the weights: 1, the network's output; 2 (2026-12-02), the
# mean of its output on the image and on the left-right mirror image. Cached cubes of the node's
# lesions are named by it (``training.train_classifier._cache_tag``).
MASK_VERSION = 2


def body_box(body: np.ndarray, pixel_mm: tuple[float, float], margin_mm: float) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1) of the (slices, rows, cols) body mask on any slice, grown by
    ``margin_mm`` and kept inside the image; None when the mask is empty."""
    if not body.any():
        return None
    _, rows, cols = in_plane_box(body, pad=(math.ceil(margin_mm / pixel_mm[0]), math.ceil(margin_mm / pixel_mm[1])))
    return rows.start, rows.stop, cols.start, cols.stop


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
    def probabilities(self, image: np.ndarray, marrow: float, window: tuple[slice, slice] | None = None
                      ) -> np.ndarray:
        """(slices, rows, cols) post-contrast image, whose normal marrow's level is ``marrow``
        (:func:`pipeline.anatomy.marrow_level`) -> lesion probability, same shape. With a
        ``window`` of the network grid (:func:`models.unet_io.network_window`) the network sees
        only that window and the rest is 0.

        The probability is the mean of the network's output on each slice and on its left-right
        mirror image (mirrored back), the two in one batch (:data:`MASK_VERSION` 2)."""
        x = to_network(scale_by_marrow(image, marrow))
        rows, cols = window or (slice(None), slice(None))
        part = x[:, :, rows, cols]
        out = []
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision is Precision.BF16):
            for i in range(0, len(part), self.batch):
                chunk = part[i:i + self.batch]
                both = torch.cat([chunk, chunk.flip(-1)]).contiguous(memory_format=torch.channels_last)
                p = torch.softmax(self.model(both).float(), dim=1)[:, 1]
                out.append(0.5 * (p[:len(chunk)] + p[len(chunk):].flip(-1)))
        prob = torch.zeros(x.shape[0], *x.shape[2:])
        prob[:, rows, cols] = torch.cat(out)
        return from_network(prob, image.shape[1:])

    def segment(self, image: np.ndarray, marrow: float) -> np.ndarray:
        return self.probabilities(image, marrow) >= 0.5

    def probabilities_in_body(self, image: np.ndarray, body: np.ndarray, marrow: float,
                              pixel_mm: tuple[float, float]) -> np.ndarray:
        """:meth:`probabilities` with the network run on the window of its grid around the located
        vertebral body plus :data:`CONTEXT_MM` (the whole slices when ``body`` is empty)."""
        box = body_box(body, pixel_mm, CONTEXT_MM)
        return self.probabilities(image, marrow, None if box is None else network_window(image.shape[1:], box))

    def segment_in_body(self, image: np.ndarray, body: np.ndarray, marrow: float,
                        pixel_mm: tuple[float, float]) -> np.ndarray:
        """The mask the node reports: the U-Net's lesions (:meth:`probabilities_in_body`), faint
        one-slice ones dropped (:func:`pipeline.plausibility.drop_faint`), that lie in the located
        vertebral body (:func:`pipeline.plausibility.keep_in_body`); ``marrow``: normal marrow's
        level measured in that body."""
        probability = self.probabilities_in_body(image, body, marrow, pixel_mm)
        return keep_in_body(drop_faint(probability >= 0.5, probability), body, pixel_mm)


_SEGMENTERS: PerProcess[UNetSegmenter] = PerProcess(lambda path, precision: UNetSegmenter(path, precision=precision))


def get_segmenter(path: Path = DEFAULT_WEIGHTS, precision: str | Precision = Precision.AUTO) -> UNetSegmenter:
    """One segmenter per (weights, precision) per process."""
    return _SEGMENTERS.get(Path(path), resolve(precision))
