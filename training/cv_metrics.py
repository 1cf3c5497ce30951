"""Binary classification figures per fold and their summary (mean and range over folds): the
columns of the paper's Tables 1 and 3, shared by the radiomics and the classifier evaluations."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from training.errors import TooFewStudiesError


def binary_metrics(y: np.ndarray, prob: np.ndarray) -> dict[str, float | None]:
    """ACC, PRE, REC, F1 at P >= 0.5, and AUC (None when ``y`` holds one class only)."""
    pred = (prob >= 0.5).astype(int)
    return {"acc": float(accuracy_score(y, pred)), "pre": float(precision_score(y, pred, zero_division=0)),
            "rec": float(recall_score(y, pred, zero_division=0)), "f1": float(f1_score(y, pred, zero_division=0)),
            "auc": float(roc_auc_score(y, prob)) if len(set(y.tolist())) == 2 else None}


def summarise(per_fold: list[dict[str, float | None]]) -> dict[str, dict[str, float]]:
    """Mean, min and max of each figure over the folds (folds without it left out)."""
    summary = {}
    for name in per_fold[0]:
        values = [v for f in per_fold if (v := f[name]) is not None]
        summary[name] = {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}
    return summary


def require_per_class(y: np.ndarray, folds: int, purpose: str) -> None:
    """Raise :class:`TooFewStudiesError` unless each class of ``y`` (0 primary, 1 metastasis) has
    at least ``folds`` studies, as stratified ``folds``-fold cross-validation needs."""
    counts = np.bincount(np.asarray(y, dtype=int).ravel(), minlength=2)
    if int(counts.min()) < folds:
        raise TooFewStudiesError(
            f"{purpose} needs at least {folds} studies of each class, got {int(counts[1])} metastasis "
            f"and {int(counts[0])} primary: use more studies")
