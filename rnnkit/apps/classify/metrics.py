"""Classification metrics from true class ids and predicted probabilities.

With C classes, the confusion matrix M (C, C) counts M[i, j] = sequences of class i predicted
as j.  Per class c: precision = M[c, c] / sum_i M[i, c], recall = M[c, c] / sum_j M[c, j],
F1 = 2 precision recall / (precision + recall) (0 where undefined, as scikit-learn's
``zero_division=0``).  accuracy = trace / n; balanced accuracy = the mean recall over the
classes present in the truth; macro F1 = the mean F1 over the classes present in the truth or
the predictions (scikit-learn's label set); log loss = mean -log p[true], probabilities clipped
to [1e-15, 1].
"""
from __future__ import annotations

import numpy as np

EPS = 1e-15


def confusion(y: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """M (C, C) int64: M[i, j] = how many of class i were predicted as j."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (np.asarray(y, np.int64), np.asarray(pred, np.int64)), 1)
    return m


def scores(y: np.ndarray, probs: np.ndarray, names: list[str]) -> dict:
    """{"accuracy", "balanced_accuracy", "macro_f1", "log_loss", "per_class", "confusion", "n"}.

    y (n,) class ids, probs (n, C) rows summing to 1, names the C class labels.
    """
    y = np.asarray(y, np.int64)
    probs = np.asarray(probs, np.float64)
    n, C = probs.shape
    if n == 0:
        raise ValueError("no sequences to score")
    pred = probs.argmax(axis=1)
    m = confusion(y, pred, C)
    tp = np.diag(m).astype(np.float64)
    support, predicted = m.sum(axis=1), m.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    present = support > 0
    seen = present | (predicted > 0)
    p_true = np.clip(probs[np.arange(n), y], EPS, 1.0)
    return {
        "accuracy": float(tp.sum() / n),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[seen].mean()),
        "log_loss": float(-np.log(p_true).mean()),
        "per_class": {name: {"precision": float(precision[c]), "recall": float(recall[c]),
                             "f1": float(f1[c]), "support": int(support[c])}
                      for c, name in enumerate(names)},
        "confusion": m.tolist(),
        "n": int(n),
    }
