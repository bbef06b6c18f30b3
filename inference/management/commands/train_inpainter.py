"""python manage.py train_inpainter --dataset DIR [--source PATH ...] [--minutes N] [--out FILE]: train the
CT-GAN-style inpainter behind the ``gan`` tampering methods (inference.ml.tamper.gan) on the patients of DIR's
train split only, so that val and test patients never shape it."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Train the learned inpainter for the gan injection and removal methods."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="a built dataset: its train-split patients are used")
        parser.add_argument("--source", action="append", default=None, metavar="[KIND:]PATH",
                            help="corpus folders (default: the two corpora in ../shared/datasets)")
        parser.add_argument("--minutes", type=float, default=60.0, help="wall-time budget for training")
        parser.add_argument("--out", default=None, help="weights file (default: the shipped location)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the training draws (default: 0)")
        parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default: 2)")

    def handle(self, *args, **opts):
        from inference.ml.coco import DatasetError, load_dataset
        from inference.ml.dataset.builder import default_sources
        from inference.ml.dataset.readers import SourceError, read_sources
        from inference.ml.tamper import gan

        try:
            ds = load_dataset(opts["dataset"])
            train_patients = {(r.source, r.patient_id) for r in ds if r.split == "train"}
            if not train_patients:
                raise CommandError(f"{opts['dataset']} has no train split.")
            slices = read_sources(opts["source"] or default_sources())
        except (DatasetError, SourceError) as exc:
            raise CommandError(str(exc)) from exc
        slices = [s for s in slices if (s.source, s.patient_id) in train_patients]
        if not slices:
            raise CommandError("No slice of the sources belongs to a train-split patient of that dataset.")
        out = Path(opts["out"]) if opts["out"] else gan.WEIGHTS
        self.stdout.write(f"training on {len(slices)} slices of {len(train_patients)} patients for "
                          f"{opts['minutes']:.0f} min -> {out}")
        meta = gan.train(slices, out, seconds=opts["minutes"] * 60.0, seed=opts["seed"], threads=opts["threads"],
                         log=lambda msg: self.stdout.write(msg))
        self.stdout.write(f"{meta['steps']} steps in {meta['seconds']} s; weights: {out}")
