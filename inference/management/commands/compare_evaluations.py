"""python manage.py compare_evaluations RUN_A RUN_B [--dataset DIR] [--out DIR] [--bootstrap N] [--seed N]

Two evaluate_detector output folders of the same images, compared image by image (B - A); the work is in
inference.ml.compare.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Compare two evaluate_detector runs of the same images: each figure's difference B - A with a paired "
            "patient-bootstrap interval, the images fixed and broken (exact McNemar), by corpus and method.")

    def add_arguments(self, parser):
        parser.add_argument("run_a", help="evaluate_detector --out folder of model A (the reference)")
        parser.add_argument("run_b", help="evaluate_detector --out folder of model B (the candidate)")
        parser.add_argument("--dataset", default=None,
                            help="the dataset both runs read (default: the folder run.json names), for patients, "
                                 "corpora and methods")
        parser.add_argument("--out", default=None, help="also write comparison.json and comparison.md here")
        parser.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="resamples of patients")
        parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default: 0)")

    def handle(self, *args, **opts):
        from inference.ml.compare import ComparisonError, compare_runs, comparison_markdown, load_run, write_comparison

        if opts["bootstrap"] < 1:
            raise CommandError(f"--bootstrap must be a number of resamples (1 or more), got {opts['bootstrap']}.")
        try:
            a, b = load_run(opts["run_a"]), load_run(opts["run_b"])
            result = compare_runs(a, b, dataset_dir=opts["dataset"], resamples=opts["bootstrap"], seed=opts["seed"])
        except (ComparisonError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(comparison_markdown(result))
        if opts["out"]:
            try:
                paths = write_comparison(result, opts["out"])
            except OSError as exc:
                raise CommandError(f"{opts['out']}: cannot write the comparison ({exc}).") from exc
            self.stdout.write(self.style.SUCCESS(f"Wrote {', '.join(str(p) for p in paths)}"))
