"""Metrics and aggregation over folds.

- WA (weighted accuracy): plain accuracy, the share of test clips classified right.
- UA (unweighted accuracy): mean per-class recall over the classes present in the truth, so every
  class counts the same however many clips it has (sklearn's balanced accuracy).
- macro-F1: mean F1 over the classes present in the truth or the predictions (sklearn's default).

`classification_metrics` scores one fold; `aggregate` gives mean and population std over folds and
per-class precision / recall / F1 of the summed confusion matrix. (A per-window model's clip
probabilities are the mean over its windows: `pipeline.Pipeline`.)

Every dict here holds plain Python numbers and lists, ready for json.dump.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

METRICS = ("ua", "wa", "macro_f1")  # the headline numbers, in the order reports show them


def _as_indices(y: Sequence, classes: Sequence[str]) -> np.ndarray:
    """Labels as integer class indices; class names are looked up in `classes`."""
    y = np.asarray(y)
    if y.dtype.kind in "US" or y.dtype == object:
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in y if v not in index})
        if unknown:
            raise ValueError(f"labels not among the classes {list(classes)}: {', '.join(unknown)}")
        return np.asarray([index[v] for v in y], dtype=np.int64)
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise ValueError(f"label indices must be in 0..{len(classes) - 1} for {len(classes)} classes")
    return y


def per_class_from_confusion(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support of each class from a confusion matrix (rows true, columns
    predicted); 0 where a ratio has a zero denominator."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
            "support": int(support[i])}
        for i, c in enumerate(classes)
    }


def _headline(cm: np.ndarray) -> dict[str, float]:
    """WA, UA and macro-F1 of a confusion matrix (UA over true classes, F1 over true or predicted)."""
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    total = cm.sum()
    present = support > 0
    seen = present | (predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "wa": float(tp.sum() / total) if total else 0.0,
        "ua": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
    }


def classification_metrics(y_true: Sequence, y_pred: Sequence, classes: Sequence[str]) -> dict:
    """Scores of one set of predictions. Labels are class indices (or names from `classes`).

    Returns {"wa", "ua", "macro_f1", "per_class": {class: {"precision", "recall", "f1", "support"}},
    "confusion": rows true / columns predicted in `classes` order, "classes", "n"}.
    """
    from sklearn.metrics import confusion_matrix

    classes = [str(c) for c in classes]
    y_true, y_pred = _as_indices(y_true, classes), _as_indices(y_pred, classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if y_true.size == 0:
        raise ValueError("no predictions to score")
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(len(classes)))
    return {
        **_headline(cm),
        "per_class": per_class_from_confusion(cm, classes),
        "confusion": cm.astype(int).tolist(),
        "classes": classes,
        "n": int(y_true.size),
    }


COLLAPSE_SHARE = 0.9  # one class taking at least this share of a fold's predictions is a collapse
CHANCE_LOSS = 0.97  # a training loss that never fell below this fraction of ln K stayed at chance


def collapse_flags(confusion, train_losses: Sequence[float] | None = None) -> list[str]:
    """Why a fold's figures are not a trained model's: "one class" when its predictions collapse
    onto one class (one column of the confusion matrix holds COLLAPSE_SHARE of them), "loss at
    chance" when its training loss never fell below CHANCE_LOSS x ln K (the loss of a uniform guess,
    which oversampling or class weights also aim at). Empty when neither."""
    cm = np.asarray(confusion, dtype=np.int64)
    k = cm.shape[0]
    flags = []
    if k > 1 and cm.sum() and cm.sum(0).max() >= COLLAPSE_SHARE * cm.sum():
        flags.append("one class")
    if k > 1 and train_losses and min(train_losses) >= CHANCE_LOSS * math.log(k):
        flags.append("loss at chance")
    return flags


def aggregate(fold_metrics: list[dict]) -> dict:
    """Combine the `classification_metrics` of several folds.

    For "ua", "wa" and "macro_f1": {"mean", "std", "folds": the per-fold values}; std is the
    population standard deviation (ddof=0) over folds, as numpy's default, not the sample one.
    Also "confusion" (the folds' confusion matrices summed), "per_class" (precision / recall / F1 /
    support computed from that summed matrix), "pooled" (WA, UA, macro-F1 of the summed matrix,
    i.e. every test clip of every fold counted once), "classes" and "n_folds".
    """
    if not fold_metrics:
        raise ValueError("no folds to aggregate")
    classes = list(fold_metrics[0]["classes"])
    for i, m in enumerate(fold_metrics):
        if list(m["classes"]) != classes:
            raise ValueError(f"fold {i + 1} has classes {m['classes']}, fold 1 has {classes}")
    out: dict = {}
    for key in METRICS:
        values = np.asarray([m[key] for m in fold_metrics], dtype=np.float64)
        out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=0)),
                    "folds": [float(v) for v in values]}
    cm = np.sum([np.asarray(m["confusion"], dtype=np.int64) for m in fold_metrics], axis=0)
    out["confusion"] = cm.tolist()
    out["per_class"] = per_class_from_confusion(cm, classes)
    out["pooled"] = _headline(cm)
    out["classes"] = classes
    out["n_folds"] = len(fold_metrics)
    return out


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE: the clip-weighted mean |accuracy - confidence| over `bins` equal-width confidence bins
    of the top probability (Guo et al. 2017)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == np.asarray(y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature scaling: the T > 0 that minimises the negative log-likelihood of softmax(logits / T)
    on held-out clips (a grid over log T, then a finer one around the best). Probabilities are
    rescaled; the top label never changes."""
    y = np.asarray(y)

    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 200))
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = np.linspace(best * 0.95, best * 1.05, 41)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])
