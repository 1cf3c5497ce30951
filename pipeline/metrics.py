"""Segmentation metrics of the paper (equations 10-12), over whole volumes."""

from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    pred, truth = pred.astype(bool), truth.astype(bool)
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    tn = int(pred.size - tp - fp - fn)
    return tp, tn, fp, fn


def segmentation_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """PA = (TP+TN)/all, IoU = TP/(TP+FN+FP), Dice = 2TP/((TP+FN)+(TP+FP)); an empty prediction
    of an empty truth scores 1."""
    tp, tn, fp, fn = confusion(pred, truth)
    union = tp + fn + fp
    return {
        "pa": (tp + tn) / max(tp + tn + fp + fn, 1),
        "iou": 1.0 if union == 0 else tp / union,
        "dice": 1.0 if union == 0 else 2 * tp / (2 * tp + fn + fp),
    }


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return segmentation_scores(pred, truth)["dice"]


def overlap_coefficient(a: np.ndarray, b: np.ndarray) -> float:
    """|A and B| / min(|A|, |B|) (Szymkiewicz-Simpson): the share of the smaller mask that lies in
    the other, 1 when one holds the other whatever their sizes; 0 when either is empty. Where two
    segmentations are, not how alike their outlines are (Dice)."""
    tp, _, fp, fn = confusion(a, b)
    smaller = min(tp + fp, tp + fn)
    return tp / smaller if smaller else 0.0
