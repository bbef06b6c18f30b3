"""Reads of the reports app: the current model's card, evaluation runs and their tables."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils import timezone

from reports.models import EvaluationRun

# --- The model card -------------------------------------------------------------------------------------

_card_cache: dict[tuple, "ModelCard"] = {}


@dataclass
class ModelCard:
    weights_path: str
    available: bool
    problem: str = ""
    name: str = ""
    version: str = ""
    sha256: str = ""
    created: str = ""
    description: str = ""
    backbone: str = ""
    trained: bool | None = None
    meta: dict = field(default_factory=dict)  # everything else the bundle says about itself
    card_text: str = ""  # models/MODEL_CARD.md (or MODEL_CARD.md beside the weights)

    @property
    def facts(self) -> list[tuple[str, str]]:
        """The bundle's training and calibration record in words (`card_facts`)."""
        return card_facts(self.meta)

    @property
    def meta_json(self) -> str:
        import json

        return json.dumps(self.meta, indent=2, sort_keys=True, default=str)


def _short(sha: object) -> str:
    return str(sha or "")[:12]


def card_facts(meta: dict) -> list[tuple[str, str]]:
    """What a reader of the model page wants from a bundle's metadata, in words: how it was trained, from
    what, and what it was calibrated on. Keys a bundle lacks are left out; the whole record stays available
    as JSON (`ModelCard.meta_json`)."""
    facts: list[tuple[str, str]] = []
    if meta.get("train_split") or meta.get("dataset_dir"):
        text = f"split '{meta.get('train_split') or '?'}' of {meta.get('dataset_dir') or '?'}"
        if meta.get("dataset_sha256"):
            text += f" (annotations.json sha256 {_short(meta['dataset_sha256'])}...)"
        facts.append(("Trained on", text))
    if meta.get("train_sites"):
        facts.append(("Sites and corpora seen", ", ".join(map(str, meta["train_sites"]))))
    if meta.get("train_methods"):
        facts.append(("Tampering methods seen", ", ".join(map(str, meta["train_methods"]))))
    if meta.get("steps") is not None:
        parts = [f"{meta['steps']} optimiser steps"]
        if meta.get("epochs_completed") is not None:
            parts.append(f"{meta['epochs_completed']} epochs")
        if meta.get("train_minutes") is not None:
            parts.append(f"{meta['train_minutes']} minutes")
        if meta.get("device"):
            parts.append(f"on {meta['device']}")
        facts.append(("Training", ", ".join(parts)))
    init = meta.get("init_from")
    if isinstance(init, dict):
        facts.append(("Continued from", f"{init.get('name', '?')} {init.get('version', '')} "
                                        f"(sha256 {_short(init.get('sha256'))}...)".replace("  ", " ")))
    averaged = meta.get("averaged_from")
    if isinstance(averaged, list) and averaged:
        facts.append(("Weights averaged from", "; ".join(
            f"{a.get('weight', '?')} x {a.get('version') or a.get('file', '?')} (sha256 {_short(a.get('sha256'))}...)"
            for a in averaged if isinstance(a, dict))))
    cal = meta.get("calibrated_on")
    if isinstance(cal, dict):
        text = f"split '{cal.get('split', '?')}' of {cal.get('dataset_dir', '?')}"
        if cal.get("n_images") is not None:
            text += f", {cal['n_images']} images"
        figures = cal.get("metrics") or {}
        if isinstance(figures, dict) and figures.get("accuracy") is not None:
            text += f": accuracy {float(figures['accuracy']):.3f}"
            if figures.get("macro_f1") is not None:
                text += f", macro F1 {float(figures['macro_f1']):.3f}"
        facts.append(("Calibrated on", text))
    if meta.get("shipped"):
        facts.append(("Shipped", str(meta["shipped"])))
    if meta.get("stored_dtype"):
        facts.append(("Weights stored as", str(meta["stored_dtype"])))
    return facts


def _card_text(weights: Path) -> str:
    for candidate in (weights.parent / "MODEL_CARD.md", Path(settings.BASE_DIR) / "models" / "MODEL_CARD.md"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace")
    return ""


def model_card_current() -> ModelCard:
    """What the installed weights bundle (settings.DETECTOR_WEIGHTS) says about itself: read from the
    bundle's metadata without building the network, cached until the file changes."""
    weights = Path(settings.DETECTOR_WEIGHTS)
    try:
        stat = weights.stat()
    except OSError:
        return ModelCard(
            weights_path=str(weights), available=False, card_text=_card_text(weights),
            problem=f"No detector weights at {weights}. Train one (`manage.py train_detector`) or point "
                    "DETECTOR_WEIGHTS at a bundle.",
        )
    key = (str(weights), stat.st_mtime_ns, stat.st_size)
    if key in _card_cache:
        # The bundle is unchanged; the card text is small and may have been edited.
        return replace(_card_cache[key], card_text=_card_text(weights))

    from inference.ml.bundle_file import BundleHeaderError, file_sha256, read_bundle_header

    try:
        try:
            bundle = read_bundle_header(weights)  # without torch: pages load fast in web workers
        except BundleHeaderError:
            from inference.ml.model import load_bundle

            bundle = load_bundle(weights, map_location="cpu")  # says what is wrong with the file
    except Exception as exc:  # torch.load raises many types on a bad file
        return ModelCard(weights_path=str(weights), available=False, card_text=_card_text(weights),
                         problem=f"{weights} is not a usable detector bundle ({exc}).")
    meta = dict(bundle.get("meta") or {})
    card = ModelCard(
        weights_path=str(weights),
        available=True,
        name=str(meta.pop("name", "detector")),
        version=str(meta.pop("version", "0")),
        sha256=file_sha256(weights),
        created=str(meta.pop("created", "")),
        description=str(meta.pop("description", "")),
        trained=meta.pop("trained", None),
        backbone=str((bundle.get("config") or {}).get("backbone", "")),
        meta=meta,
        card_text=_card_text(weights),
    )
    _card_cache.clear()
    _card_cache[key] = card
    return card


# --- The scan rule ---------------------------------------------------------------------------------------

SCAN_RULE_FIGURES = (("accuracy", "Accuracy"), ("false_alarm_rate", "Authentic series called tampered"),
                     ("detection_rate", "Tampered series caught"))


@dataclass
class ScanRuleSummary:
    """How the installed model's slices become a scan verdict, and what that measured on whole series."""

    text: str  # the rule in a doctor's words (inference.models.scan_rule_text)
    in_force: bool  # the worker applies a chosen rule (else the max rule)
    problem: str = ""  # why no chosen rule is in force
    written: str = ""
    chosen_on: str = ""
    rows: list[tuple[str, str, int, list[float | None]]] = field(default_factory=list)  # split, rule, cases, figures
    note: str = ""  # how coarse the test figures are
    # of the scans the rule flags, the share tampered, at a share of tampered scans: (share, "1 in 100", estimate,
    # low, high), the site's share first when it is set (settings.TAMPER_PREVALENCE)
    flagged: list[tuple[float, str, float | None, float | None, float | None]] = field(default_factory=list)
    held_out: "HeldOutSeries | None" = None  # the series evaluation's held-out cases, when it is of this rule


SERIES_EVALUATION_DIR = "evaluation/series"  # beside the weights: evaluate_series --out models/evaluation/series


@dataclass
class HeldOutSeries:
    """What the series evaluation beside the weights measured on cases the rule was never chosen on: a tumour
    volume injected in 3-D, and authentic series processed whole (counts over the validation and test series)."""

    path: str
    # split, case, series, slices called tampered, of slices, series caught by the max rule, by this rule
    volumes: list[tuple[str, str, int, int, int, int, int]] = field(default_factory=list)
    # processing, series, input check warned, max rule: false alarms, unwarned; this rule: false alarms, unwarned
    processed: list[tuple[str, int, int, int, int, int, int]] = field(default_factory=list)
    processed_splits: list[tuple[str, int]] = field(default_factory=list)  # split, authentic series processed
    problem: str = ""  # why a file that is there is not shown

    @property
    def as_read(self) -> tuple | None:
        """The row of the authentic series unprocessed, for comparison."""
        return next((row for row in self.processed if row[0] == "as read"), None)

    @property
    def worst_unwarned(self) -> tuple[str, int, int] | None:
        """The processing after which this rule raised the most false alarms without a warning (name, false
        alarms, series), when that is more than on the series as read; None otherwise."""
        as_read = self.as_read[6] if self.as_read else 0
        rows = [row for row in self.processed if row[0] != "as read" and row[6] > as_read]
        if not rows:
            return None
        name, n, *_, unwarned = max(rows, key=lambda row: row[6])
        return name, unwarned, n


def flagged_rows(test: dict, site_prevalence: float | None = None) -> list[tuple]:
    """Of the scans the rule calls tampered, the share that are (the positive predictive value), from the rule's
    test figures (detection and false-alarm rates on whole series), at the site's share of tampered scans and at 1
    in 10, 100 and 1000. The range takes both rates at the ends of their 95 % Wilson intervals (the worst and the
    best case of the two together). Empty when the test figures lack the counts."""
    from inference.ml.intervals import wilson
    from inference.ml.scan_rule import REFERENCE_PREVALENCES, flagged_tampered, one_in

    try:
        n_t, n_a = int(test["n_tampered"]), int(test["n_authentic"])
        caught, alarms = round(float(test["detection_rate"]) * n_t), round(float(test["false_alarm_rate"]) * n_a)
    except (KeyError, TypeError, ValueError):
        return []
    if not n_t or not n_a:
        return []
    (d_low, d_high), (f_low, f_high) = wilson(caught, n_t), wilson(alarms, n_a)
    shares = dict.fromkeys(((site_prevalence,) if site_prevalence else ()) + REFERENCE_PREVALENCES)  # site first
    return [(p, one_in(p), flagged_tampered(caught / n_t, alarms / n_a, p), flagged_tampered(d_low, f_high, p),
             flagged_tampered(d_high, f_low, p)) for p in shares]


def scan_rule_summary(card: ModelCard) -> ScanRuleSummary:
    """The rule beside the installed weights (read without torch), as the worker will apply it."""
    import json

    from inference.ml.scan_rule import ScanRuleError, load_scan_rule, scan_rule_path
    from inference.models import scan_rule_text

    max_text = scan_rule_text(None)
    if not card.available:
        return ScanRuleSummary(text=max_text, in_force=False, problem=card.problem)
    path = scan_rule_path(card.weights_path)
    if not path.is_file():
        return ScanRuleSummary(text=max_text, in_force=False, problem=(
            f"No scan rule was chosen for this model ({path.name} is missing): the max rule decides. "
            "`python manage.py evaluate_series --save-rule` chooses one on the validation split's whole series."))
    try:
        rule = load_scan_rule(card.weights_path, card.sha256)
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ScanRuleError, OSError, ValueError) as exc:
        return ScanRuleSummary(text=max_text, in_force=False, problem=f"The scan rule cannot be used: {exc}")
    if rule is None:
        return ScanRuleSummary(text=max_text, in_force=False, problem=(
            f"{path.name} was chosen for another model ({str(doc.get('model_sha256'))[:12]}), not this one: the "
            "max rule decides until `python manage.py evaluate_series --save-rule` is run for this model."))
    rows = []
    for split in ("test", "val"):
        for name, label in (("count", "this rule"), ("max", "max rule")):
            figures = (doc.get("measured") or {}).get(split, {}).get(name)
            if figures:
                rows.append((split, label, int(figures.get("n_cases") or 0),
                             [figures.get(key) for key, _ in SCAN_RULE_FIGURES]))
    note = ""
    test = (doc.get("measured") or {}).get("test", {}).get("count") or {}
    if test.get("n_authentic") and test.get("false_alarm_rate") is not None:
        from inference.ml.intervals import wilson

        n = int(test["n_authentic"])
        k = round(float(test["false_alarm_rate"]) * n)
        high = wilson(k, n)[1]
        note = (f"Few series: of {n} authentic test series this rule called {k} tampered, which is compatible "
                f"(95 % Wilson interval) with a true false-alarm rate up to {100 * high:.0f} %.")
    return ScanRuleSummary(text=scan_rule_text(rule), in_force=True, written=str(doc.get("written", "")),
                           chosen_on=str(doc.get("chosen_on", "")), rows=rows, note=note,
                           flagged=flagged_rows(test, settings.TAMPER_PREVALENCE),
                           held_out=held_out_series(card, rule))


def held_out_series(card: ModelCard, rule: dict) -> HeldOutSeries | None:
    """The held-out series figures of ``evaluate_series --volume-injections --processed`` (its
    series_metrics.json in ``evaluation/series/`` beside the weights), when they are of these weights and of the
    rule in force (same threshold, minimum slices and slope); None when there is no such file. Counts are summed
    over the splits (the rule never saw these cases)."""
    import json

    path = Path(card.weights_path).parent / SERIES_EVALUATION_DIR / "series_metrics.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if str((doc.get("model") or {}).get("sha256", "")) != card.sha256:
            return HeldOutSeries(path=str(path), problem=(
                f"{path} is of other weights than the installed ones: its held-out series are not shown."))
        chosen = doc.get("chosen_on_val") or {}
        if any(float(chosen.get(k, 1.0)) != float(rule.get(k, 1.0)) for k in ("threshold", "min_slices", "slope")):
            return HeldOutSeries(path=str(path), problem=(
                f"{path} measured another scan rule than the one in force: its held-out series are not shown."))
        out = HeldOutSeries(path=str(path))
        sums: dict[str, list[int]] = {}
        for split in ("test", "val"):
            figures = (doc.get("splits") or {}).get(split) or {}
            volume = ((figures.get("held_out") or {}).get("added_volume")) or {}
            for case in ("added_volume", "added_3 on the same series"):
                v = volume.get(case)
                if v:
                    n = int(v["n"])
                    out.volumes.append((split, case, n, round(float(v["slices_called_tampered"]) * int(v["slices"])),
                                        int(v["slices"]), round(float(v["max"]["called_tampered"]) * n),
                                        round(float(v["count"]["called_tampered"]) * n)))
            processed = figures.get("processed") or {}
            if processed:
                out.processed_splits.append((split, int((processed.get("as read") or {}).get("n") or 0)))
            for name, g in processed.items():
                row = sums.setdefault(name, [0] * 6)
                for i, value in enumerate((g["n"], g["input_check_warned"], g["max"]["false_alarms"],
                                           g["max"]["false_alarms_unwarned"], g["count"]["false_alarms"],
                                           g["count"]["false_alarms_unwarned"])):
                    row[i] += int(value)
        out.processed = [(name, *row) for name, row in sums.items()]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return HeldOutSeries(path=str(path), problem=f"{path} cannot be shown: {exc}")
    if not out.volumes and not out.processed:
        return None
    return out


# --- Evaluation runs -------------------------------------------------------------------------------------

def evaluation_run_list(*, limit: int = 20) -> QuerySet[EvaluationRun]:
    return EvaluationRun.objects.order_by("-created_at", "-id")[:limit]


TEST_SPLIT = "test"  # the split whose figures stand for the model (patient-disjoint from training)


def evaluation_run_latest(*, model_sha256: str | None = None, split: str | None = None) -> EvaluationRun | None:
    qs = EvaluationRun.objects.all()
    if model_sha256:
        qs = qs.filter(model_sha256=model_sha256)
    if split:
        qs = qs.filter(split=split)
    return qs.order_by("-created_at", "-id").first()


SHIPPED_EVALUATION_DIR = "evaluation"  # beside the weights: models/evaluation/ for models/detector.pt


@dataclass
class ShippedEvaluation:
    run: EvaluationRun | None  # unsaved; None when there is none to show
    path: str
    evaluated_at: str = ""
    problem: str = ""  # why a folder that is there cannot be shown


def shipped_evaluation(card: ModelCard) -> ShippedEvaluation:
    """The evaluation released with the installed weights: evaluate_detector's folder ``evaluation/`` beside
    them (metrics.json; run.json, breakdown.json, intervals.json and confidence.json when present), as an unsaved EvaluationRun,
    when its metrics name exactly these weights (same sha256) and every file is well formed. A fresh
    installation shows it until an evaluation is recorded here."""
    import json

    from reports.services import evaluation_run_build

    folder = Path(card.weights_path).parent / SHIPPED_EVALUATION_DIR
    if not card.available or not (folder / "metrics.json").is_file():
        return ShippedEvaluation(run=None, path=str(folder))

    def read(name: str, required: bool = False):
        path = folder / name
        if not required and not path.is_file():
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(value, dict):
            raise ValueError(f"{name} holds {type(value).__name__}, not an object")
        return value

    try:
        metrics, about = read("metrics.json", required=True), read("run.json") or {}
        if str((metrics.get("model") or {}).get("sha256", "")) != card.sha256:
            return ShippedEvaluation(run=None, path=str(folder),
                                     problem=f"{folder}/metrics.json is of other weights than the installed ones.")
        run = evaluation_run_build(
            metrics=metrics, dataset_dir=str(about.get("dataset_dir") or ""), out_dir=str(folder),
            split=about.get("split"), breakdown=read("breakdown.json"), intervals=read("intervals.json"),
            confidence=read("confidence.json"),
            dataset_sha256=str(about.get("dataset_sha256") or ""),
        )
    except (OSError, ValueError, TypeError, KeyError) as exc:  # json.JSONDecodeError and InvalidMetrics are ValueErrors
        return ShippedEvaluation(run=None, path=str(folder), problem=f"{folder} cannot be shown: {exc}")
    return ShippedEvaluation(run=run, path=str(folder), evaluated_at=str(about.get("evaluated_at") or ""))


def evaluation_to_show(card: ModelCard) -> tuple[EvaluationRun | None, ShippedEvaluation | None]:
    """What the model page shows, and what the scan page's figures (the confidence guide, what each verdict has
    meant) are read from: the newest evaluation of the installed model on a ``test`` split recorded here, else the
    one shipped with its weights, else the newest of the installed model on any split or dataset (the page names
    it), else the newest of any model (the page flags it). A run on a training or validation split, or on a
    site's own folder without splits, never stands in for a test evaluation that exists. The second item is the
    shipped folder when it was consulted (its ``problem`` says why it could not be shown)."""
    if card.sha256:
        run = evaluation_run_latest(model_sha256=card.sha256, split=TEST_SPLIT)
        if run is not None:
            return run, None
    shipped = shipped_evaluation(card)
    if shipped.run is not None:
        return shipped.run, shipped
    run = evaluation_run_latest(model_sha256=card.sha256) if card.sha256 else None
    if run is not None:
        return run, None
    return evaluation_run_latest(), shipped


@dataclass
class ConfidenceGuide:
    """How to read a verdict's confidence, from a measured evaluation of the installed model."""

    model_version: str
    model_sha256: str
    split: str
    n_images: int
    high_threshold: float  # verdicts said at this confidence or more ...
    high_n: int
    high_share: float
    high_accuracy: float  # ... were right this often
    low_threshold: float  # verdicts said under this confidence ...
    low_n: int
    low_accuracy: float | None  # ... were right this often (None: there were none)


GUIDE_LOW_THRESHOLD = 0.7
GUIDE_MIN_SHARE = 0.25  # the high group quoted is the most confident one holding at least this share of the slices


def confidence_guide(card: ModelCard) -> ConfidenceGuide | None:
    """From the evaluation the model page shows (`evaluation_to_show`), when it is of the installed weights and
    has confidence figures: how right the verdicts said at a high confidence were (the highest threshold of its
    ``by_threshold`` whose verdicts are at least ``GUIDE_MIN_SHARE`` of the slices) and how right those said under
    ``GUIDE_LOW_THRESHOLD`` were (from its reliability bins). None when there is nothing measured to say."""
    if not card.available or not card.sha256:
        return None
    run, _ = evaluation_to_show(card)
    if run is None or run.model_sha256 != card.sha256:
        return None
    conf = run.confidence or {}
    groups = [c for c in conf.get("by_threshold") or []
              if c.get("accuracy") is not None and (c.get("share") or 0) >= GUIDE_MIN_SHARE]
    if not groups:
        return None
    high = max(groups, key=lambda c: c["threshold"])
    low_bins = [b for b in conf.get("reliability") or []
                if b.get("count") and b.get("high", 1.0) <= GUIDE_LOW_THRESHOLD + 1e-9]
    low_n = sum(b["count"] for b in low_bins)
    return ConfidenceGuide(
        model_version=run.model_version, model_sha256=run.model_sha256, split=run.split or "whole-dataset",
        n_images=int(conf.get("n_images") or run.n_images),
        high_threshold=float(high["threshold"]), high_n=int(high.get("n") or 0), high_share=float(high["share"]),
        high_accuracy=float(high["accuracy"]), low_threshold=GUIDE_LOW_THRESHOLD, low_n=low_n,
        low_accuracy=(sum(b["count"] * b["accuracy"] for b in low_bins) / low_n) if low_n else None,
    )


def confidence_guide_for(job) -> ConfidenceGuide | None:
    """`confidence_guide` for an analysis job: only when its verdict was (or, still running, will be) given by the
    installed model that the guide's evaluation measured."""
    if job is None:
        return None
    guide = confidence_guide(model_card_current())
    if guide is None or (job.model_sha256 and job.model_sha256 != guide.model_sha256):
        return None
    return guide


def confidence_guide_text(guide: ConfidenceGuide) -> str:
    """The guide in one sentence, as the scan page and the PDF report say it."""
    def pct(x: float) -> str:
        return f"{round(100 * x)} %"

    text = (f"When model {guide.model_version} said a verdict at {pct(guide.high_threshold)} or more "
            f"({pct(guide.high_share)} of the {guide.n_images} slices of its {guide.split} evaluation), it was right "
            f"{pct(guide.high_accuracy)} of the time")
    if guide.low_n:
        text += (f"; under {pct(guide.low_threshold)} ({guide.low_n} slice{'s' if guide.low_n != 1 else ''}), "
                 f"{pct(guide.low_accuracy)}")
    return text + ". These figures are per slice; a scan's verdict gathers its slices."


@dataclass
class VerdictGuide:
    """What one verdict of the installed model has meant, from the confusion matrix of its measured evaluation:
    of the slices it gave this verdict, how many truly were each verdict."""

    model_version: str
    model_sha256: str
    split: str
    verdict: str
    said: int  # slices the model gave this verdict
    right: int  # ... that truly were it
    others: list[tuple[str, int]]  # (true verdict, slices) for the rest, most first

    @property
    def precision(self) -> float:
        return self.right / self.said


def verdict_guides(card: ModelCard) -> dict[str, VerdictGuide]:
    """Per verdict, `VerdictGuide` from the evaluation the model page shows (`evaluation_to_show`) when it is of
    the installed weights; verdicts the evaluation never saw the model give are left out (nothing measured)."""
    from inference.models import VERDICT_LABELS

    if not card.available or not card.sha256:
        return {}
    run, _ = evaluation_to_show(card)
    if run is None or run.model_sha256 != card.sha256:
        return {}
    cm = (run.metrics or {}).get("confusion_matrix") or {}
    labels, matrix = list(cm.get("labels") or []), cm.get("matrix") or []
    if len(matrix) != len(labels) or any(len(row) != len(labels) for row in matrix):
        return {}
    guides = {}
    for col, verdict in enumerate(labels):
        if verdict not in VERDICT_LABELS:
            continue
        column = [int(matrix[row][col]) for row in range(len(labels))]
        said = sum(column)
        if not said:
            continue
        others = sorted(((labels[row], n) for row, n in enumerate(column) if row != col and n),
                        key=lambda item: (-item[1], labels.index(item[0])))
        guides[verdict] = VerdictGuide(model_version=run.model_version, model_sha256=run.model_sha256,
                                       split=run.split or "whole-dataset", verdict=verdict,
                                       said=said, right=column[col], others=others)
    return guides


def verdict_guides_for(job) -> dict[str, VerdictGuide]:
    """`verdict_guides` for an analysis job: only when its verdicts were (or will be) given by the installed model
    that the evaluation measured."""
    if job is None:
        return {}
    guides = verdict_guides(model_card_current())
    if job.model_sha256 and any(g.model_sha256 != job.model_sha256 for g in guides.values()):
        return {}
    return guides


def processed_caveat_for(job) -> str:
    """For a scan verdict of tampering: how often authentic series were flagged by the same weights and scan rule,
    as read and after the processing that raised the most false alarms without an input-check warning (the series
    evaluation beside the installed weights, `held_out_series`). "" for any other verdict, a job not finished, a
    job not of the installed weights, a rule other than the one measured, or where no processing raised more false
    alarms unwarned than none did."""
    if (job is None or job.status != "succeeded" or job.verdict not in ("fake_added", "fake_removed")
            or not job.model_sha256 or not job.scan_rule):
        return ""
    card = model_card_current()
    if not card.available or card.sha256 != job.model_sha256:
        return ""
    held = held_out_series(card, job.scan_rule)
    worst = held.worst_unwarned if held is not None and not held.problem else None
    if worst is None:
        return ""
    name, alarms, n = worst
    as_read = held.as_read
    read_text = (f"{as_read[5]} of {as_read[1]} as they were read, and " if as_read and as_read[1] == n else "")
    splits = " and ".join({"val": "validation"}.get(split, split) for split, _ in held.processed_splits)
    return (f"Authentic scans are flagged too: of {n} authentic {splits} series, this model and scan rule "
            f"flagged {read_text}{alarms} of {n} after one processing ({name}) without a warning from the input "
            "check. If this scan may have been re-exported, compare it with the original in the archive before "
            "acting on the verdict.")


def verdict_guide_text(guide: VerdictGuide) -> str:
    """The guide in one sentence, in the words the pages use for the verdicts."""
    from inference.models import verdict_label

    slices = f"{guide.said} slice{'s' if guide.said != 1 else ''}"
    text = (f"When model {guide.model_version} read a slice as {verdict_label(guide.verdict)} in its "
            f"{guide.split} evaluation ({slices}), it was right {guide.right} times "
            f"({round(100 * guide.precision)} %)")
    if guide.others:
        wrong = guide.said - guide.right
        text += (f"; the other {wrong} {'were' if wrong != 1 else 'was'} "
                 + ", ".join(f"{verdict_label(v)} ({n})" for v, n in guide.others))
    return text + "."


@dataclass
class ClassRow:
    label: str
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    support: int | None


@dataclass
class EvaluationTables:
    rows: list[ClassRow]  # the paper's Table 1
    labels: list[str]  # Table 2: rows = truth, columns = prediction
    matrix: list[list[int]]
    row_totals: list[int]
    column_totals: list[int]
    total: int

    @property
    def matrix_rows(self):
        return list(zip(self.labels, self.matrix, self.row_totals))

    @property
    def supports(self) -> dict[str, int]:
        return dict(zip(self.labels, self.row_totals))

    @property
    def f1_by_class(self) -> dict[str, float]:
        return {r.label: r.f1 for r in self.rows if r.f1 is not None}


def evaluation_tables(run: EvaluationRun) -> EvaluationTables:
    """Table 1 (per class: one-vs-rest accuracy, precision, recall, F1, support) and Table 2 (the confusion
    matrix), from the stored metrics. Precision, recall and F1 are the stored ones; the per-class accuracy,
    which metrics.json does not carry, follows from the stored confusion matrix."""
    cm = run.metrics["confusion_matrix"]
    labels, matrix = list(cm["labels"]), [[int(v) for v in row] for row in cm["matrix"]]
    n = len(labels)
    row_totals = [sum(row) for row in matrix]
    column_totals = [sum(matrix[r][c] for r in range(n)) for c in range(n)]
    total = sum(row_totals)
    per_class = run.metrics.get("per_class", {})
    rows = []
    for i, label in enumerate(labels):
        stats = per_class.get(label, {})
        tp = matrix[i][i]
        true_negatives = total - row_totals[i] - column_totals[i] + tp
        rows.append(ClassRow(
            label=label,
            accuracy=(tp + true_negatives) / total if total else None,
            precision=stats.get("precision"),
            recall=stats.get("recall"),
            f1=stats.get("f1"),
            support=stats.get("support", row_totals[i]),
        ))
    return EvaluationTables(rows, labels, matrix, row_totals, column_totals, total)


@dataclass
class BreakdownRow:
    group: str
    n: int
    accuracy: float | None
    flagged_tampered: float | None
    mean_iou: float | None


@dataclass
class BreakdownTable:
    key: str
    title: str
    note: str
    rows: list[BreakdownRow]


# breakdown.json's tables shown on the model page, in this order: (key, title, note)
BREAKDOWN_TABLES = (
    ("by_area", "Accuracy by verdict and region size",
     "Size of the true region (tumour, injection or removal) in pixels; 1 % of a 256 x 256 slice is 655 px. "
     "Small regions are where the model errs most."),
    ("by_method", "Accuracy by tampering method", "(none): the authentic slices."),
    ("by_source", "Accuracy by source corpus", ""),
)


def evaluation_breakdown_tables(run: EvaluationRun) -> list[BreakdownTable]:
    """The run's stored breakdown.json (evaluate_detector), one table per group kind it holds; none for a run
    recorded without one. Rows in evaluate_detector's order (the database does not keep a JSON object's order):
    region sizes by verdict and small to large, other groups alphabetically."""
    from inference.ml.evaluate import area_group_order

    breakdown = run.breakdown or {}
    tables = []
    for key, title, note in BREAKDOWN_TABLES:
        groups = breakdown.get(key)
        if not groups:
            continue
        names = sorted(groups, key=area_group_order if key == "by_area" else None)
        rows = [BreakdownRow(group=name, n=int(groups[name]["n"]), accuracy=groups[name].get("accuracy"),
                             flagged_tampered=groups[name].get("flagged_tampered"),
                             mean_iou=groups[name].get("mean_iou"))
                for name in names]
        tables.append(BreakdownTable(key=key, title=title, note=note, rows=rows))
    return tables


# --- Dashboards ------------------------------------------------------------------------------------------

# range name -> (days back, bucket)
DASHBOARD_RANGES = {"30d": (30, "day"), "90d": (90, "week"), "365d": (365, "month")}
DEFAULT_RANGE = "30d"
PENDING = "pending"  # a scan with no succeeded job yet


@dataclass
class Window:
    name: str
    start: date
    end: date  # inclusive, today in TIME_ZONE
    unit: str  # day | week | month

    def bucket(self, day: date) -> date:
        if self.unit == "week":
            return day - timedelta(days=day.weekday())
        if self.unit == "month":
            return day.replace(day=1)
        return day

    def buckets(self) -> list[date]:
        out, day = [], self.bucket(self.start)
        while day <= self.end:
            out.append(day)
            if self.unit == "day":
                day += timedelta(days=1)
            elif self.unit == "week":
                day += timedelta(days=7)
            else:
                day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        return out

    def label(self, day: date) -> str:
        return day.strftime("%Y-%m") if self.unit == "month" else day.strftime("%m-%d")

    @property
    def start_datetime(self):
        return timezone.make_aware(datetime.combine(self.bucket(self.start), time.min))


def dashboard_window(name: str | None, *, today: date | None = None) -> Window:
    name = name if name in DASHBOARD_RANGES else DEFAULT_RANGE
    days, unit = DASHBOARD_RANGES[name]
    end = today or timezone.localdate()
    return Window(name=name, start=end - timedelta(days=days - 1), end=end, unit=unit)


def _local_day(moment) -> date:
    return timezone.localtime(moment).date()


def _counts_by_bucket(window: Window, items, key) -> dict:
    """{series: [count per bucket]} for (moment, series) pairs."""
    buckets = window.buckets()
    position = {b: i for i, b in enumerate(buckets)}
    series: dict[str, list[int]] = {}
    for moment, name in items:
        i = position.get(window.bucket(_local_day(moment)))
        if i is None:
            continue
        series.setdefault(key(name), [0] * len(buckets))[i] += 1
    return series


def _ordered(series: dict, order) -> dict:
    return {name: series[name] for name in order if name in series} | {
        name: values for name, values in series.items() if name not in order}


def _scan_verdicts(*, user, window: Window) -> list[tuple]:
    """(created_at, verdict or PENDING) of the scans `user` may see, uploaded in the window."""
    from inference.models import InferenceJob
    from scans.selectors import scan_list_for

    rows = scan_list_for(user=user).filter(created_at__gte=window.start_datetime).values_list(
        "created_at", "latest_verdict", "latest_job_status")
    return [(created, verdict if status == InferenceJob.Status.SUCCEEDED and verdict else PENDING)
            for created, verdict, status in rows]


def _header_warnings(*, user, window: Window) -> int:
    """How many scans `user` may see, uploaded in the window, have DICOM headers that show signs of editing."""
    from scans.selectors import HEADERS_WARNINGS, scan_visible_to

    return scan_visible_to(user=user).filter(created_at__gte=window.start_datetime,
                                             metadata__header_checks__status=HEADERS_WARNINGS).count()


def _altered_copies(*, user, window: Window) -> int:
    """How many scans `user` may see, uploaded in the window, have another stored copy with other pixels."""
    from scans.selectors import altered_copy_exists, scan_visible_to

    return scan_visible_to(user=user).filter(created_at__gte=window.start_datetime).filter(
        altered_copy_exists()).count()


def _pacs_copies_differ(*, user, window: Window) -> int:
    """How many scans `user` may see, compared with the PACS's copy of their series in the window (after the upload,
    on request or on the periodic recheck, whenever they were uploaded), differ from it at their latest comparison
    (images altered or missing there)."""
    from scans.selectors import pacs_copy_differs, scan_visible_to

    return scan_visible_to(user=user).filter(pacs_checked_at__gte=window.start_datetime).filter(
        pacs_copy_differs()).count()


@dataclass
class DicomTraffic:
    """The DICOM network's work in a dashboard's window, for admins: each row (label, audit action, count) links to
    the audit log filtered on that action; ``waiting`` counts the sends to the PACS waiting to try again now."""

    rows: list[tuple[str, str, int]]
    waiting: int
    receiver_peers: str
    pacs: str

    @property
    def any(self) -> bool:
        return bool(self.waiting or any(count for *_, count in self.rows))


def _dicom_traffic(window: Window) -> DicomTraffic:
    from audit import actions
    from audit.models import AuditEvent
    from reports.models import PacsTransfer
    from scans.dicom_receiver import parse_peers

    shown = [("Series received over DICOM", actions.DICOM_RECEIVED),
             ("Received series refused", actions.DICOM_RECEIVE_FAILED),
             ("Series imported from the PACS", actions.PACS_RETRIEVED),
             ("Imports from the PACS that failed", actions.PACS_RETRIEVE_FAILED),
             ("Analyses sent to the PACS", actions.PACS_SENT),
             ("Sends to the PACS that failed (each try)", actions.PACS_SEND_FAILED),
             ("Scans compared with the PACS's copy", actions.PACS_COMPARED),
             ("PACS copies changed since their last comparison", actions.PACS_COPY_CHANGED)]
    counts = dict(AuditEvent.objects.filter(created_at__gte=window.start_datetime,
                                            action__in=[action for _, action in shown])
                  .values("action").annotate(n=Count("id")).values_list("action", "n"))
    return DicomTraffic(rows=[(label, action, counts.get(action, 0)) for label, action in shown],
                        waiting=PacsTransfer.objects.filter(status=PacsTransfer.Status.RETRYING).count(),
                        receiver_peers=", ".join(
                            f"{p.ae_title}{' at ' + p.host if p.host else ''} (for {p.username})"
                            for p in parse_peers(settings.DICOM_RECEIVER_PEERS).values()),
                        pacs=settings.PACS_DESTINATION)


@dataclass
class AlertSummary:
    """The e-mail alerts (alerts app) in a dashboard's window, for admins: where they go, which kinds, how many
    were sent and how many could not be (each count links to its audit events)."""

    recipients: int
    webhook: bool
    kinds: list[str]
    sent: int
    failed: int


def _alert_summary(window: Window) -> AlertSummary:
    from audit import actions
    from audit.models import AuditEvent

    counts = dict(AuditEvent.objects.filter(created_at__gte=window.start_datetime,
                                            action__in=[actions.ALERT_SENT, actions.ALERT_FAILED])
                  .values("action").annotate(n=Count("id")).values_list("action", "n"))
    return AlertSummary(recipients=len(settings.ALERT_EMAILS), webhook=bool(settings.ALERT_WEBHOOK_URL),
                        kinds=list(settings.ALERT_ON),
                        sent=counts.get(actions.ALERT_SENT, 0), failed=counts.get(actions.ALERT_FAILED, 0))


@dataclass
class ReviewSummary:
    """Radiologists' reviews of the scans a dashboard counts: of those whose latest analysis succeeded, how many
    were reviewed, how many reviews confirmed the detector, and (detector verdict, radiologist verdict) counts."""

    analysed: int = 0
    reviewed: int = 0
    confirmed: int = 0
    pairs: dict = field(default_factory=dict)  # (detector verdict, radiologist verdict) -> scans

    def add(self, detector: str, radiologist: str | None) -> None:
        """Count one analysed scan with its detector verdict and its newest review's verdict (None: not reviewed)."""
        if radiologist:
            self.reviewed += 1
            self.confirmed += radiologist == detector
            self.pairs[(detector, radiologist)] = self.pairs.get((detector, radiologist), 0) + 1

    @property
    def awaiting(self) -> int:
        return self.analysed - self.reviewed

    @property
    def overruled(self) -> int:
        return self.reviewed - self.confirmed

    @property
    def agreement(self) -> float | None:
        return self.confirmed / self.reviewed if self.reviewed else None

    @property
    def matrix_rows(self) -> list[tuple[str, list[int], int]]:
        """(detector verdict, scans per radiologist verdict in VERDICTS order, row total), one per verdict."""
        from inference.ml.labels import VERDICTS

        rows = []
        for detector in VERDICTS:
            counts = [self.pairs.get((detector, radiologist), 0) for radiologist in VERDICTS]
            rows.append((detector, counts, sum(counts)))
        return rows


def _review_summary(*, user, window: Window) -> ReviewSummary:
    from inference.models import InferenceJob
    from scans.selectors import scan_list_for

    rows = (scan_list_for(user=user).filter(created_at__gte=window.start_datetime,
                                            latest_job_status=InferenceJob.Status.SUCCEEDED)
            .values_list("latest_verdict", "latest_review_verdict"))
    summary = ReviewSummary()
    for detector, radiologist in rows:
        summary.analysed += 1
        summary.add(detector, radiologist)
    return summary


def model_review_summary(sha256: str) -> ReviewSummary:
    """Radiologists' reviews of every analysis the weights `sha256` made, across all scans (counts only): each
    succeeded job is one analysis, counted by its newest review."""
    from django.db.models import F, OuterRef, Subquery

    from inference.models import InferenceJob
    from reviews.models import Review

    summary = ReviewSummary(analysed=InferenceJob.objects.filter(
        model_sha256=sha256, status=InferenceJob.Status.SUCCEEDED).count() if sha256 else 0)
    if not summary.analysed:
        return summary
    newest = Review.objects.filter(job=OuterRef("job")).order_by("-created_at", "-id").values("id")[:1]
    rows = (Review.objects.filter(job__model_sha256=sha256).annotate(newest=Subquery(newest))
            .filter(id=F("newest")).values_list("detector_verdict", "verdict"))
    for detector, radiologist in rows:
        summary.add(detector, radiologist)
    return summary


@dataclass
class Dashboard:
    window: Window
    periods: list[str]
    verdicts_over_time: dict[str, list[int]]
    verdict_totals: dict[str, int]
    scans_total: int
    reviews: ReviewSummary = field(default_factory=ReviewSummary)
    header_warnings: int = 0  # scans whose DICOM header checks found signs of editing
    altered_copies: int = 0  # scans of which another stored copy has other pixels (scans.selectors.scan_copies)
    pacs_copies_differ: int = 0  # scans whose latest comparison with the PACS's copy found images altered or missing
    # Admins only
    jobs_over_time: dict[str, list[int]] = field(default_factory=dict)
    latency_over_time: dict[str, list[float | None]] = field(default_factory=dict)
    latency_overall: dict[str, float | None] = field(default_factory=dict)
    failure_rate: float | None = None
    jobs_total: int = 0
    dicom: "DicomTraffic | None" = None
    alerts: AlertSummary | None = None

    @property
    def period_rows(self):
        """One row per period (the charts' numbers as a table)."""
        rows = []
        for i, period in enumerate(self.periods):
            rows.append({
                "period": period,
                "verdicts": [values[i] for values in self.verdicts_over_time.values()],
                "jobs": [values[i] for values in self.jobs_over_time.values()],
                "latency": [values[i] for values in self.latency_over_time.values()],
            })
        return rows


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def dashboard_for(*, user, range_name: str | None = None, today=None) -> Dashboard:
    """A doctor's own scans by verdict over time and the radiologists' reviews of them (`ReviewSummary`); for an
    admin, every scan, plus job volumes, failures and latency (queued to finished, p50 and p95) per period."""
    from inference.ml.labels import VERDICTS
    from inference.models import InferenceJob

    window = dashboard_window(range_name, today=today)
    periods = [window.label(b) for b in window.buckets()]
    scans = _scan_verdicts(user=user, window=window)
    verdicts = _ordered(_counts_by_bucket(window, scans, key=str), (*VERDICTS, PENDING))
    totals = {name: sum(values) for name, values in verdicts.items()}
    board = Dashboard(window, periods, verdicts, totals, scans_total=len(scans),
                      reviews=_review_summary(user=user, window=window),
                      header_warnings=_header_warnings(user=user, window=window),
                      altered_copies=_altered_copies(user=user, window=window),
                      pacs_copies_differ=_pacs_copies_differ(user=user, window=window))
    if not user.is_portal_admin:
        return board

    finished = list(
        InferenceJob.objects.filter(finished_at__gte=window.start_datetime,
                                    status__in=[InferenceJob.Status.SUCCEEDED, InferenceJob.Status.FAILED])
        .values_list("created_at", "finished_at", "status"))
    board.jobs_over_time = _ordered(
        _counts_by_bucket(window, [(f, s) for _, f, s in finished], key=str),
        (InferenceJob.Status.SUCCEEDED, InferenceJob.Status.FAILED))
    board.jobs_total = len(finished)
    failed = sum(1 for *_, s in finished if s == InferenceJob.Status.FAILED)
    board.failure_rate = failed / len(finished) if finished else None
    board.dicom = _dicom_traffic(window)
    board.alerts = _alert_summary(window)

    buckets = window.buckets()
    position = {b: i for i, b in enumerate(buckets)}
    per_bucket: list[list[float]] = [[] for _ in buckets]
    all_latencies = []
    for created, done, status in finished:
        if status != InferenceJob.Status.SUCCEEDED:
            continue
        seconds = (done - created).total_seconds()
        all_latencies.append(seconds)
        i = position.get(window.bucket(_local_day(done)))
        if i is not None:
            per_bucket[i].append(seconds)
    board.latency_over_time = {
        "p50": [_percentile(v, 50) for v in per_bucket],
        "p95": [_percentile(v, 95) for v in per_bucket],
    }
    board.latency_overall = {"p50": _percentile(all_latencies, 50), "p95": _percentile(all_latencies, 95),
                             "n": len(all_latencies)}
    return board


# --- Per-scan reports ------------------------------------------------------------------------------------


FINDINGS_FIRST = ("fake_added", "fake_removed", "real_tumor", "no_tumor")  # the order a reader should look in


def slice_runs(indices) -> list[tuple[int, int]]:
    """Slice indices -> runs of consecutive ones, sorted: [5, 0, 1, 2, 7, 8] -> [(0, 2), (5, 5), (7, 8)]."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return [(a, b) for a, b in runs]


def slices_by_verdict(results) -> list[tuple[str, int, list[tuple[int, int]]]]:
    """(verdict, number of slices, runs of their 0-based indices) for each verdict present, findings first: the
    summary the scan page draws in the browser (viewer.js) and the PDF prints."""
    indices: dict[str, list[int]] = {}
    for r in results:
        indices.setdefault(r.verdict, []).append(r.index)
    return [(v, len(indices[v]), slice_runs(indices[v])) for v in FINDINGS_FIRST if v in indices]


def slices_by_verdict_text(results) -> str:
    """'Fake added 1 slice (21); Real tumor 10 slices (10-19); No tumor 11 slices' (slices numbered from 1;
    tumour-free slices only counted; verdicts in the words the pages use)."""
    from inference.models import verdict_label

    parts = []
    for verdict, n, runs in slices_by_verdict(results):
        text = f"{verdict_label(verdict)} {n} slice{'s' if n != 1 else ''}"
        if verdict != "no_tumor":
            text += " (" + ", ".join(str(a + 1) if a == b else f"{a + 1}-{b + 1}" for a, b in runs) + ")"
        parts.append(text)
    return "; ".join(parts)


class NoFinishedAnalysis(Exception):
    """The scan has no succeeded detector job yet, so there is nothing to report."""


@dataclass
class ScanReport:
    scan: object  # scans.Scan
    job: object  # inference.InferenceJob (the newest succeeded one)
    results: list  # inference.SliceResult, by index, with .instances prefetched
    files: list  # scans.ScanFile
    slices: dict  # index -> scans.ScanSlice
    review: object = None  # reviews.Review: the newest radiologist's review of `job`, or None
    earlier: object = None  # inference.InferenceJob: an earlier analysis that gave another verdict, or None

    @property
    def flagged_results(self) -> list:
        """Slices worth a picture: those with regions, then the most suspicious, best first."""
        return sorted(self.results, key=lambda r: (not bool(r.mask), -r.tamper_score, r.index))


def scan_report_for(*, user, scan_pk: int) -> ScanReport:
    """Everything a report of one scan shows. Another doctor's scan is a 404 (scans.selectors.scan_get_for);
    NoFinishedAnalysis when no job of the scan has succeeded."""
    from inference.models import InferenceJob
    from inference.selectors import earlier_differing_job, jobs_visible_to, slice_results_for_job
    from reviews.selectors import review_current_for_job
    from scans.selectors import scan_files, scan_get_for, scan_slices

    scan = scan_get_for(user=user, pk=scan_pk)
    job = (jobs_visible_to(user=user).filter(scan=scan, status=InferenceJob.Status.SUCCEEDED)
           .order_by("-finished_at", "-id").first())
    if job is None:
        raise NoFinishedAnalysis(f"{scan} has no finished analysis yet; a report is available once its job succeeds.")
    return ScanReport(
        scan=scan,
        job=job,
        results=list(slice_results_for_job(job=job)),
        files=list(scan_files(scan=scan)),
        slices={s.index: s for s in scan_slices(scan=scan)},
        review=review_current_for_job(job=job),
        earlier=earlier_differing_job(job=job),
    )


def pacs_transfers_for(*, scan, limit: int = 20):
    """The scan's transfers to the PACS, newest first (reports.models.PacsTransfer)."""
    from reports.models import PacsTransfer

    return list(PacsTransfer.objects.filter(scan=scan).select_related("requested_by")[:limit])
