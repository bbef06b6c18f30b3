"""The confidence a doctor is shown, made to mean what it says.

The verdict rule (`predictor.fuse_scores`) and its settings are chosen on validation for macro F1, not for the
probabilities they produce: a mix of the image head's softmax and the best detection scores can say 0.6 where it
is right nine times in ten, or 0.99 where it is right seven times in ten. One more number, the calibration's
``confidence_temperature`` T, reshapes the final probabilities as

    p_i  ->  p_i ** (1 / T) / sum_j p_j ** (1 / T)

(temperature scaling of the log-probabilities, Guo et al. 2017, "On calibration of modern neural networks"). It
keeps the order of the four probabilities, so no verdict, shown region or accuracy figure moves; T > 1 softens
overconfident probabilities, T < 1 sharpens timid ones. T is fitted on the validation split by the negative log
likelihood of the true verdicts (`fit_confidence_temperature`); ``metrics.probability_quality`` measures the result.
Plain numpy; no Django.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .labels import VERDICTS

# the grid T is chosen from: 0.25 to 4, evenly spaced in log T (ratio about 1.035 between neighbours)
TEMPERATURE_GRID = tuple(float(t) for t in np.exp(np.linspace(np.log(0.25), np.log(4.0), 81)))
FLOOR = 1e-12


def temper_scores(scores: dict[str, float], temperature: float) -> dict[str, float]:
    """``scores`` (probabilities of the verdicts) reshaped by ``temperature`` as the module says; 1.0 returns
    them unchanged. A probability of exactly 0 stays 0."""
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"confidence_temperature must be a positive number; got {temperature!r}.")
    if t == 1.0:
        return dict(scores)
    keys = list(scores)
    p = np.array([float(scores[k]) for k in keys], dtype=np.float64)
    logp = np.where(p > 0, np.log(np.maximum(p, FLOOR)), -np.inf) / t
    logp = logp - logp.max()
    q = np.exp(logp)
    q = q / q.sum()
    return {k: float(v) for k, v in zip(keys, q)}


def _log_probs(scores: Sequence[dict]) -> np.ndarray:
    p = np.array([[float(s[v]) for v in VERDICTS] for s in scores], dtype=np.float64)
    return np.log(np.maximum(p, FLOOR))


def tempered_nll(scores: Sequence[dict], y_true: Sequence[str], temperature: float) -> float:
    """Mean negative log probability of the true verdicts after `temper_scores` at ``temperature``."""
    index = {v: i for i, v in enumerate(VERDICTS)}
    logp = _log_probs(scores) / float(temperature)
    logp = logp - logp.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    rows = np.arange(len(y_true))
    return float(-np.maximum(logp[rows, [index[t] for t in y_true]], np.log(1e-9)).mean())


def fit_confidence_temperature(scores: Sequence[dict], y_true: Sequence[str],
                               grid: Sequence[float] = TEMPERATURE_GRID) -> tuple[float, dict]:
    """The T of ``grid`` with the lowest `tempered_nll` on (``scores``, ``y_true``), the validation split's
    probabilities and verdicts (ties: the T nearest 1). Returns (T, {"nll_before", "nll_after", "n_images"})."""
    if len(scores) != len(y_true):
        raise ValueError("scores and y_true differ in length.")
    if not len(scores):
        raise ValueError("Fitting the confidence temperature needs at least one image.")
    unknown = sorted({t for t in y_true if t not in VERDICTS})
    if unknown:
        raise ValueError(f"Unknown verdict(s) {unknown}; expected one of {list(VERDICTS)}.")
    best_t, best_key = 1.0, None
    for t in grid:
        key = (round(tempered_nll(scores, y_true, t), 9), abs(np.log(t)))
        if best_key is None or key < best_key:
            best_t, best_key = float(t), key
    return best_t, {"n_images": len(scores), "nll_before": tempered_nll(scores, y_true, 1.0),
                    "nll_after": tempered_nll(scores, y_true, best_t)}
