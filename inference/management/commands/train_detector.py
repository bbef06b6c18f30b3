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
# what each flag does (the default is added from TrainConfig / ModelConfig / AugmentConfig in --help)
HELP = {
    "epochs": "passes over the training split (sets the schedule's length unless --max-steps is given)",
    "max_steps": "optimisation steps in the schedule (default: epochs x steps per epoch)",
    "max_minutes": "stop cleanly after this much training time in this invocation (resume to go on)",
    "schedule_minutes": "a cosine schedule over this much total training time instead of --max-steps",
    "batch_size": "slices per step",
    "lr": "peak learning rate (AdamW)",
    "weight_decay": "AdamW weight decay",
    "warmup_steps": "linear warm-up steps before the cosine decay",
    "image_loss_weight": "weight of the image-level verdict head's loss beside Mask R-CNN's",
    "seed": "seed of the initialisation, the order and the augmentation draws",
    "device": "auto (a GPU when there is one), cpu or cuda",
    "threads": "CPU threads for torch (default: torch's choice)",
    "workers": "augment in this many processes (for a GPU one process cannot keep busy)",
    "checkpoint_minutes": "write checkpoint.pt every this many minutes",
    "val_every_minutes": "validate (and keep detector.pt when better) every this many minutes",
    "val_limit": "validate on N validation slices spread evenly over the split",
    "patience": "stop after this many validations without improvement",
    "train_limit": "train on the first N training slices only (quick checks)",
    "train_split": "the split trained on",
    "val_split": "the split the best weights are chosen and calibrated on (keep the test split out of it)",
    "log_every": "write the losses to train.log every N steps",
    "init_weights": "a detector bundle to start from (fine-tuning; its model configuration is kept)",
    "source_balance": "> 0: each slice of a smaller corpus appears (largest corpus / its corpus) ** this times an epoch, "
                      "rounded (0.5: a corpus 9 times smaller, 3 times)",
    "small_region_repeat": "> 1: slices whose regions total under --small-region-area appear this many times per epoch",
    "small_region_area": "pixels under which regions count as small for --small-region-repeat",
    "paste_injections": "probability that a drawn tumour-free slice becomes a crude pasted injection",
    "backbone": "resnet50 (the paper's), resnet34, resnet18, mobilenet_v3 or tiny (tests)",
    "min_size": "the shorter side torchvision resizes to",
    "max_size": "the longest side torchvision allows",
    "constrained": "constrained-convolution noise filters in the input (0: none)",
    "flip": "horizontal flip, p = 0.5",
    "rotate": "rotation by up to 10 degrees, p = 0.3",
    "contrast": "random gamma and gain, p = 0.5",
    "noise": "Gaussian noise up to 3 grey levels, p = 0.3",
    "jpeg": "JPEG re-compression at quality 70-95, p = 0.2",
    "launder": "mild whole-slice processing (noise, JPEG, resize, blur), p = 0.35",
}


def _defaults() -> dict:
    """Each flag's default, from the configuration classes (so --help cannot drift from the code)."""
    import dataclasses

    from inference.ml.model import ModelConfig
    from inference.ml.train import TrainConfig
    from inference.ml.transforms import AugmentConfig

    out = {}
    for cls in (TrainConfig, ModelConfig, AugmentConfig):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out.setdefault(f.name, f.default)
    return out


def _help(name: str, defaults: dict) -> str:
    text = HELP.get(name, "")
    if name in defaults and defaults[name] is not None:
        value = defaults[name]
        text += f" (default: {'on' if value is True else 'off' if value is False else value})"
    return text.replace("%", "%%")


class Command(BaseCommand):
    help = "Train the tamper detector (Mask R-CNN) on a contract dataset; resumable from its checkpoint."

    def add_arguments(self, parser):
        parser.add_argument("dataset_dir", nargs="?", help="dataset directory (annotations.json + images/)")
        parser.add_argument("--out", help="run directory: checkpoint.pt, detector.pt (best), train.log, ...")
        parser.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
        parser.add_argument("--resume", help="a checkpoint.pt to continue from (its args, overridden by flags)")
        defaults = _defaults()
        for name, typ in {**TOP_LEVEL, **MODEL}.items():
            parser.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None,
                                help=_help(name, defaults))
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
            group.add_argument(f"--{switch}", dest=switch, action="store_true", default=None,
                               help="augmentation: " + _help(switch, defaults))
            group.add_argument(f"--no-{switch}", dest=switch, action="store_false", help=f"without --{switch}")

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
