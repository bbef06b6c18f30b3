"""The scan rule: how per-slice verdicts become one scan verdict (`predictor.volume_verdict`), and the file
beside the weights that holds the rule chosen for them (``models/detector.scan_rule.json``, written by
`evaluate_series --save-rule`). No torch and no Django here: the portal's pages read the rule without the model.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from .labels import TAMPERED, VERDICTS

MIN_RULE_THRESHOLD, MAX_RULE_THRESHOLD = 0.5, 0.9999  # a slice tamper score; the log-odds must stay finite
MAX_SLOPE = 50.0
SCAN_RULE_SUFFIX = ".scan_rule.json"  # models/detector.pt -> models/detector.scan_rule.json
_EPS = 1e-6


class ScanRuleError(ValueError):
    """A scan rule file that cannot be used; the message says what is wrong with it."""


def check_scan_rule(rule: dict) -> dict:
    """``rule`` as `volume_verdict` takes it ({"threshold": t, "min_slices": m, "slope": a}; slope 1 when not
    given), or ScanRuleError."""
    if not isinstance(rule, dict):
        raise ScanRuleError(f"A scan rule is an object with threshold and min_slices, got {type(rule).__name__}.")
    try:
        threshold, min_slices = float(rule["threshold"]), rule["min_slices"]
        slope = float(rule.get("slope", 1.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ScanRuleError(f"A scan rule needs a numeric threshold and min_slices ({exc}).") from None
    if not MIN_RULE_THRESHOLD <= threshold <= MAX_RULE_THRESHOLD:
        raise ScanRuleError(f"The scan rule's threshold must lie between {MIN_RULE_THRESHOLD} and "
                            f"{MAX_RULE_THRESHOLD}, got {threshold}.")
    if isinstance(min_slices, bool) or not isinstance(min_slices, int) or min_slices < 1:
        raise ScanRuleError(f"The scan rule's min_slices must be a whole number of at least 1, got {min_slices!r}.")
    if not 0.0 < slope <= MAX_SLOPE:
        raise ScanRuleError(f"The scan rule's slope must be above 0 and at most {MAX_SLOPE}, got {slope}.")
    return {"threshold": threshold, "min_slices": min_slices, "slope": slope}


def scan_rule_path(weights: str | Path) -> Path:
    weights = Path(weights)
    return weights.with_name(weights.stem + SCAN_RULE_SUFFIX)


def load_scan_rule(weights: str | Path, sha256: str) -> dict | None:
    """The scan rule chosen for the bundle at ``weights`` (the file beside it), or None when there is none or it
    was chosen for another model (its ``model_sha256`` differs: a retrained bundle copied over the old one).
    A file that is not a usable rule raises ScanRuleError."""
    path = scan_rule_path(weights)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScanRuleError(f"{path} is not readable JSON ({exc}); remove it or write it again with "
                            "`python manage.py evaluate_series --save-rule`.") from exc
    if not isinstance(doc, dict) or "rule" not in doc:
        raise ScanRuleError(f"{path} holds no \"rule\"; write it with `python manage.py evaluate_series --save-rule`.")
    if doc.get("model_sha256") != sha256:
        logging.getLogger(__name__).warning(
            "%s was chosen for the model with sha256 %s, not this one (%s): the scan verdict uses the max rule. "
            "Run `python manage.py evaluate_series --save-rule` for this model.", path,
            str(doc.get("model_sha256"))[:12], sha256[:12])
        return None
    try:
        rule = check_scan_rule(doc["rule"])
    except ScanRuleError as exc:
        raise ScanRuleError(f"{path}: {exc}") from None
    return {**rule, "chosen_on": doc.get("chosen_on", "")}


def _tamper(scores: dict) -> float:
    return float(sum(scores[v] for v in TAMPERED))


def _logit(p: float) -> float:
    p = min(max(float(p), _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def evidence(slice_scores: list[dict], min_slices: int) -> float:
    """The rule's statistic: the ``min_slices``-th highest slice tamper score (0 with fewer slices)."""
    ranked = sorted((_tamper(p) for p in slice_scores), reverse=True)
    return ranked[min_slices - 1] if len(ranked) >= min_slices else 0.0


def tamper_probability(e: float, threshold: float, slope: float) -> float:
    """The scan's probability of being tampered (at even odds beforehand) from the rule's statistic ``e``: a
    logistic curve in the log-odds of ``e``, 0.5 at ``threshold``, with ``slope`` fitted on validation series."""
    z = slope * (_logit(e) - _logit(threshold))
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def fit_slope(cases: list[tuple[float, bool]], threshold: float) -> float:
    """The slope that makes `tamper_probability` fit (statistic, tampered) pairs best: the maximum of the
    log-likelihood, tampered and authentic series weighted to count half each (even odds), over a grid."""
    n_t = sum(1 for _, y in cases if y)
    n_a = len(cases) - n_t
    if not n_t or not n_a:
        return 1.0
    best = (-math.inf, 1.0)
    for k in range(1, 501):
        slope = k * 0.02  # 0.02 .. 10
        ll = 0.0
        for e, y in cases:
            q = min(max(tamper_probability(e, threshold, slope), 1e-9), 1 - 1e-9)
            ll += (math.log(q) / n_t) if y else (math.log(1 - q) / n_a)
        if ll > best[0]:
            best = (ll, slope)
    return best[1]


def scan_scores(slice_scores: list[dict], rule: dict | None = None) -> tuple[str, dict]:
    """(verdict, scores) for a scan from its slices' score dicts; see `volume_verdict`."""
    if not slice_scores:
        raise ValueError("volume_verdict needs at least one slice prediction.")
    raw = {
        v: (min(p[v] for p in slice_scores) if v == "no_tumor" else max(p[v] for p in slice_scores))
        for v in VERDICTS
    }
    if rule is None:
        total = sum(raw.values()) or 1.0
        scores = {v: raw[v] / total for v in VERDICTS}
        return max(VERDICTS, key=lambda v: scores[v]), scores
    q = tamper_probability(evidence(slice_scores, int(rule["min_slices"])), float(rule["threshold"]),
                           float(rule.get("slope", 1.0)))
    scores = {}
    for group, mass in ((TAMPERED, q), (("real_tumor", "no_tumor"), 1.0 - q)):
        total = sum(raw[v] for v in group)
        for v in group:
            scores[v] = mass * (raw[v] / total if total > 0 else 1.0 / len(group))
    return max(VERDICTS, key=lambda v: scores[v]), scores


# --- how rare tampering is ------------------------------------------------------------------------------
# The rule's probability is fitted with tampered and authentic series counting half each (`fit_slope`): it says
# how likely a scan is tampered were tampered and authentic scans equally common. Where tampering is rarer (a
# hospital's archive), the same evidence means less: Bayes' rule moves the odds by the ratio of the prior odds.
# The verdict is not moved (it is what the slices show); these figures say how far a doctor should trust a flag.

REFERENCE_PREVALENCES = (0.1, 0.01, 0.001)  # 1 in 10, 1 in 100, 1 in 1000 scans tampered


def check_prevalence(prevalence) -> float:
    """``prevalence`` (the share of scans that are tampered, strictly between 0 and 1) as a float, or ValueError
    that says what is wrong with it."""
    try:
        value = float(prevalence)
    except (TypeError, ValueError):
        raise ValueError(f"The share of tampered scans must be a number between 0 and 1 (0.01 for 1 in 100), "
                         f"got {prevalence!r}.") from None
    if not 0.0 < value < 1.0 or math.isnan(value):
        raise ValueError(f"The share of tampered scans must lie strictly between 0 and 1 (0.01 for 1 in 100), "
                         f"got {prevalence!r}.")
    return value


def at_prevalence(q: float, prevalence: float, base: float = 0.5) -> float:
    """A tamper probability ``q`` that holds when a share ``base`` of scans is tampered, restated for a share
    ``prevalence`` (Bayes' rule: the odds times the ratio of the prior odds)."""
    prevalence, base = check_prevalence(prevalence), check_prevalence(base)
    q = min(max(float(q), 0.0), 1.0)
    num = q * prevalence * (1.0 - base)
    den = num + (1.0 - q) * (1.0 - prevalence) * base
    return num / den if den > 0 else 0.0


def flagged_tampered(detection_rate: float, false_alarm_rate: float, prevalence: float) -> float | None:
    """Of the scans a rule calls tampered, the share that are, when a share ``prevalence`` of scans is tampered
    and the rule catches ``detection_rate`` of them and flags ``false_alarm_rate`` of authentic ones (the positive
    predictive value). None when the rule flags nothing at all."""
    prevalence = check_prevalence(prevalence)
    hits = float(detection_rate) * prevalence
    alarms = float(false_alarm_rate) * (1.0 - prevalence)
    return hits / (hits + alarms) if hits + alarms > 0 else None


def one_in(prevalence: float) -> str:
    """0.01 -> "1 in 100", 0.005 -> "1 in 200", 0.3 -> "30 in 100" (a share of scans in a doctor's words)."""
    prevalence = check_prevalence(prevalence)
    n = 1.0 / prevalence
    if abs(n - round(n)) < 1e-6 * n:
        return f"1 in {round(n):,}"
    return f"{prevalence * 100:g} in 100" if prevalence >= 0.01 else f"{prevalence * 1000:g} in 1,000"
