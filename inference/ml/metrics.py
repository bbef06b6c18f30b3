"""The evaluation contract's numbers, computed one way for the command, the tests and the portal.

All functions are plain numpy; no Django. Undefined values (a ROC AUC with one class present, a mean over no
images) are ``None`` so that JSON shows ``null`` instead of an invented number.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .labels import TAMPERED, VERDICTS


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = VERDICTS) -> np.ndarray:
    """Rows: true label, columns: predicted label, in the order of ``labels``."""
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length.")
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t not in index or p not in index:
            raise ValueError(f"Unknown label in ({t!r}, {p!r}); expected one of {list(labels)}.")
        matrix[index[t], index[p]] += 1
    return matrix


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def per_class(matrix: np.ndarray, labels: Sequence[str] = VERDICTS) -> dict[str, dict]:
    """Precision, recall, F1 and support of each label from a confusion matrix (0.0 where undefined)."""
    matrix = np.asarray(matrix)
    out = {}
    for i, label in enumerate(labels):
        tp = matrix[i, i]
        predicted = matrix[:, i].sum()
        support = matrix[i, :].sum()
        precision = _ratio(tp, predicted)
        recall = _ratio(tp, support)
        f1 = _ratio(2 * precision * recall, precision + recall)
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": int(support)}
    return out


def accuracy(matrix: np.ndarray) -> float:
    matrix = np.asarray(matrix)
    return _ratio(np.trace(matrix), matrix.sum())


def macro_f1(matrix: np.ndarray, labels: Sequence[str] = VERDICTS) -> float:
    """Mean F1 over the labels that occur in the truth or the predictions (an absent label says nothing)."""
    matrix = np.asarray(matrix)
    classes = per_class(matrix, labels)
    present = [
        label for i, label in enumerate(labels) if matrix[i, :].sum() > 0 or matrix[:, i].sum() > 0
    ]
    if not present:
        return 0.0
    return float(np.mean([classes[label]["f1"] for label in present]))


def mask_iou(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    """IoU of two boolean masks (unions of regions); None when both are empty (nothing to compare)."""
    truth = np.asarray(truth, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    if truth.shape != predicted.shape:
        raise ValueError(f"Mask shapes differ: {truth.shape} vs {predicted.shape}.")
    union = np.logical_or(truth, predicted).sum()
    if union == 0:
        return None
    return float(np.logical_and(truth, predicted).sum() / union)


def union_mask(masks: Iterable[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for m in masks:
        out |= np.asarray(m, dtype=bool)
    return out


def roc_auc(y_true: Sequence[bool | int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted one half); None with one class only."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError("y_true and scores differ in length.")
    n_pos = int(y.sum())
    n_neg = int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum_pos = ranks[y].sum()
    return float((rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def percentile_latency(seconds: Sequence[float]) -> dict[str, float | None]:
    if not len(seconds):
        return {"p50": None, "p95": None}
    arr = np.asarray(seconds, dtype=np.float64)
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95))}


def is_tampered(verdict: str) -> bool:
    return verdict in TAMPERED


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], tamper_scores: Sequence[float], ious: Sequence[float | None]
) -> dict:
    """The contract's classification and mask numbers (everything of metrics.json but latency and model)."""
    matrix = confusion_matrix(y_true, y_pred)
    classes = per_class(matrix)
    measured = [v for v in ious if v is not None]
    return {
        "n_images": int(len(y_true)),
        "accuracy": accuracy(matrix),
        "macro_f1": macro_f1(matrix),
        "per_class": classes,
        "confusion_matrix": {"labels": list(VERDICTS), "matrix": matrix.tolist()},
        "mean_iou": float(np.mean(measured)) if measured else None,
        "tamper_auc": roc_auc([is_tampered(v) for v in y_true], tamper_scores),
    }


# --- How far the probabilities can be trusted --------------------------------------------------------


def _probability_matrix(scores: Sequence[dict], labels: Sequence[str] = VERDICTS) -> np.ndarray:
    probs = np.array([[float(s[label]) for label in labels] for s in scores], dtype=np.float64).reshape(-1, len(labels))
    if np.any(probs < -1e-9) or np.any(np.abs(probs.sum(axis=1) - 1.0) > 1e-3):
        raise ValueError("Each score vector must hold probabilities of the labels that sum to 1.")
    return np.clip(probs, 0.0, 1.0)


COVERAGE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def probability_quality(
    y_true: Sequence[str], scores: Sequence[dict], *, bins: int = 10, labels: Sequence[str] = VERDICTS
) -> dict:
    """How well the verdict probabilities match what happens (all from the scores and the truth):

    - ``ece``: expected calibration error of the confidence a doctor is shown (the probability of the predicted
      verdict): the images are put in ``bins`` equal-width bins of confidence, and each bin's |accuracy - mean
      confidence| is weighted by its share of the images. 0 is perfect; a model that says 0.9 and is right 75 % of
      the time adds 0.15 for those images.
    - ``mce``: the largest of those gaps over the non-empty bins.
    - ``brier``: mean over images of the squared distance between the probability vector and the one-hot truth
      (0 perfect, 2 worst).
    - ``nll``: mean negative log probability of the true verdict (probabilities floored at 1e-9).
    - ``mean_confidence`` and ``accuracy``: overconfidence shows as the first above the second.
    - ``reliability``: per bin ``[low, high)`` (the last one closed), the count, the mean confidence and the accuracy.
    - ``by_threshold``: for each confidence threshold of ``COVERAGE_THRESHOLDS``, the share of images said at that
      confidence or more and the accuracy on them (how right the confident verdicts are, and how many there are).
    The predicted verdict is the most probable one (ties: the first in ``labels``)."""
    if len(y_true) != len(scores):
        raise ValueError("y_true and scores differ in length.")
    if bins < 1:
        raise ValueError("bins must be at least 1.")
    if not len(y_true):
        return {"n_images": 0, "ece": None, "mce": None, "brier": None, "nll": None, "mean_confidence": None,
                "accuracy": None, "bins": bins, "reliability": [], "by_threshold": []}
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({t for t in y_true if t not in index})
    if unknown:
        raise ValueError(f"Unknown label(s) {unknown}; expected one of {list(labels)}.")
    probs = _probability_matrix(scores, labels)
    truth = np.array([index[t] for t in y_true])
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(truth)), predicted]
    correct = (predicted == truth).astype(np.float64)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(truth)), truth] = 1.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    reliability, ece, mce = [], 0.0, 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        entry = {"low": b / bins, "high": (b + 1) / bins, "count": n, "confidence": None, "accuracy": None}
        if n:
            conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
            entry.update(confidence=conf, accuracy=acc)
            ece += n / len(truth) * abs(acc - conf)
            mce = max(mce, abs(acc - conf))
        reliability.append(entry)
    return {
        "n_images": int(len(truth)),
        "ece": float(ece),
        "mce": float(mce),
        "brier": float(((probs - onehot) ** 2).sum(axis=1).mean()),
        "nll": float(-np.log(np.maximum(probs[np.arange(len(truth)), truth], 1e-9)).mean()),
        "mean_confidence": float(confidence.mean()),
        "accuracy": float(correct.mean()),
        "bins": bins,
        "reliability": reliability,
        "by_threshold": [
            {"threshold": t, "n": int((confidence >= t).sum()), "share": float((confidence >= t).mean()),
             "accuracy": float(correct[confidence >= t].mean()) if (confidence >= t).any() else None}
            for t in COVERAGE_THRESHOLDS
        ],
    }
