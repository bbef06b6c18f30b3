"""python manage.py evaluate_series --out OUT_DIR [--source PATH ...] [--seed N] [--split val --split test]
    [--volume-injections] [--processed] [--save-rule] [--from-slices slices.json]

The scan verdict on whole real series, authentic and tampered; the work is in inference.ml.series_eval.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Evaluate the scan-level verdict on whole series of the held-out patients (authentic, one or three "
            "slices injected, the tumour erased from every slice): writes series_metrics.json, series_report.md "
            "and slices.json.")

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="output directory")
        parser.add_argument("--source", action="append", default=None,
                            help="a corpus as build_dataset reads it (repeatable; default: the build's default "
                                 "sources in ../shared/datasets)")
        parser.add_argument("--seed", type=int, default=0, help="the build seed whose patient split is used (0)")
        parser.add_argument("--split", action="append", default=None, choices=["train", "val", "test"],
                            help="splits to evaluate (repeatable; default val and test: the rule is chosen on val)")
        parser.add_argument("--weights", default=None, help="weights bundle (default: settings.DETECTOR_WEIGHTS)")
        parser.add_argument("--device", default=None, help="cpu, cuda, auto (default: settings.DETECTOR_DEVICE)")
        parser.add_argument("--max-series", type=int, default=None, help="only N series (quick checks)")
        parser.add_argument("--max-false-alarm", type=float, default=0.1,
                            help="the highest share of authentic validation series the chosen rule may call "
                                 "tampered (0.1)")
        parser.add_argument("--save-rule", action="store_true",
                            help="write the rule chosen on val beside the weights (detector.scan_rule.json), where "
                                 "the worker, detect and the portal read it")
        parser.add_argument("--volume-injections", action="store_true",
                            help="also inject a real tumour volume (5 neighbouring slices of another patient's "
                                 "tumour) into 5 neighbouring slices with one geometry, as a 3-D attacker would; "
                                 "held out: reported apart, never used to choose the rule")
        parser.add_argument("--processed", action="store_true",
                            help="also pass every authentic series whole through each of evaluate_detector's seven "
                                 "perturbations (JPEG, noise, resampling, contrast): false alarms and input-check "
                                 "warnings; held out like --volume-injections")
        parser.add_argument("--from-slices", default=None, metavar="FILE",
                            help="re-analyse an earlier run's slices.json instead of predicting again")

    def handle(self, *args, **opts):
        from inference.ml import series_eval
        from inference.ml.dataset.builder import default_sources
        from inference.ml.dataset.readers import SourceError
        from inference.ml.predictor import ModelNotInstalled, Predictor

        if not 0.0 <= opts["max_false_alarm"] <= 1.0:
            raise CommandError(f"--max-false-alarm is a share between 0 and 1, got {opts['max_false_alarm']}.")
        if opts["max_series"] is not None and opts["max_series"] < 1:
            raise CommandError(f"--max-series must be at least 1, got {opts['max_series']}.")
        if opts["from_slices"]:
            try:
                doc = json.loads(Path(opts["from_slices"]).read_text(encoding="utf-8"))
                doc["cases"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CommandError(f"{opts['from_slices']} is not a slices.json written by evaluate_series "
                                   f"({exc.__class__.__name__}: {exc}).") from exc
        else:
            try:
                predictor = Predictor.load(opts["weights"] or settings.DETECTOR_WEIGHTS,
                                           device=opts["device"] or settings.DETECTOR_DEVICE)
            except ModelNotInstalled as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Model {predictor.name} {predictor.version} (sha256 {predictor.sha256[:12]}...) "
                              f"on {predictor.device}")
            try:
                doc = series_eval.collect(
                    predictor, opts["source"] or default_sources(), splits=opts["split"] or ("val", "test"),
                    seed=opts["seed"], max_series=opts["max_series"], progress=opts["verbosity"] > 0,
                    variants=series_eval.VARIANTS + (("added_volume",) if opts["volume_injections"] else ())
                    + (series_eval.PROCESSED_VARIANTS if opts["processed"] else ()),
                )
            except (SourceError, ValueError) as exc:
                raise CommandError(str(exc)) from exc
        result = series_eval.analyse(doc, max_false_alarm=opts["max_false_alarm"])
        series_eval.write_report(doc, result, Path(opts["out"]))
        self.stdout.write(series_eval.report_markdown(result))
        if opts["save_rule"]:
            self._save_rule(result, opts["weights"] or settings.DETECTOR_WEIGHTS)

    def _save_rule(self, result: dict, weights) -> None:
        from django.utils import timezone

        from inference.ml import series_eval
        from inference.ml.bundle_file import file_sha256
        from inference.ml.scan_rule import scan_rule_path

        weights = Path(weights)
        if not weights.is_file():
            raise CommandError(f"--save-rule writes beside the weights, and {weights} does not exist.")
        if file_sha256(weights) != result["model"].get("sha256"):
            raise CommandError(f"These results are of the model with sha256 {str(result['model'].get('sha256'))[:12]}, "
                               f"not {weights} ({file_sha256(weights)[:12]}); the rule was not saved.")
        try:
            doc = series_eval.rule_document(result, written=timezone.now().date().isoformat())
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        target = scan_rule_path(weights)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        tmp.replace(target)  # never a half-written rule beside the weights
        rule = doc["rule"]
        self.stdout.write(f"Saved the scan rule to {target}: a scan's probability of being tampered passes 50 % where "
                          f"its slice tamper score number {rule['min_slices']} (highest first) is {rule['threshold']} "
                          f"(slope {rule['slope']:.2f}).")
