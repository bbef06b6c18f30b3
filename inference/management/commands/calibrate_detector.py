"""python manage.py calibrate_detector DATASET_DIR --weights FILE --out FILE [--split val]

Refits a trained bundle's calibration (verdict thresholds, then mask and show thresholds) on a whole split;
thin: the work is in inference.ml.train.calibrate_bundle.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Refit a detector bundle's calibration on a dataset split (the validation split; never test)."

    def add_arguments(self, parser):
        parser.add_argument("dataset_dir", help="dataset directory (annotations.json + images/)")
        parser.add_argument("--weights", required=True, help="the bundle to calibrate")
        parser.add_argument("--out", required=True, help="where the calibrated bundle goes (may be --weights)")
        parser.add_argument("--split", default="val", help="split to fit on (default val)")
        parser.add_argument("--device", default="auto", help="cpu, cuda, auto")
        parser.add_argument("--limit", type=int, default=None, help="only the first N images (quick checks)")

    def handle(self, *args, **opts):
        from inference.ml.coco import DatasetError
        from inference.ml.predictor import ModelNotInstalled
        from inference.ml.train import calibrate_bundle

        if opts["split"] == "test":
            raise CommandError("Calibrating on the test split would make its figures optimistic; use val.")
        if not Path(opts["weights"]).is_file():
            raise CommandError(f"No weights file at {opts['weights']}.")
        try:
            calibration, metrics = calibrate_bundle(opts["weights"], opts["dataset_dir"], opts["out"],
                                                    split=opts["split"], device=opts["device"], limit=opts["limit"])
        except (DatasetError, ModelNotInstalled, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        summary = {k: metrics[k] for k in ("accuracy", "macro_f1", "mean_iou", "tamper_auc")}
        self.stdout.write(json.dumps({"calibration": calibration, opts["split"]: summary}, indent=2))
        self.stdout.write(self.style.SUCCESS(f"Wrote {opts['out']}"))
