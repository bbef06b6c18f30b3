"""Confidence intervals for the evaluation's figures, by resampling patients.

The slices of one patient are not independent: neighbouring slices of one scan share its anatomy, contrast and
noise, and the model tends to be right or wrong on them together. An interval that resamples slices would be too
narrow; this one resamples **patients** with replacement (a cluster bootstrap) and takes every slice of each
patient drawn, as many times as it was drawn.

The interval is the *expanded* percentile one (Hesterberg, "What teachers should know about the bootstrap", The
American Statistician 69, 2015): the plain percentile interval (2.5th to 97.5th percentile for 95 %) is too narrow
when few patients are resampled, because the bootstrap spread is that of a sample of n, not of the population, and
a t quantile, not a normal one, describes the error of a mean of n. The expanded interval takes the percentiles
at the tail ``Phi(-sqrt(n / (n - 1)) * t_{n-1}(1 - alpha / 2))`` instead of ``alpha / 2`` (``expanded_tail``):
for 23 patients the 1.7th and 98.3rd, for 8 the 0.6th and 99.4th. In a simulation of this evaluation's shape
(accuracy 0.88, 10-59 slices a patient, intra-patient correlation 0.05-0.3, where 0.9.0 on tamper-v13 test
shows 0.07; ``models/experiments/interval-coverage/``) the 95 % percentile interval held the true accuracy
89-92 % of the time with 23 patients and 74-82 % with 5; the expanded one 91-94 % and 82-91 %. Behind 3 patients
neither gets past 73 %: the resamples cannot reach further than the 3 patients do (``MIN_PATIENTS``; the tables
give the patient count beside each range).

Pure numpy; no Django. The point estimates are the contract's own figures (``metrics.classification_metrics``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .labels import VERDICTS
from .metrics import is_tampered

METHOD = "patient-clustered expanded percentile bootstrap"
DEFAULT_RESAMPLES = 2000
# Fewer patients than this and resampling them says nothing: with one patient every resample is the same set of
# slices and the "interval" has no width; with two, each resample is one, the other or both. Such a run gets its
# estimates and no interval, with a note. (Three, as T1 post-contrast has on tamper-v13 test, give a wide, rough
# range, which is still worth showing.)
MIN_PATIENTS = 3


def weighted_roc_auc(y_true: Sequence[bool], scores: Sequence[float], weights: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann-Whitney, ties one half) of each row of ``weights`` (R x n: how many times each item counts);
    NaN for a row with no weight on one of the two classes. A row of integer counts gives the AUC of the data with
    each item repeated that many times."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if y.shape != s.shape or w.shape[1] != y.shape[0]:
        raise ValueError("y_true, scores and the weights' columns differ in length.")
    values, inverse = np.unique(s, return_inverse=True)  # ascending distinct scores
    onehot = np.zeros((len(s), len(values)))
    onehot[np.arange(len(s)), inverse] = 1.0
    pos = w[:, y] @ onehot[y]  # R x K: positive weight at each distinct score
    neg = w[:, ~y] @ onehot[~y]
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each score
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)
    auc[(total_pos == 0) | (total_neg == 0)] = np.nan
    return auc


def patient_counts(n_patients: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """resamples x n_patients: how many times each patient is drawn in each resample (with replacement)."""
    drawn = rng.integers(0, n_patients, size=(resamples, n_patients))
    counts = np.zeros((resamples, n_patients))
    np.add.at(counts, (np.repeat(np.arange(resamples), n_patients), drawn.ravel()), 1.0)
    return counts


def _figures(weights: np.ndarray, truth: np.ndarray, predicted: np.ndarray, tampered: np.ndarray,
             scores: np.ndarray, ious: np.ndarray) -> dict[str, np.ndarray]:
    """Every figure for each row of ``weights`` (R x n image multiplicities); NaN where undefined."""
    k = len(VERDICTS)
    cells = np.zeros((len(truth), k * k))
    cells[np.arange(len(truth)), truth * k + predicted] = 1.0
    matrix = (weights @ cells).reshape(-1, k, k)  # R x truth x predicted
    diag = np.diagonal(matrix, axis1=1, axis2=2)
    total = matrix.sum(axis=(1, 2))
    support, predicted_n = matrix.sum(axis=2), matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted_n > 0, diag / predicted_n, 0.0)
        recall = np.where(support > 0, diag / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        present = (support > 0) | (predicted_n > 0)  # as metrics.macro_f1: an absent label says nothing
        macro = np.where(present.any(axis=1), (f1 * present).sum(axis=1) / present.sum(axis=1), 0.0)
        accuracy = np.where(total > 0, diag.sum(axis=1) / total, np.nan)
        has_region = ~np.isnan(ious)
        iou_weight = weights[:, has_region].sum(axis=1)
        mean_iou = np.where(iou_weight > 0, weights[:, has_region] @ ious[has_region] / iou_weight, np.nan)
    out = {"accuracy": accuracy, "macro_f1": macro, "mean_iou": mean_iou,
           "tamper_auc": weighted_roc_auc(tampered, scores, weights)}
    for i, v in enumerate(VERDICTS):
        # a class absent from a resample has no F1 to speak of (not 0: that would drag the interval down)
        out[f"f1_{v}"] = np.where(present[:, i], f1[:, i], np.nan)
    return out


def _arrays(rows: Sequence[dict]) -> tuple[np.ndarray, ...]:
    """(truth, predicted, tampered, scores, ious) of predictions.jsonl's rows, as ``_figures`` takes them."""
    index = {v: i for i, v in enumerate(VERDICTS)}
    try:
        truth = np.array([index[r["verdict"]] for r in rows])
        predicted = np.array([index[r["predicted"]] for r in rows])
    except KeyError as exc:
        raise ValueError(f"Unknown verdict {exc.args[0]!r}; expected one of {list(VERDICTS)}.") from None
    tampered = np.array([is_tampered(r["verdict"]) for r in rows])
    scores = np.array([float(r["tamper_score"]) for r in rows])
    ious = np.array([np.nan if r["iou"] is None else float(r["iou"]) for r in rows])
    return truth, predicted, tampered, scores, ious


def expanded_tail(n_patients: int, level: float) -> float:
    """The lower percentile (as a fraction) of the expanded percentile interval at ``level`` behind ``n_patients``
    resampled patients: ``Phi(-sqrt(n / (n - 1)) * t_{n-1}((1 + level) / 2))`` (the plain interval's is
    ``(1 - level) / 2``; the expanded one is always further out)."""
    if n_patients < 2:
        raise ValueError(f"An interval needs at least 2 patients, not {n_patients}.")
    from scipy import stats

    t = stats.t.ppf((1.0 + level) / 2.0, n_patients - 1)
    return float(stats.norm.cdf(-np.sqrt(n_patients / (n_patients - 1)) * t))


def _no_interval(estimate: float) -> dict:
    """The estimate alone (too few patients to resample)."""
    return {"estimate": float(estimate) if np.isfinite(estimate) else None, "low": None, "high": None}


def _interval(estimate: float, samples: np.ndarray, tail: float) -> dict:
    finite = samples[np.isfinite(samples)]
    if not np.isfinite(estimate) or not len(finite):
        return {"estimate": None if not np.isfinite(estimate) else float(estimate), "low": None, "high": None}
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}


def bootstrap_intervals(rows: Sequence[dict], patients: Sequence[str], *, resamples: int = DEFAULT_RESAMPLES,
                        seed: int = 0, level: float = 0.95) -> dict:
    """Intervals for accuracy, macro F1, each class's F1, mean IoU and tamper AUC of ``rows`` (predictions.jsonl's
    rows: ``verdict``, ``predicted``, ``tamper_score``, ``iou``), resampling the ``patients`` (one ID per row)."""
    if len(rows) != len(patients):
        raise ValueError(f"{len(rows)} prediction rows but {len(patients)} patient IDs.")
    if not rows:
        raise ValueError("No predictions to resample.")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie between 0 and 1, got {level}.")
    arrays = _arrays(rows)
    ids, patient_of = np.unique(np.asarray([str(p) for p in patients]), return_inverse=True)

    point = _figures(np.ones((1, len(rows))), *arrays)
    if len(ids) < MIN_PATIENTS:
        out = {"method": METHOD, "level": level, "resamples": 0, "seed": int(seed), "n_images": len(rows),
               "n_patients": int(len(ids)),
               "note": (f"{len(ids)} patient{'s' if len(ids) != 1 else ''} behind these images: too few to resample "
                        f"for a confidence interval (at least {MIN_PATIENTS} needed), so none is given.")}
        for key in ("accuracy", "macro_f1", "mean_iou", "tamper_auc"):
            out[key] = _no_interval(float(point[key][0]))
        out["f1"] = {v: _no_interval(float(point[f"f1_{v}"][0])) for v in VERDICTS}
        return out
    rng = np.random.default_rng(seed)
    samples = {key: [] for key in point}
    for start in range(0, resamples, 250):  # in chunks: the weight matrix stays small
        n = min(250, resamples - start)
        counts = patient_counts(len(ids), n, rng)
        for key, values in _figures(counts[:, patient_of], *arrays).items():
            samples[key].append(values)
    tail = expanded_tail(len(ids), level)
    out = {"method": METHOD, "level": level, "resamples": int(resamples), "seed": int(seed),
           "n_images": len(rows), "n_patients": int(len(ids)), "percentiles": _percentiles(tail)}
    for key in ("accuracy", "macro_f1", "mean_iou", "tamper_auc"):
        out[key] = _interval(float(point[key][0]), np.concatenate(samples[key]), tail)
    out["f1"] = {v: _interval(float(point[f"f1_{v}"][0]), np.concatenate(samples[f"f1_{v}"]), tail)
                 for v in VERDICTS}
    return out


def _percentiles(tail: float) -> list[float]:
    """The two percentiles an interval was read at (for the record: 1.7 and 98.3 behind 23 patients)."""
    return [round(100.0 * tail, 3), round(100.0 * (1.0 - tail), 3)]


def paired_differences(rows_a: Sequence[dict], rows_b: Sequence[dict], patients: Sequence[str], *,
                       resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95) -> dict:
    """Two models' figures on the same images (row i of both is image i) and the interval of each difference
    B - A, resampling patients once for both (a paired cluster bootstrap: both models see the same resample).
    Keys as ``bootstrap_intervals``; each figure is ``{"a", "b", "difference", "low", "high"}``."""
    if not (len(rows_a) == len(rows_b) == len(patients)):
        raise ValueError(f"{len(rows_a)} and {len(rows_b)} prediction rows but {len(patients)} patient IDs.")
    if not rows_a:
        raise ValueError("No predictions to compare.")
    if any(a["verdict"] != b["verdict"] for a, b in zip(rows_a, rows_b)):
        raise ValueError("The two runs give different true verdicts for the same images.")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}.")
    arrays_a, arrays_b = _arrays(rows_a), _arrays(rows_b)
    ids, patient_of = np.unique(np.asarray([str(p) for p in patients]), return_inverse=True)
    ones = np.ones((1, len(rows_a)))
    point_a, point_b = _figures(ones, *arrays_a), _figures(ones, *arrays_b)
    enough = len(ids) >= MIN_PATIENTS
    samples: dict[str, list] = {key: [] for key in point_a}
    if enough:
        rng = np.random.default_rng(seed)
        for start in range(0, resamples, 250):
            counts = patient_counts(len(ids), min(250, resamples - start), rng)[:, patient_of]
            fa, fb = _figures(counts, *arrays_a), _figures(counts, *arrays_b)
            for key in samples:
                samples[key].append(fb[key] - fa[key])

    tail = expanded_tail(len(ids), level) if enough else None

    def figure(key: str) -> dict:
        a, b = float(point_a[key][0]), float(point_b[key][0])
        diff = _interval(b - a, np.concatenate(samples[key]), tail) if enough else _no_interval(b - a)
        return {"a": None if not np.isfinite(a) else a, "b": None if not np.isfinite(b) else b,
                "difference": diff["estimate"], "low": diff["low"], "high": diff["high"]}

    out = {"method": f"paired {METHOD}", "level": level, "resamples": int(resamples) if enough else 0,
           "seed": int(seed), "n_images": len(rows_a), "n_patients": int(len(ids))}
    if enough:
        out["percentiles"] = _percentiles(tail)
    if not enough:
        out["note"] = (f"{len(ids)} patient{'s' if len(ids) != 1 else ''} behind these images: too few to resample "
                       f"for a confidence interval (at least {MIN_PATIENTS} needed), so none is given.")
    for key in ("accuracy", "macro_f1", "mean_iou", "tamper_auc"):
        out[key] = figure(key)
    out["f1"] = {v: figure(f"f1_{v}") for v in VERDICTS}
    return out


def accuracy_interval(rows: Sequence[dict], patients: Sequence[str], **kwargs) -> dict:
    """The accuracy interval alone (for the breakdown by group)."""
    return bootstrap_intervals(rows, patients, **kwargs)["accuracy"]


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of a proportion (None for n = 0)."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
