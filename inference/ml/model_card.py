"""Shipping a trained bundle and writing its model card from the evaluation that measured it.

    python -m inference.ml.model_card ship RUN/detector.pt models/detector.pt --version 0.1.0
    python manage.py calibrate_detector DATASET --weights models/detector.pt --out models/detector.pt  # all of val
    python manage.py evaluate_detector DATASET --split test --weights models/detector.pt --out EVAL
    python -m inference.ml.model_card card models/detector.pt EVAL models/MODEL_CARD.md --reproduce "..."

Every figure in the card is read from the bundle's metadata or from EVAL/metrics.json: nothing typed in.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from pathlib import Path

from .labels import VERDICTS
from .model import compact_bundle, load_bundle, save_bundle
from .predictor import file_sha256

TARGETS = {"accuracy": 0.95, "class_f1": 0.92, "mean_iou": 0.85, "tamper_auc": 0.98, "latency_p50": 0.4}


def ship_bundle(src: str | Path, dst: str | Path, *, name: str | None = None, version: str | None = None) -> Path:
    bundle = load_bundle(src)
    meta = dict(bundle.get("meta", {}))
    if name:
        meta["name"] = name
    if version:
        meta["version"] = version
    meta["shipped"] = dt.datetime.now(dt.timezone.utc).isoformat()
    return save_bundle(compact_bundle({**bundle, "meta": meta}), dst)


def average_bundles(sources: list[str | Path], weights: list[float], dst: str | Path) -> Path:
    """A "model soup": the weighted average of bundles of one architecture fine-tuned from the same start (averaging
    unrelated models gives noise). Float tensors are averaged; integer buffers (BatchNorm's step counts) come from
    the first bundle, as do config, calibration and meta, with ``meta["averaged_from"]`` saying what went in.
    Calibrate the result (``calibrate_detector``) before use: the thresholds of the parts do not carry over."""
    import torch

    if len(sources) < 2 or len(sources) != len(weights):
        raise ValueError("Give at least two bundles and one weight for each.")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("Weights must be non-negative and not all zero.")
    total = float(sum(weights))
    bundles = [load_bundle(s) for s in sources]
    first = bundles[0]
    for path, b in zip(sources[1:], bundles[1:]):
        if b["config"] != first["config"] or b["state_dict"].keys() != first["state_dict"].keys():
            raise ValueError(f"{path} is another architecture than {sources[0]}: they cannot be averaged.")
    state = {}
    for key, value in first["state_dict"].items():
        if value.is_floating_point():
            state[key] = sum(b["state_dict"][key].float() * (w / total) for b, w in zip(bundles, weights))
        else:
            state[key] = value
    meta = {**first.get("meta", {}), "averaged_from": [
        {"file": str(s), "sha256": file_sha256(s), "weight": round(w / total, 4),
         "name": b.get("meta", {}).get("name"), "version": b.get("meta", {}).get("version")}
        for s, b, w in zip(sources, bundles, weights)]}
    return save_bundle({**first, "state_dict": state, "meta": meta}, dst)


def _f(v, digits=3):
    return "n/a" if v is None else f"{v:.{digits}f}"


def _averaged_lines(meta: dict) -> list[str]:
    """For an averaged bundle (``average_bundles``): what went in; the training lines that follow are its first part's."""
    parts = meta.get("averaged_from")
    if not parts:
        return []
    listed = "; ".join(f"{p.get('weight')} x {p.get('file')} (sha256 {str(p.get('sha256'))[:12]}...)" for p in parts)
    return [f"- **Weights averaged** from {len(parts)} runs: {listed}. The training lines below describe the first."]


def _augmentation(given: dict) -> str:
    """What the run augmented with: its options over the defaults (a run's config lists only what it changed)."""
    from .transforms import AugmentConfig

    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    config = dataclasses.asdict(AugmentConfig(**{k: v for k, v in given.items() if k in known}))
    on = [name for name, value in config.items() if isinstance(value, bool) and value]  # the on/off switches
    return (", ".join(on) or "none") + (f", crops of {config['crop']} px" if config["crop"] else ", whole slices")


def _sampling(args: dict) -> str:
    """What the run changed in what it drew (train_detector's source balance, small-region repeat, pasted
    injections); empty when nothing."""
    parts = []
    if args.get("source_balance"):
        parts.append(f"source balance {args['source_balance']}")
    if (args.get("small_region_repeat") or 1) > 1:
        parts.append(f"slices with regions under {args.get('small_region_area')} px x{args['small_region_repeat']}")
    if args.get("paste_injections"):
        parts.append(f"crude pasted injections (`transforms.paste_tumour`) in {args['paste_injections']} of "
                     "tumour-free draws")
    return "; " + ", ".join(parts) if parts else ""


def _device(meta: dict) -> str:
    """Where the bundle was trained (bundles from before this was recorded were all trained on the CPU)."""
    device = meta.get("device") or "cpu"
    return "CPU" if device == "cpu" else f"GPU ({device})"


def _software_lines(meta: dict) -> list[str]:
    """The software that trained the weights, where the bundle records it (bundles trained from session 46 on)."""
    sw = meta.get("software") or {}
    if not sw:
        return []
    code = f"code `{sw['code']}`" if sw.get("code") else "code version not recorded (not a git checkout)"
    return [f"- Trained with Python {sw.get('python')}, torch {sw.get('torch')}, torchvision {sw.get('torchvision')}; "
            f"{code}."]


def _init_from(meta: dict) -> str:
    init = meta.get("init_from")
    if not init:
        return ""
    return (f"; fine-tuned from {init.get('name')} {init.get('version')} (sha256 {str(init.get('sha256'))[:12]}..., "
            f"{init.get('steps')} steps of its own run)")


def _calibrated_on(meta: dict) -> str:
    done = meta.get("calibrated_on")
    if not done:
        return " during training"
    m = done.get("metrics", {})
    return (f" (`calibrate_detector`: all {done.get('n_images')} images of `{done.get('split')}` of "
            f"`{done.get('dataset_dir')}`; there accuracy "
            f"{_f(m.get('accuracy'))}, mean IoU {_f(m.get('mean_iou'))})")


def _views(cal: dict, meta: dict) -> str:
    views = meta.get("calibrated_on", {}).get("views", {})
    compared = ""
    if len(views) == 2:
        compared = (f" (validation accuracy {_f(views['flip']['accuracy'])} with it, "
                    f"{_f(views['plain']['accuracy'])} without)")
    if cal.get("test_time_flip"):
        return f"each slice is read twice, as is and mirrored left-right, and both views fused{compared}"
    return f"each slice is read once{compared}"


def _verdict(cal: dict, meta: dict) -> str:
    report = meta.get("calibrated_on", {}).get("verdict", {})
    compared = ""
    if "verdict_model_cv" in report:
        compared = (f" (patient-grouped 5-fold cross-validated macro F1 on the validation split: learned "
                    f"{_f(report['verdict_model_cv']['macro_f1'])}, hand-set "
                    f"{_f(report['rule_cv']['macro_f1'])})")
    if cal.get("verdict_model"):
        return ("verdict probabilities from a logistic regression on the image head's log-probabilities and each "
                "class's best two detection scores and best box size (`inference.ml.verdict_model`, L2 strength "
                f"C = {cal['verdict_model'].get('strength')}){compared}; detections scoring >= "
                f"{cal.get('detection_threshold')} are shown")
    return (f"verdict probabilities mix the image head (temperature {cal.get('temperature')}) and the detections "
            f"(weight of the image head {cal.get('image_weight')}, detection threshold "
            f"{cal.get('detection_threshold')}){compared}")


def _confidence(cal: dict, meta: dict) -> str:
    """The confidence temperature (`inference.ml.confidence`) and where it was fitted, if the bundle has one."""
    t = float(cal.get("confidence_temperature", 1.0))
    done = meta.get("confidence_calibrated_on") or meta.get("calibrated_on") or {}
    fit = done.get("confidence")
    if not fit:
        return "; the probabilities are not tempered (no confidence temperature fitted)" if t == 1.0 else (
            f"; the probabilities tempered as p^(1/{t:g}), renormalised")
    return (f"; the final probabilities tempered as p^(1/T), renormalised, T = {t:.3g} (`inference.ml.confidence`, "
            f"fitted by log likelihood on all {done.get('n_images')} images of `{done.get('split')}` of "
            f"`{done.get('dataset_dir')}`: expected calibration error there {_f(fit.get('ece_before'))} -> "
            f"{_f(fit.get('ece_after'))}; no verdict moves)")


def _selected_on(meta: dict) -> str:
    """The split a bundle was selected on: its run's validation split, else the one it was calibrated on."""
    if meta.get("val_split"):
        return str(meta["val_split"])
    cal = meta.get("calibrated_on") or {}
    if cal.get("split"):
        return f"{cal['split']}` of `{cal.get('dataset_dir')}"
    return "nothing"


def _refiner(bundle: dict) -> list[str]:
    """For a bundle with a mask refiner (`inference.ml.refiner`): what it is, what it was trained on, and what it
    did on the validation split it was chosen on."""
    data = bundle.get("refiner")
    if not data:
        return []
    cal, meta = bundle.get("calibration", {}), bundle.get("meta", {})
    config = data.get("config", {})
    n_params = sum(int(v.numel()) for v in data["state_dict"].values() if v.is_floating_point() and v.dim() > 1)
    done = meta.get("refined_on", {})
    val = done.get("val", {})
    cut = str(cal.get("refine_threshold"))
    measured = ""
    if val:
        measured = (f"; on all {val.get('n_regions')} slices with a region of `{done.get('chosen_on')}` mean IoU "
                    f"{_f(val.get('unrefined'))} as the detector draws it, {_f((val.get('refined') or {}).get(cut))} "
                    f"refined at the chosen cut")
    state = (f"**on**, refined probability cut at {cal.get('refine_threshold')}" if cal.get("refine")
             else "**off** (it did not raise validation IoU)")
    trained = (f"Trained by `train_refiner` on the detector's own masks on `{done.get('split')}` of "
               f"`{done.get('dataset_dir')}`" if done else
               "Carried over from an earlier bundle, trained on that bundle's masks (see Notes)")
    return [f"- **Mask refinement** (`inference.ml.refiner`): a U-Net (widths {config.get('widths')}, about "
            f"{n_params / 1e6:.2f} M weights) redraws each shown region at the slice's own resolution from the slice, "
            f"its SRM residuals and the detector's mask probability, within {config.get('margin')} px of it; it "
            f"changes no verdict or score. {trained}; {state}{measured}."]


def write_model_card(weights: str | Path, eval_dir: str | Path, out: str | Path, *, reproduce: str = "",
                     notes: str = "", evaluated_on: str = "") -> Path:
    weights, eval_dir = Path(weights), Path(eval_dir)
    bundle = load_bundle(weights)
    meta, config, cal = bundle.get("meta", {}), bundle["config"], bundle.get("calibration", {})
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    sha = file_sha256(weights)
    if metrics["model"]["sha256"] != sha:
        raise ValueError(f"{eval_dir}/metrics.json measured a different file (sha256 {metrics['model']['sha256']}).")
    args = meta.get("train_args", {})
    lat = metrics["latency_s"]
    val = meta.get("validation", {})
    lines = [
        f"# Model card: {meta.get('name')} {meta.get('version')}",
        "",
        f"- File: `models/{weights.name}`, {weights.stat().st_size / 1e6:.1f} MB, sha256 `{sha}`",
        f"- Created {meta.get('created', '?')}, shipped {meta.get('shipped', '?')}; weights stored as "
        f"{meta.get('stored_dtype', 'float32')} (loaded as float32).",
        "- Architecture: torchvision Mask R-CNN, classes background / real_tumor / fake_added / fake_removed, "
        f"backbone **{config.get('backbone')}**-FPN trained from scratch (no pretrained weights), input = intensity "
        f"+ {'3 SRM residuals' if config.get('srm', True) else 'no SRM'} + {config.get('constrained', 0)} "
        f"constrained-convolution channels, plus an image-level verdict head; {_verdict(cal, meta)}"
        f"{_confidence(cal, meta)}; shown regions: "
        f"mask probability >= {cal.get('mask_threshold', 0.5)}, detections scoring >= "
        f"{cal.get('show_threshold', 0.0)} and >= {cal.get('show_relative', 0.0)} x the best (the best always); "
        f"{_views(cal, meta)}; all calibrated on the validation split{_calibrated_on(meta)}.",
        f"- Test-time budget: {config.get('rpn_pre_nms_top_n_test')}/{config.get('rpn_post_nms_top_n_test')} RPN "
        f"proposals, at most {config.get('box_detections_per_img')} detections.",
        *_refiner(bundle),
        "",
        "## Data",
        "",
        f"- Trained on `{meta.get('dataset_dir')}` (annotations.json sha256 `{meta.get('dataset_sha256')}`), split "
        f"`{meta.get('train_split')}`; calibrated and model-selected on `{_selected_on(meta)}`.",
        f"- Evaluated below on {evaluated_on or 'the evaluation in ' + str(eval_dir)}: {metrics['n_images']} images "
        "(patient-disjoint from training).",
        "",
        "## Training",
        "",
        *_averaged_lines(meta),
        f"- {meta.get('steps')} optimiser steps ({meta.get('epochs_completed')} full epochs), "
        f"{meta.get('train_minutes')} minutes of training on {_device(meta)}; batch {args.get('batch_size')}, "
        f"AdamW lr {args.get('lr')} (warm-up then cosine), weight decay {args.get('weight_decay')}, "
        f"seed {args.get('seed')}{_init_from(meta)}.",
        f"- Augmentation: {_augmentation(args.get('augment', {}))}{_sampling(args)}; model options: "
        f"{json.dumps(args.get('model', {}))}.",
        f"- Best validation (the bundle's): accuracy {_f(val.get('accuracy'))}, macro F1 {_f(val.get('macro_f1'))}, "
        f"tamper AUC {_f(val.get('tamper_auc'))}, mean IoU {_f(val.get('mean_iou'))}." if val else
        "- No validation during training: the bundle holds the run's last weights, selected afterwards on the "
        "whole validation split (`calibrate_detector`).",
        *_software_lines(meta),
    ]
    ci_file = eval_dir / "intervals.json"
    ci = json.loads(ci_file.read_text()) if ci_file.is_file() else {}

    def interval(entry) -> str:
        return f"{_f(entry['low'])}-{_f(entry['high'])}" if entry and entry.get("low") is not None else "n/a"

    def cell(entry) -> str:  # the interval column, only when the evaluation has intervals
        return f" {interval(entry)} |" if ci else ""

    lines += [
        "",
        "## Test results (from metrics.json of the evaluation of this file)",
        "",
        f"| metric | measured |{' 95 % CI (patients resampled) |' if ci else ''} target | margin (+ met, - short) |",
        "|---|---|---|---|" + ("---|" if ci else ""),
        f"| accuracy | {_f(metrics['accuracy'])} |{cell(ci.get('accuracy'))} >= {TARGETS['accuracy']} | "
        f"{_f(metrics['accuracy'] - TARGETS['accuracy'])} |",
    ]
    for v in VERDICTS:
        f1 = metrics["per_class"][v]["f1"]
        lines.append(f"| F1 {v} | {_f(f1)} |{cell(ci.get('f1', {}).get(v))} >= {TARGETS['class_f1']} | "
                     f"{_f(f1 - TARGETS['class_f1'])} |")
    for key, target in (("mean_iou", TARGETS["mean_iou"]), ("tamper_auc", TARGETS["tamper_auc"])):
        value = metrics[key]
        lines.append(f"| {key} | {_f(value)} |{cell(ci.get(key))} >= {target} | "
                     f"{_f(None if value is None else value - target)} |")
    lines += [
        f"| latency p50 (s/slice, {lat['device']}, {lat['threads']} threads) | {_f(lat['p50'])} |"
        f"{' |' if ci else ''} <= {TARGETS['latency_p50']} | "
        f"{_f(None if lat['p50'] is None else TARGETS['latency_p50'] - lat['p50'])} |",
        f"| macro F1 | {_f(metrics['macro_f1'])} |{cell(ci.get('macro_f1'))} | |",
    ]
    if ci:
        lines += ["", f"Intervals: a {ci['method']}, {ci['resamples']} resamples of the {ci['n_patients']} "
                  "patients behind these images, each drawn with all of its slices (`intervals.json` of the "
                  "evaluation)." + "".join(f" Accuracy on {name}: {_f(g['accuracy']['estimate'])}, "
                                           f"{interval(g['accuracy'])} ({g['n']} slices, {g['n_patients']} patients)."
                                           for name, g in ci.get("by_source", {}).items())
                  + (f" {ci['note']}" if ci.get("note") else "")]
    lines += [
        "",
        "Per class:",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for v in VERDICTS:
        c = metrics["per_class"][v]
        lines.append(f"| {v} | {_f(c['precision'])} | {_f(c['recall'])} | {_f(c['f1'])} | {c['support']} |")
    cm = metrics["confusion_matrix"]
    lines += ["", "Confusion matrix (rows truth, columns predicted):", "",
              "| | " + " | ".join(cm["labels"]) + " |", "|---" * 5 + "|"]
    for label, row in zip(cm["labels"], cm["matrix"]):
        lines.append(f"| {label} | " + " | ".join(map(str, row)) + " |")
    tables = eval_dir / "tables.md"
    if tables.is_file():
        text = tables.read_text()
        for section in ("## How far the confidence can be trusted", "## By tampering method", "## By source",
                        "## By verdict and region size", "## COCO average precision", "## Robustness",
                        "## Input range check"):
            if section in text:
                part = text[text.index(section):]
                nxt = part.find("\n## ", 3)
                lines += ["", "#" + (part if nxt < 0 else part[:nxt]).strip()]
    lines += ["", "## Intended use and limits", "",
              "A research prototype. It is far below the targets above: do not use its verdicts for patient care. "
              "It has seen only the tampering methods and MRI sequences of its training data; unseen methods, "
              "scanners and sequences will do worse, injections most (a real tumour pasted by a pipeline it never saw "
              "is caught far less often than an unseen removal: `models/experiments/heldout-methods/`, "
              "`lomo-splice/`). Small regions are its weak spot: lesions, injections and removals "
              "covering few pixels are missed far more often than large ones (see By verdict and region size). "
              "It reads tampering in the noise: processing of the whole slice "
              "(re-encoding, resizing, added noise) misleads it (see Robustness); the portal's input check warns of "
              "the strong kinds only (see Input range check).", ""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    if reproduce:
        lines += ["## Reproduce", "", "```", reproduce.strip(), "```", ""]
    Path(out).write_text("\n".join(lines), encoding="utf-8")
    return Path(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    ship = sub.add_parser("ship", help="copy a run's bundle to models/ (float16, name and version set)")
    ship.add_argument("src")
    ship.add_argument("dst")
    ship.add_argument("--name")
    ship.add_argument("--version")
    soup = sub.add_parser("average", help="weighted average of bundles fine-tuned from one start (calibrate it after)")
    soup.add_argument("sources", nargs="+")
    soup.add_argument("--weights", type=float, nargs="+", required=True)
    soup.add_argument("--out", required=True)
    card = sub.add_parser("card", help="write MODEL_CARD.md from the bundle and its evaluation")
    card.add_argument("weights")
    card.add_argument("eval_dir")
    card.add_argument("out")
    card.add_argument("--reproduce", default="")
    card.add_argument("--notes", default="")
    card.add_argument("--evaluated-on", default="", help="what was evaluated, e.g. the test split of DATASET")
    args = parser.parse_args(argv)
    if args.cmd == "ship":
        print(ship_bundle(args.src, args.dst, name=args.name, version=args.version))
    elif args.cmd == "average":
        try:
            print(average_bundles(args.sources, args.weights, args.out))
        except ValueError as exc:
            parser.error(str(exc))
    else:
        print(write_model_card(args.weights, args.eval_dir, args.out, reproduce=args.reproduce, notes=args.notes,
                               evaluated_on=args.evaluated_on))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
