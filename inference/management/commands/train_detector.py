"""python manage.py train_detector DATASET_DIR --out RUN_DIR [options] | --resume RUN_DIR/checkpoint.pt

Thin: options become an inference.ml.train.TrainConfig (a JSON --config gives defaults, flags override them);
the work is in inference.ml.train.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

# flag -> (TrainConfig field, type); None defaults so that only what is given overrides a config or a checkpoint
TOP_LEVEL = {
    "epochs": int, "max_steps": int, "max_minutes": float, "schedule_minutes": float, "batch_size": int, "lr": float,
    "weight_decay": float, "warmup_steps": int, "image_loss_weight": float, "seed": int, "device": str,
    "threads": int, "workers": int, "checkpoint_minutes": float, "val_every_minutes": float, "val_limit": int, "patience": int,
    "train_limit": int, "train_split": str, "val_split": str, "log_every": int, "init_weights": str,
    "source_balance": float, "small_region_repeat": int, "small_region_area": int, "paste_injections": float,
}
MODEL = {"backbone": str, "min_size": int, "max_size": int, "constrained": int}
AUGMENT_SWITCHES = ("flip", "rotate", "contrast", "noise", "jpeg", "launder")


class Command(BaseCommand):
    help = "Train the tamper detector (Mask R-CNN) on a contract dataset; resumable from its checkpoint."

    def add_arguments(self, parser):
        parser.add_argument("dataset_dir", nargs="?", help="dataset directory (annotations.json + images/)")
        parser.add_argument("--out", help="run directory: checkpoint.pt, detector.pt (best), train.log, ...")
        parser.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
        parser.add_argument("--resume", help="a checkpoint.pt to continue from (its args, overridden by flags)")
        for name, typ in {**TOP_LEVEL, **MODEL}.items():
            parser.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None)
        parser.add_argument("--no-srm", dest="srm", action="store_false", default=None,
                            help="ablation: no SRM residual channels")
        parser.add_argument("--no-image-head", dest="image_head", action="store_false", default=None,
                            help="ablation: no image-level verdict head")
        parser.add_argument("--exclude-methods", default=None,
                            help="comma-separated tampering methods held out of training and validation "
                                 "(leave-one-method-out; evaluate on them afterwards)")
        parser.add_argument("--exclude-sites", default=None,
                            help="comma-separated sites held out (leave-one-site-out), e.g. TCGA-HT")
        parser.add_argument("--model-name", dest="name", default=None, help="name stored in the bundle")
        parser.add_argument("--model-version", dest="model_version", default=None, help="version stored in the bundle")
        parser.add_argument("--crop", type=int, default=None, help="train on crops of this size around the regions")
        for switch in AUGMENT_SWITCHES:
            group = parser.add_mutually_exclusive_group()
            group.add_argument(f"--{switch}", dest=switch, action="store_true", default=None)
            group.add_argument(f"--no-{switch}", dest=switch, action="store_false")

    def handle(self, *args, **opts):
        from inference.ml.coco import DatasetError
        from inference.ml.train import TrainConfig, train

        base: dict = {}
        if opts["resume"]:
            import torch

            ckpt_path = Path(opts["resume"])
            if not ckpt_path.is_file():
                raise CommandError(f"No checkpoint at {ckpt_path}.")
            base = torch.load(ckpt_path, map_location="cpu", weights_only=False)["args"]
        elif opts["config"]:
            base = json.loads(Path(opts["config"]).read_text())
        base.setdefault("model", {})
        base.setdefault("augment", {})
        if opts["dataset_dir"]:
            base["dataset_dir"] = opts["dataset_dir"]
        if opts["out"]:
            base["out_dir"] = opts["out"]
        if "dataset_dir" not in base or "out_dir" not in base:
            raise CommandError("Give DATASET_DIR and --out (or --resume a checkpoint, or a --config naming them).")
        for name in TOP_LEVEL:
            if opts[name] is not None:
                base[name] = opts[name]
        for name in ("exclude_methods", "exclude_sites"):
            if opts[name] is not None:
                base[name] = [v.strip() for v in opts[name].split(",") if v.strip()]
        if opts["init_weights"] is not None and not Path(opts["init_weights"]).is_file():
            raise CommandError(f"--init-weights: no detector bundle at {opts['init_weights']}.")
        if opts["name"] is not None:
            base["name"] = opts["name"]
        if opts["model_version"] is not None:
            base["version"] = opts["model_version"]
        for name in (*MODEL, "srm", "image_head"):
            if opts[name] is not None:
                base["model"][name] = opts[name]
        for name in (*AUGMENT_SWITCHES, "crop"):
            if opts[name] is not None:
                base["augment"][name] = opts[name]
        try:
            config = TrainConfig.from_dict(base)
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.out_dir) / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        try:
            summary = train(config, resume=opts["resume"])
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(summary, indent=2))
