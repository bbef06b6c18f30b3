"""python manage.py build_dataset --source PATH [--source PATH ...] --out DIR [--seed N] [--max-images N]
[--methods NAME,...]: real slices with tumour masks in, the four-class COCO dataset out (inference.ml.dataset)."""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Build the tampered-MRI dataset (COCO, four verdicts) from real slices with tumour masks."

    def add_arguments(self, parser):
        parser.add_argument("--source", action="append", default=None, metavar="[KIND:]PATH",
                            help="a corpus folder (layout detected, or KIND: kaggle3m, pairs, dicom, nifti); "
                                 "repeat for several. Default: the LGG FLAIR and TCIA T1c corpora in ../shared/datasets.")
        parser.add_argument("--out", required=True, help="output directory (new or empty)")
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of the split, the plan and every tampering draw: the same seed gives the same bytes (default: 0)")
        parser.add_argument("--max-images", type=int, default=None, help="about this many images in all")
        parser.add_argument("--methods", default=None, help="comma-separated tampering methods (default: all)")
        parser.add_argument("--mask-pattern", default="{stem}_mask", help="mask file stem for 'pairs' folders")
        parser.add_argument("--sequences", default=None, metavar="NAME,...",
                            help="only these sequences of NIfTI or DICOM corpora, e.g. flair or t1ce,flair (BraTS "
                                 "<patient>_flair; TCIA _Scan_T1; a DICOM series folder or Series Description), or "
                                 "these channels of the LGG TIFFs (pre-contrast, flair, post-contrast); default: "
                                 "every volume, FLAIR of the TIFFs")
        parser.add_argument("--min-area", type=int, default=None, help="minimum tumour area in pixels")
        parser.add_argument("--no-touch-ups", action="store_true", help="skip the attacker's touch-ups")
        parser.add_argument("--no-card", action="store_true", help="skip the dataset card and realism check")

    def handle(self, *args, **opts):
        from inference.ml.coco import DatasetError
        from inference.ml.dataset.builder import MIN_TUMOUR_AREA, BuildConfig, build_dataset, default_sources
        from inference.ml.dataset.readers import SourceError

        sources = opts["source"] or default_sources()
        config = BuildConfig(
            sources=sources,
            out=Path(opts["out"]),
            seed=opts["seed"],
            max_images=opts["max_images"],
            methods=[m.strip() for m in opts["methods"].split(",") if m.strip()] if opts["methods"] else None,
            min_area=opts["min_area"] or MIN_TUMOUR_AREA,
            touch_ups=not opts["no_touch_ups"],
            mask_pattern=opts["mask_pattern"],
            sequences=[q.strip() for q in opts["sequences"].split(",") if q.strip()] if opts["sequences"] else None,
            progress=opts["verbosity"] > 0,
        )
        try:
            report = build_dataset(config)
        except (SourceError, DatasetError, KeyError, ValueError) as exc:
            raise CommandError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from exc
        self.stdout.write(f"{report.n_images} images in {report.out} ({report.seconds:.0f} s)")
        if report.skipped:
            self.stdout.write(f"skipped (no method applied): {sum(report.skipped.values())}")
        if not opts["no_card"]:
            from inference.ml.dataset.card import write_card

            card = write_card(report.out, build_seconds=report.seconds, progress=config.progress)
            self.stdout.write(f"card: {card['paths']['markdown']}")
            self.stdout.write(json.dumps(card["counts"]["verdict"]))
