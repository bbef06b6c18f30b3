"""python manage.py train_refiner DATASET_DIR --out RUN_DIR [--weights models/detector.pt] [--minutes 40] ...

Trains the mask refiner (inference.ml.refiner) on the detector's own masks on the training split, chooses its
cut on the validation split and writes RUN_DIR/detector.pt: the detector bundle with the refiner attached.
Thin: the work is in inference.ml.refiner.refine_bundle. Rerunning it resumes the training and reuses the
cached coarse masks in RUN_DIR.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Train the mask refiner on a detector's outputs and attach it to the detector bundle."

    def add_arguments(self, parser):
        parser.add_argument("dataset_dir", help="dataset directory (annotations.json + images/)")
        parser.add_argument("--out", required=True, help="run directory: coarse-*.pkl, refiner-checkpoint.pt, "
                                                          "refine.json, detector.pt")
        parser.add_argument("--weights", default=None, help="the detector bundle (default: the shipped one)")
        parser.add_argument("--minutes", type=float, default=40.0, help="training time (default 40)")
        parser.add_argument("--batch-size", type=int, default=16, help="region crops per step (default: 16)")
        parser.add_argument("--crop", type=int, default=96, help="training crop side in pixels (default 96)")
        parser.add_argument("--lr", type=float, default=2e-3, help="learning rate (default: 0.002)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the training draws (default: 0)")
        parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
        parser.add_argument("--widths", default="16,32,64,96", help="U-Net widths, one per scale")
        parser.add_argument("--margin", type=int, default=16, help="pixels around a shown region it may redraw")
        parser.add_argument("--bundle-version", default=None,
                            help="version of the written bundle (default: the detector's)")
        parser.add_argument("--train-split", default="train", help="split the refiner learns from (default train)")
        parser.add_argument("--val-split", default="val", help="split its cut is chosen on (default val; never test)")
        parser.add_argument("--limit", type=int, default=None, help="only the first N images of each split")
        parser.add_argument("--device", default="cpu", help="where the detector runs to collect its masks")

    def handle(self, *args, **opts):
        from inference.ml.coco import DatasetError
        from inference.ml.predictor import DEFAULT_WEIGHTS, ModelNotInstalled
        from inference.ml.refiner import RefinerConfig, RefinerTrainConfig, refine_bundle

        weights = Path(opts["weights"] or DEFAULT_WEIGHTS)
        if not weights.is_file():
            raise CommandError(f"No detector weights at {weights}.")
        try:
            widths = tuple(int(w) for w in opts["widths"].split(","))
        except ValueError as exc:
            raise CommandError(f"--widths takes comma-separated integers; got {opts['widths']!r}.") from exc
        for name in ("minutes", "batch_size", "crop", "lr"):
            if opts[name] <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be positive; got {opts[name]}.")
        if opts["crop"] % 8:
            raise CommandError(f"--crop must be a multiple of 8; got {opts['crop']}.")
        log = logging.getLogger("inference.ml.refiner")
        if not log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
        try:
            cfg = RefinerTrainConfig(minutes=opts["minutes"], batch_size=opts["batch_size"], crop=opts["crop"],
                                     lr=opts["lr"], seed=opts["seed"], threads=opts["threads"],
                                     config=RefinerConfig(widths=widths, margin=opts["margin"]))
            report = refine_bundle(weights, opts["dataset_dir"], opts["out"], train_cfg=cfg,
                                   version=opts["bundle_version"], device=opts["device"], limit=opts["limit"],
                                   train_split=opts["train_split"], val_split=opts["val_split"],
                                   progress=lambda split, i, n: log.info("%s: %d / %d slices", split, i, n)
                                   if i % 200 < 8 or i == n else None)
        except (DatasetError, ModelNotInstalled, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps({"val": report["val"], "chosen": report["chosen"]}, indent=2))
        self.stdout.write(self.style.SUCCESS(f"Wrote {Path(opts['out']) / 'detector.pt'}"))
