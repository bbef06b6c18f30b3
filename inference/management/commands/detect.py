"""python manage.py detect FILE... [--weights FILE] [--out FILE.json] [--masks DIR] [--prevalence P]

Runs the detector on scans from disk (DICOM file or series folder, NIfTI, PNG, JPEG, TIFF) through the same
Predictor as the portal, and prints one JSON document: per file, a verdict per slice and one per file, and the
MRI sequence it was recognised as (with a warning on standard error when the detector was not trained on it),
and for DICOM the header checks (``header_checks``, inference.ml.provenance; their warnings also on standard error).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Detect tampering in MRI files: a verdict per slice and per file, as JSON."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", help="DICOM (file or series folder), NIfTI, PNG, JPEG or TIFF")
        parser.add_argument("--weights", default=None, help="weights bundle (default: settings.DETECTOR_WEIGHTS)")
        parser.add_argument("--device", default=None, help="cpu, cuda, auto (default: settings.DETECTOR_DEVICE)")
        parser.add_argument("--out", default=None, help="write the JSON here instead of standard output")
        parser.add_argument("--masks", default=None, help="also write each shown region's mask as PNG into DIR")
        parser.add_argument("--prevalence", default=None,
                            help="the share of scans that are tampered where these come from (0.01: 1 in 100; "
                                 "default: settings.TAMPER_PREVALENCE): each file verdict also gives its tamper "
                                 "probability at that share (the scan rule's holds at even odds)")

    def handle(self, *args, **opts):
        from inference.ml.detect import detect_files
        from inference.ml.predictor import ModelNotInstalled, Predictor
        from inference.ml.scan_rule import check_prevalence

        prevalence = opts["prevalence"] if opts["prevalence"] is not None else settings.TAMPER_PREVALENCE
        if prevalence is not None:
            try:
                prevalence = check_prevalence(prevalence)
            except ValueError as exc:
                raise CommandError(f"--prevalence: {exc}") from None
        try:
            predictor = Predictor.load(opts["weights"] or settings.DETECTOR_WEIGHTS,
                                       device=opts["device"] or settings.DETECTOR_DEVICE,
                                       batch_size=settings.DETECTOR_BATCH_SIZE)
        except ModelNotInstalled as exc:
            raise CommandError(str(exc)) from exc
        report = detect_files(predictor, opts["files"], masks_dir=opts["masks"], prevalence=prevalence)
        if prevalence is not None and not predictor.scan_rule:
            self.stderr.write("--prevalence: these weights have no scan rule, so their file verdicts are not a "
                              "calibrated probability to restate; run `python manage.py evaluate_series --save-rule`.")
        for entry in report["files"]:  # a sequence the detector never saw: say so where a person will read it
            check = entry.get("sequence") or {}
            if check.get("message"):
                self.stderr.write(f"{entry['file']}: {check['message']}")
            noise = entry.get("input_check") or {}
            if noise.get("within") is False:
                self.stderr.write(f"{entry['file']}: {noise['message']}")
            headers = entry.get("header_checks") or {}
            if headers.get("status") == "warnings":
                self.stderr.write(f"{entry['file']}: {headers['message']}")
                for finding in headers["findings"]:
                    if finding["severity"] == "warning":
                        self.stderr.write(f"  {finding['message']}")
        text = json.dumps(report, indent=2)
        if opts["out"]:
            Path(opts["out"]).write_text(text + "\n", encoding="utf-8")
            self.stderr.write(f"Wrote {opts['out']}")
        else:
            self.stdout.write(text)
        if any(f.get("error") for f in report["files"]):
            sys.exit(1)
