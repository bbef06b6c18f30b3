"""A learned verdict: multinomial logistic regression from what the detector says about a slice to the four
verdicts, fitted on the validation split (an option of the calibration, ``verdict_model``).

The hand-set rule (`predictor.fuse_scores`) mixes the image head's softmax with the best detection score of each
class, one weight and one temperature for all. What it cannot use: how large the best region is, whether a
second region of the same class backs it up, how the classes' evidence trades off against each other (a removal
is told from a healthy slice by weak evidence, a real tumour from an injection by strong evidence of both). Here
13 numbers per slice (`verdict_features`): the image head's four log-probabilities and, for each instance class,
its best and second-best detection score and the log area of its best box. Standardised, then a multinomial
logistic regression (L2, strength chosen by patient-grouped cross-validation on the validation split); its
softmax is the verdict distribution. It needs no torch and stores as a few lists in the bundle's calibration.

`calibrate_detector --verdict-model auto` keeps it only where its patient-grouped cross-validated macro F1 on
the validation split beats that of the hand-set rule refitted the same way, fold by fold (``on`` forces it; the
default is ``off``). Measured on 0.7.2 (tamper-v10): cross-validated on validation 0.911 against the rule's
0.895, but on test accuracy 0.890 against 0.888 (11 slices fixed, 10 broken: removals gained, healthy slices and
injections lost), so the shipped model keeps the rule.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .labels import VERDICTS

FEATURES_VERSION = 1
INSTANCE_CLASSES = ("real_tumor", "fake_added", "fake_removed")
N_FEATURES = 4 + 3 * len(INSTANCE_CLASSES)
STRENGTHS = (0.01, 0.03, 0.1, 0.3)  # inverse L2 strengths (sklearn's C) tried by cross-validation
ABSENT = -1e3  # the logit offset of a verdict the fit never saw


def verdict_features(image_logits: np.ndarray | None, labels: Sequence[str], scores: Sequence[float],
                     boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """The 13 numbers of one slice from the model's (fused) output: image-head log-probabilities (zeros without
    an image head), then per instance class its best and second-best detection score (0 when absent) and the log
    of 1 + its best box's area in pixels."""
    out = np.zeros(N_FEATURES, dtype=np.float64)
    if image_logits is not None:
        logits = np.asarray(image_logits, dtype=np.float64).reshape(-1)
        shifted = logits - logits.max()
        out[:4] = shifted - np.log(np.exp(shifted).sum())
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = list(labels)
    for k, name in enumerate(INSTANCE_CLASSES):
        idx = [i for i, lab in enumerate(labels) if lab == name]
        if not idx:
            continue
        idx.sort(key=lambda i: -scores[i])
        x0, y0, x1, y1 = (float(v) for v in boxes[idx[0]])
        base = 4 + 3 * k
        out[base] = scores[idx[0]]
        out[base + 1] = scores[idx[1]] if len(idx) > 1 else 0.0
        out[base + 2] = np.log1p(max(0.0, x1 - x0) * max(0.0, y1 - y0))
    return out


def verdict_probs(model: dict, features: np.ndarray) -> np.ndarray:
    """The four verdict probabilities (in ``VERDICTS`` order) the fitted ``model`` gives ``features``."""
    if int(model.get("features_version", 0)) != FEATURES_VERSION:
        raise ValueError(f"This verdict model was fitted on features version {model.get('features_version')!r}; "
                         f"this code computes version {FEATURES_VERSION}. Recalibrate the bundle.")
    z = (np.asarray(features, dtype=np.float64) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    logits = np.asarray(model["coef"], dtype=np.float64) @ z + np.asarray(model["intercept"], dtype=np.float64)
    logits -= logits.max()
    p = np.exp(logits)
    return p / p.sum()


def _fit(x: np.ndarray, y: np.ndarray, strength: float) -> dict:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0)
    scale = x.std(0)
    scale[scale < 1e-9] = 1.0
    coef = np.zeros((len(VERDICTS), x.shape[1]))
    intercept = np.full(len(VERDICTS), ABSENT)  # a verdict absent from the fit is never predicted
    classes = sorted(set(np.asarray(y).tolist()))
    if len(classes) == 1:
        intercept[int(classes[0])] = 0.0
    else:
        lr = LogisticRegression(C=strength, max_iter=5000)
        lr.fit((x - mean) / scale, y)
        if len(lr.classes_) == 2:  # one row of weights: the second class's logit against the first's 0
            intercept[int(lr.classes_[0])] = 0.0
            coef[int(lr.classes_[1])], intercept[int(lr.classes_[1])] = lr.coef_[0], lr.intercept_[0]
        else:
            for row, cls in enumerate(lr.classes_):
                coef[int(cls)], intercept[int(cls)] = lr.coef_[row], lr.intercept_[row]
    return {"features_version": FEATURES_VERSION, "verdicts": list(VERDICTS), "strength": strength,
            "mean": mean.round(6).tolist(), "scale": scale.round(6).tolist(),
            "coef": coef.round(6).tolist(), "intercept": intercept.round(6).tolist()}


def grouped_folds(groups: Sequence, folds: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-grouped folds (a patient's slices never on both sides), deterministic."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    n = min(folds, len(set(groups.tolist())))
    if n < 2:
        raise ValueError("Cross-validation needs slices of at least two patients.")
    return list(GroupKFold(n).split(np.zeros(len(groups)), groups=groups))


def cross_validated(x: np.ndarray, y: np.ndarray, folds: list, strength: float) -> np.ndarray:
    """Out-of-fold verdict indices."""
    pred = np.zeros(len(y), dtype=int)
    for train, test in folds:
        model = _fit(x[train], y[train], strength)
        pred[test] = [int(np.argmax(verdict_probs(model, f))) for f in x[test]]
    return pred


def fit_verdict_model(x: np.ndarray, verdicts: Sequence[str], groups: Sequence) -> tuple[dict, dict]:
    """The model fitted on all of ``x`` with the strength whose grouped cross-validated macro F1 is best (ties:
    the stronger regularisation); and the cross-validated macro F1 and accuracy of that strength."""
    from .metrics import accuracy, confusion_matrix, macro_f1

    x = np.asarray(x, dtype=np.float64)
    y = np.array([VERDICTS.index(v) for v in verdicts])
    folds = grouped_folds(groups)
    best = None
    for strength in STRENGTHS:
        pred = cross_validated(x, y, folds, strength)
        matrix = confusion_matrix([VERDICTS[i] for i in y], [VERDICTS[i] for i in pred])
        key = (round(macro_f1(matrix), 6), -strength)
        if best is None or key > best[0]:
            best = (key, strength, {"macro_f1": macro_f1(matrix), "accuracy": accuracy(matrix)})
    _, strength, cv = best
    return _fit(x, y, strength), {**cv, "strength": strength, "folds": len(folds)}
