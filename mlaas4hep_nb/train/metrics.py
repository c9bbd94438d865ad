"""Classifier metrics in numpy: ROC curve, its area, accuracy, confusion matrix, cross-entropy."""

from __future__ import annotations

import numpy as np

__all__ = ["auc", "classify", "confusion", "cross_entropy", "one_hot", "roc_curve"]

_EPS = 1e-7  # the clipping Keras applies in its cross-entropies


def __dir__() -> list[str]:
    return __all__


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Integer labels ``[n]`` as float32 rows ``[n, n_classes]``."""
    return np.eye(n_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score, highest threshold first.

    Parameters
    ----------
    y_true : 0/1 labels (1 is positive).
    scores : the predicted probability of the positive class.

    Returns
    -------
    ``(fpr, tpr, thresholds)``; the first point is (0, 0) at threshold +inf.
    """
    y_true = np.asarray(y_true).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="stable")
    scores, y_true = scores[order], y_true[order]
    # the last index of each run of equal scores: one ROC point per distinct threshold
    last = (
        np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
        if scores.size
        else np.array([], int)
    )
    tp = np.cumsum(y_true)[last]
    fp = (last + 1) - tp
    positives, negatives = max(int(y_true.sum()), 1), max(int((~y_true).sum()), 1)
    fpr = np.r_[0.0, fp / negatives]
    tpr = np.r_[0.0, tp / positives]
    thresholds = np.r_[np.inf, scores[last]]
    return fpr, tpr, thresholds


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The area under a ROC curve (trapezoids)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def classify(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Predicted class per row: ``p >= threshold`` for one column, else the argmax."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 1 or probabilities.shape[1] == 1:
        return (probabilities.reshape(-1) >= threshold).astype(np.int64)
    return np.argmax(probabilities, axis=1)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``[n_classes, n_classes]`` counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def cross_entropy(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary (one column) or categorical cross-entropy, clipped as Keras clips it."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(y_true, dtype=np.int64).ravel()
    if p.ndim == 1 or p.shape[1] == 1:
        p = p.reshape(-1)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))
