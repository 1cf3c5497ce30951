"""Fitting the radiomics signature (paper sections 2.4 and 3.1): mRMR to 10 features, LASSO
logistic regression with 10-fold CV choosing the penalty; the result is a
:class:`models.radiomics_signature.Signature`.

mRMR is written here on scikit-learn's mutual information (the mRMR packages are GPL or
non-commercial): relevance = MI(feature; class), redundancy = mean MI(feature; each selected
feature), greedy on relevance - redundancy (the MID criterion).
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

from models.radiomics_signature import Signature
from training.cv_metrics import binary_metrics, require_per_class, summarise

N_SELECTED = 10
LASSO_FOLDS = 10  # the stratified CV inside LogisticRegressionCV that chooses the penalty


def usable_columns(x: np.ndarray) -> np.ndarray:
    """Finite, non-constant features."""
    finite = np.all(np.isfinite(x), axis=0)
    return finite & (np.nanstd(np.where(np.isfinite(x), x, 0), axis=0) > 1e-12)


def mrmr(x: np.ndarray, y: np.ndarray, k: int = N_SELECTED, seed: int = 0) -> list[int]:
    """Indices of ``k`` columns of standardised ``x`` by minimum redundancy, maximum relevance."""
    relevance = mutual_info_classif(x, y, random_state=seed)
    candidates = list(np.argsort(-relevance)[: max(50, 5 * k)])  # MI is costly: the most relevant
    selected = [candidates.pop(0)]
    redundancy = np.zeros(len(x[0]))
    while len(selected) < k and candidates:
        last = selected[-1]
        redundancy[candidates] += mutual_info_regression(x[:, candidates], x[:, last], random_state=seed)
        scores = [relevance[c] - redundancy[c] / len(selected) for c in candidates]
        selected.append(candidates.pop(int(np.argmax(scores))))
    return [int(i) for i in selected]


def fit(x: np.ndarray, y: np.ndarray, names: list[str], mode: str, seed: int = 0) -> Signature:
    """mRMR then LASSO logistic regression; raises :class:`TooFewStudiesError` when a class has
    fewer studies than the penalty search's folds."""
    require_per_class(y, LASSO_FOLDS, f"the LASSO penalty search ({LASSO_FOLDS}-fold CV)")
    keep = usable_columns(x)
    x, names = x[:, keep], [n for n, k in zip(names, keep, strict=True) if k]
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / std
    chosen = mrmr(z, y, seed=seed)
    lasso = LogisticRegressionCV(Cs=20, cv=StratifiedKFold(LASSO_FOLDS, shuffle=True, random_state=seed),
                                 l1_ratios=(1.0,), solver="saga", scoring="roc_auc", max_iter=5000,
                                 random_state=seed, use_legacy_attributes=False)
    lasso.fit(z[:, chosen], y)
    coef = np.ravel(lasso.coef_)
    nonzero = [i for i, c in enumerate(coef) if abs(c) > 1e-9] or list(range(len(chosen)))
    return Signature(
        mode=mode,
        features=[names[chosen[i]] for i in nonzero],
        means=[float(mean[chosen[i]]) for i in nonzero],
        stds=[float(std[chosen[i]]) for i in nonzero],
        coefficients=[float(coef[i]) for i in nonzero],
        intercept=float(np.ravel(lasso.intercept_)[0]),
        c=float(np.ravel(lasso.C_)[0]),
        versions={p: version(p) for p in ("pyradiomics-bhklab", "scikit-learn", "numpy")},
    )


def cross_validate(x: np.ndarray, y: np.ndarray, names: list[str], mode: str, folds: int = 10,
                   seed: int = 0) -> dict:
    """10-fold CV of the whole recipe (mRMR and LASSO refitted inside each fold: no leakage).

    Raises :class:`TooFewStudiesError` before any fitting when a class has fewer studies than the
    folds, or a fold's training part fewer than the LASSO penalty search's folds."""
    require_per_class(y, folds, f"{folds}-fold cross-validation")
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    for k, (train, _) in enumerate(splits, start=1):
        require_per_class(y[train], LASSO_FOLDS, f"the training part of fold {k}/{folds} (its LASSO "
                          f"penalty search is {LASSO_FOLDS}-fold CV)")
    per_fold = []
    scores = np.zeros(len(y))
    for train, test in splits:
        sig = fit(x[train], y[train], names, mode, seed)
        idx = {n: i for i, n in enumerate(names)}
        prob = np.array([sig.probability({f: row[idx[f]] for f in sig.features}) for row in x[test]])
        scores[test] = prob
        per_fold.append(binary_metrics(y[test], prob))
    summary = summarise(per_fold)
    return {"folds": folds, "metrics": summary, "scores": scores.tolist(), "labels": y.tolist()}
