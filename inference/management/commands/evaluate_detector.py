"""python manage.py evaluate_detector DATASET_DIR --out OUT_DIR [--weights FILE] [--split NAME]

The evaluation contract of ../shared/docs/dataset-and-evaluation.md; the work is in inference.ml.evaluate.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from reports.services import evaluation_records_unavailable, evaluation_run_record


class Command(BaseCommand):
    help = "Evaluate the detector on a contract dataset: writes metrics.json, predictions.jsonl, tables and charts."

    def add_arguments(self, parser):
        parser.add_argument("dataset_dir", help="dataset directory (annotations.json + images/)")
        parser.add_argument("--out", required=True, help="output directory")
        parser.add_argument("--weights", default=None, help="weights bundle (default: settings.DETECTOR_WEIGHTS)")
        parser.add_argument("--split", default=None, help="only images of this split (train, val, test)")
        parser.add_argument("--device", default=None, help="cpu, cuda, auto (default: settings.DETECTOR_DEVICE)")
        parser.add_argument("--robustness", action="store_true",
                            help="also evaluate under contrast, noise, JPEG and resampling perturbations")
        parser.add_argument("--robustness-limit", type=int, default=None,
                            help="perturbed passes use only the first N images")
        parser.add_argument("--limit", type=int, default=None, help="only the first N images (quick checks)")
        parser.add_argument("--no-coco-ap", action="store_true", help="skip the pycocotools AP")
        parser.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                            help="resamples of patients for the 95%% confidence intervals (intervals.json; 0: none)")
        parser.add_argument("--no-record", action="store_true",
                            help="do not store the run in the database (the files are written either way)")

    def handle(self, *args, **opts):
        from inference.ml.coco import DatasetError
        from inference.ml.evaluate import evaluate_dataset
        from inference.ml.predictor import ModelNotInstalled, Predictor

        if opts["bootstrap"] < 0:
            raise CommandError(f"--bootstrap must be 0 (no intervals) or a number of resamples, got {opts['bootstrap']}.")

        try:
            predictor = Predictor.load(opts["weights"] or settings.DETECTOR_WEIGHTS,
                                       device=opts["device"] or settings.DETECTOR_DEVICE)
        except ModelNotInstalled as exc:
            raise CommandError(str(exc)) from exc
        # Recording is the portal's extra: where it cannot be done, say so now, and still write the contract's files
        not_recorded = "--no-record" if opts["no_record"] else (
            # part of a split: its figures must not stand for the model's on the model page and the scan pages
            f"--limit {opts['limit']} evaluates part of the images, a quick check"
            if opts["limit"] is not None else evaluation_records_unavailable())
        if not_recorded and not opts["no_record"]:
            self.stderr.write(f"This run will not be recorded in the database: {not_recorded}.")
        self.stdout.write(f"Model {predictor.name} {predictor.version} (sha256 {predictor.sha256[:12]}...) "
                          f"on {predictor.device}")
        try:
            metrics = evaluate_dataset(
                opts["dataset_dir"], opts["out"], predictor=predictor, split=opts["split"],
                robustness=opts["robustness"], robustness_limit=opts["robustness_limit"],
                coco_ap=not opts["no_coco_ap"], limit=opts["limit"], progress=opts["verbosity"] > 0,
                bootstrap=opts["bootstrap"],
            )
        except (DatasetError, ValueError, OSError) as exc:  # OSError: OUT_DIR or its folder cannot be written
            raise CommandError(str(exc)) from exc
        summary = {k: metrics[k] for k in ("n_images", "accuracy", "macro_f1", "mean_iou", "tamper_auc", "latency_s")}
        self.stdout.write(json.dumps(summary, indent=2))
        if not not_recorded:
            try:
                breakdown = json.loads((Path(opts["out"]) / "breakdown.json").read_text(encoding="utf-8"))
                intervals_file = Path(opts["out"]) / "intervals.json"
                intervals = (json.loads(intervals_file.read_text(encoding="utf-8"))
                             if opts["bootstrap"] and intervals_file.is_file() else None)
                confidence = json.loads((Path(opts["out"]) / "confidence.json").read_text(encoding="utf-8"))
                run = evaluation_run_record(metrics=metrics, dataset_dir=str(opts["dataset_dir"]),
                                            out_dir=str(opts["out"]), split=opts["split"], breakdown=breakdown,
                                            intervals=intervals, confidence=confidence)
                self.stdout.write(f"Recorded as evaluation run {run.pk}.")
            # the files are written: the evaluation is done whatever happens here (InvalidMetrics is a ValueError)
            except (DatabaseError, OSError, ValueError) as exc:
                self.stderr.write(f"The run was not recorded in the database ({exc.__class__.__name__}: {exc}).")
        self.stdout.write(self.style.SUCCESS(f"Wrote {opts['out']}/metrics.json and predictions.jsonl"))
