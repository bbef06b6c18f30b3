"""The scan rule: how per-slice verdicts become one scan verdict (`predictor.volume_verdict`), and the file
beside the weights that holds the rule chosen for them (``models/detector.scan_rule.json``, written by
`evaluate_series --save-rule`). No torch and no Django here: the portal's pages read the rule without the model.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from .labels import TAMPERED, VERDICTS

MIN_RULE_THRESHOLD = 2 / 3  # above it a tampered verdict is always its deciding slice's most probable verdict
SCAN_RULE_SUFFIX = ".scan_rule.json"  # models/detector.pt -> models/detector.scan_rule.json


class ScanRuleError(ValueError):
    """A scan rule file that cannot be used; the message says what is wrong with it."""


def check_scan_rule(rule: dict) -> dict:
    """``rule`` as `volume_verdict` takes it ({"threshold": t, "min_slices": m}), or ScanRuleError."""
    if not isinstance(rule, dict):
        raise ScanRuleError(f"A scan rule is an object with threshold and min_slices, got {type(rule).__name__}.")
    try:
        threshold, min_slices = float(rule["threshold"]), rule["min_slices"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ScanRuleError(f"A scan rule needs a numeric threshold and min_slices ({exc}).") from None
    if not MIN_RULE_THRESHOLD <= threshold <= 1.0:
        raise ScanRuleError(f"The scan rule's threshold must lie between {MIN_RULE_THRESHOLD:.3f} and 1, got "
                            f"{threshold}.")
    if isinstance(min_slices, bool) or not isinstance(min_slices, int) or min_slices < 1:
        raise ScanRuleError(f"The scan rule's min_slices must be a whole number of at least 1, got {min_slices!r}.")
    return {"threshold": threshold, "min_slices": min_slices}


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
    threshold, min_slices = float(rule["threshold"]), int(rule["min_slices"])
    flagged = [p for p in slice_scores if _tamper(p) >= threshold]
    if len(flagged) >= min_slices:
        verdict = max(TAMPERED, key=lambda v: max(p[v] for p in flagged))
        deciding = max(flagged, key=lambda p: p[verdict])
        total = sum(deciding[v] for v in VERDICTS) or 1.0
        return verdict, {v: float(deciding[v]) / total for v in VERDICTS}
    verdict = "real_tumor" if raw["real_tumor"] >= raw["no_tumor"] else "no_tumor"
    evidence = sorted((_tamper(p) for p in slice_scores), reverse=True)
    nearest = evidence[min_slices - 1] if len(evidence) >= min_slices else 0.0  # below the threshold
    for v in TAMPERED:
        raw[v] = min(raw[v], raw[verdict] * nearest / threshold)
    total = sum(raw.values()) or 1.0
    return verdict, {v: raw[v] / total for v in VERDICTS}
