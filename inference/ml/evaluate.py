"""`evaluate_detector`: run a Predictor over a contract dataset and write the contract's files.

Writes to OUT_DIR (``../shared/docs/dataset-and-evaluation.md``):

- ``metrics.json`` and ``predictions.jsonl``: exactly the contract;
- ``tables.md``: Table 1 (per-class precision/recall/F1, as in the paper), Table 2 (overall figures beside the
  paper's), recall by tampering method and by source, COCO mask/box AP;
- ``f1_by_class.png``, ``test_distribution.png``, ``confusion_matrix.png``;
- ``intervals.json``: 95 % confidence intervals of the main figures, resampling patients (``intervals``);
- ``run.json``: what was evaluated (dataset folder, its annotations.json sha256, split, images, when), so that
  the folder can travel with the weights (``models/evaluation/``) and still say what it measured;
- ``coco_ap.json`` (pycocotools), and with ``robustness=True`` ``robustness.json`` (the same metrics after
  contrast, noise, JPEG and resampling perturbations).

No Django; the management command is a thin wrapper.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .coco import (SMALL_REGION_AREA, DatasetError, evaluation_problems, ground_truth_annotation, load_dataset,
                   mask_to_rle, region_area, site_of)
from .imaging import to_uint8
from .input_check import check_statistics, load_reference, slice_statistics
from .intervals import DEFAULT_RESAMPLES, accuracy_interval, bootstrap_intervals
from .labels import CATEGORY_IDS, VERDICTS
from .metrics import classification_metrics, mask_iou, percentile_latency, probability_quality, union_mask

# What the paper reports (IJMRSET 2025), for Table 2. Its test set is not ours: comparable in name only.
PAPER = {"accuracy": 0.932, "mean_iou": 0.88, "latency_s": 0.15}
TARGETS = {"accuracy": 0.95, "class_f1": 0.92, "mean_iou": 0.85, "tamper_auc": 0.98, "latency_p50": 0.4}


# --- Perturbations for the robustness check --------------------------------------------------------


def _contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    mean = img.mean()
    return np.clip((img.astype(np.float32) - mean) * 1.25 + mean, 0, 255).round().astype(np.uint8)


def _gaussian_noise(sigma: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def perturb(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)

    return perturb


def _jpeg_at(quality: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def perturb(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)

    return perturb


def _resampled(factor: float, *, cubic: bool = False) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Down by ``factor`` (area averaging) and back up (bilinear, or bicubic)."""

    def perturb(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        h, w = img.shape
        small = cv2.resize(img, (max(16, int(w * factor)), max(16, int(h * factor))), interpolation=cv2.INTER_AREA)
        back = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR)
        return np.clip(back, 0, 255).astype(np.uint8)

    return perturb


# The first four are strong (and the input check flags them); the last three are the mild processing an export or
# a viewer may apply, which the input check cannot tell from a scan's natural variation.
PERTURBATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "contrast x1.25": _contrast,
    "gaussian noise sigma 3": _gaussian_noise(3.0),
    "JPEG quality 75": _jpeg_at(75),
    "resample 0.75x and back": _resampled(0.75),
    "gaussian noise sigma 1": _gaussian_noise(1.0),
    "JPEG quality 95": _jpeg_at(95),
    "resample 0.9x and back (bicubic)": _resampled(0.9, cubic=True),
}


# --- Evaluation -----------------------------------------------------------------------------------


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img")


def run_predictions(predictor, records, *, perturb=None, seed: int = 0, timing: bool = True, progress: bool = True,
                    desc: str = "evaluate", statistics: list | None = None):
    """Predict every record; returns (prediction rows, latencies, COCO detections). ``statistics``: a list that
    receives each slice's input statistics (``input_check.slice_statistics``, on what the model was given)."""
    rng = np.random.default_rng(seed)
    rows, latencies, detections = [], [], []
    for rec in _progress(records, len(records), desc, progress):
        pixels = rec.pixels()
        if perturb is not None:
            pixels = perturb(to_uint8(pixels), rng)
        if statistics is not None:
            statistics.append(slice_statistics(pixels if pixels.dtype == np.uint8 else to_uint8(pixels)))
        start = time.perf_counter()
        pred, all_detections = predictor.predict_detailed([pixels])[0]
        latencies.append(time.perf_counter() - start)
        truth = rec.mask()
        shown = union_mask([inst.mask for inst in pred.instances], truth.shape)
        iou = mask_iou(truth, shown) if truth.any() else None
        rows.append(
            {
                "image_id": rec.id,
                "file_name": rec.file_name,
                "verdict": rec.verdict,
                "predicted": pred.verdict,
                "scores": {v: round(float(pred.scores[v]), 6) for v in VERDICTS},
                "tamper_score": round(float(pred.tamper_score), 6),
                "iou": None if iou is None else round(float(iou), 6),
            }
        )
        for det in all_detections:
            if det.label not in CATEGORY_IDS:
                continue
            x0, y0, x1, y1 = det.box
            detections.append(
                {
                    "image_id": rec.id,
                    "category_id": CATEGORY_IDS[det.label],
                    "segmentation": mask_to_rle(det.mask),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(det.score),
                }
            )
    return rows, latencies, detections


def metrics_from_rows(rows: list[dict]) -> dict:
    return classification_metrics(
        [r["verdict"] for r in rows],
        [r["predicted"] for r in rows],
        [r["tamper_score"] for r in rows],
        [r["iou"] for r in rows],
    )


def coco_average_precision(records, detections: list[dict]) -> dict:
    """COCO mask and box AP (pycocotools) of every detection against the dataset's regions."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    annotations = []
    for rec in records:
        for ann in rec.annotations:
            # numbered afresh: pycocotools indexes regions by id, and a dataset may reuse ids across images
            annotations.append({**ground_truth_annotation(ann, rec), "id": len(annotations) + 1})
    gt.dataset = {
        "images": [{"id": rec.id, "width": rec.width, "height": rec.height} for rec in records],
        "annotations": annotations,
        "categories": [{"id": cid, "name": name} for name, cid in CATEGORY_IDS.items()],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    out = {"n_regions": len(annotations), "n_detections": len(detections)}
    if not annotations or not detections:
        out.update({"segm": {"AP": 0.0 if annotations else None, "AP50": 0.0 if annotations else None},
                    "bbox": {"AP": 0.0 if annotations else None, "AP50": 0.0 if annotations else None}})
        return out
    for iou_type in ("segm", "bbox"):
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes([dict(d) for d in detections])
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        # stats: AP@[.5:.95], AP50, AP75, ...; -1 means "no ground truth" for that setting
        stats = [None if s < 0 else float(s) for s in ev.stats[:3]]
        out[iou_type] = {"AP": stats[0], "AP50": stats[1], "AP75": stats[2]}
    return out


# Region-size bins (pixels of the slice's annotated regions; 1 % of a 256 x 256 slice is 655 px): where the
# detector's accuracy changes most (lesions under 500 px are missed far more often than larger ones).
AREA_BINS = ((SMALL_REGION_AREA, f"< {SMALL_REGION_AREA} px"), (1500, f"{SMALL_REGION_AREA}-1499 px"),
             (3000, "1500-2999 px"), (None, ">= 3000 px"))  # (upper bound, exclusive; label)


def area_group(rec) -> str:
    """``"<verdict>, <size bin>"`` for a slice with a region, its verdict alone (``no_tumor``) without one."""
    area = region_area(rec)
    if area <= 0:
        return rec.verdict
    label = next(label for high, label in AREA_BINS if high is None or area < high)
    return f"{rec.verdict}, {label}"


def area_group_order(name: str) -> tuple:
    verdict, _, label = name.partition(", ")
    labels = [label for _, label in AREA_BINS]
    return (VERDICTS.index(verdict) if verdict in VERDICTS else len(VERDICTS),
            labels.index(label) if label in labels else -1, name)


def _breakdown(rows: list[dict], records, key, order=None) -> dict[str, dict]:
    """Accuracy per group; ``key`` is a record attribute or a function of the record; ``order`` sorts the group
    names (default: alphabetical)."""
    by_id = {rec.id: rec for rec in records}
    value_of = key if callable(key) else (lambda rec: getattr(rec, key))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        value = value_of(by_id[row["image_id"]]) or "(none)"
        groups.setdefault(str(value), []).append(row)
    out = {}
    for name, members in sorted(groups.items(), key=(lambda kv: order(kv[0])) if order else None):
        correct = sum(r["predicted"] == r["verdict"] for r in members)
        ious = [r["iou"] for r in members if r["iou"] is not None]
        out[name] = {
            "n": len(members),
            "accuracy": correct / len(members),
            "flagged_tampered": sum(r["predicted"] in ("fake_added", "fake_removed") for r in members) / len(members),
            "mean_iou": float(np.mean(ious)) if ious else None,
        }
    return out


def patient_of(rec) -> str:
    """A patient's key across corpora (two sources may reuse an ID)."""
    return f"{rec.source}/{rec.patient_id}"


def patient_intervals(rows: list[dict], records, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """``intervals.bootstrap_intervals`` of the rows, plus the accuracy interval of each source."""
    by_id = {rec.id: rec for rec in records}
    # an image that names no patient (a dataset written elsewhere) is resampled on its own, and the run says so
    named = [bool(str(by_id[r["image_id"]].patient_id).strip()) for r in rows]
    patients = [patient_of(by_id[r["image_id"]]) if ok else f"(no patient id) image {r['image_id']}"
                for r, ok in zip(rows, named)]
    out = bootstrap_intervals(rows, patients, resamples=resamples, seed=seed)
    unnamed = named.count(False)
    if unnamed:
        out["images_without_patient_id"] = unnamed
        out["note"] = " ".join(filter(None, [out.get("note"), (
            f"{unnamed} of the {len(rows)} images name no patient: each was resampled on its own, as if it "
            "were a patient. Slices of one patient are alike, so these intervals are narrower than they should be.")]))
    sources: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        sources.setdefault(str(by_id[row["image_id"]].source or "(none)"), []).append(i)
    out["by_source"] = {
        name: {"n": len(idx), "n_patients": len({patients[i] for i in idx}),
               "accuracy": accuracy_interval([rows[i] for i in idx], [patients[i] for i in idx],
                                             resamples=resamples, seed=seed)}
        for name, idx in sorted(sources.items())
    }
    return out


def _ci(entry: dict | None) -> str:
    if not entry or entry.get("low") is None:
        return "n/a"
    return f"{_fmt(entry['estimate'])} ({_fmt(entry['low'])}-{_fmt(entry['high'])})"


def input_range_summary(rows: list[dict], statistics: list, reference: dict) -> dict:
    """How many slices the input check puts outside the detector's range, and the accuracy on each side."""
    within = [check_statistics([stat], reference).within for stat in statistics]
    out = {}
    for name, flag in (("within", True), ("outside", False), ("not measured", None)):
        members = [r for r, w in zip(rows, within) if w is flag]
        out[name] = {"n": len(members), "share": len(members) / len(rows) if rows else 0.0,
                     "accuracy": (sum(r["predicted"] == r["verdict"] for r in members) / len(members)
                                  if members else None)}
    return out


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_tables(out_dir: Path, metrics: dict, extra: dict) -> Path:
    lines = [f"# Evaluation of {metrics['model']['name']} {metrics['model']['version']}", ""]
    lines += [f"Dataset: `{extra['dataset_dir']}`, split: {extra['split'] or 'all'}, {metrics['n_images']} images. "
              f"Weights sha256 `{metrics['model']['sha256']}`.", ""]
    lines += ["## Table 1: per-class results", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for v in VERDICTS:
        c = metrics["per_class"][v]
        lines.append(f"| {v} | {_fmt(c['precision'])} | {_fmt(c['recall'])} | {_fmt(c['f1'])} | {c['support']} |")
    lat = metrics["latency_s"]
    lines += ["", "## Table 2: overall, beside the paper and our targets", "",
              "| metric | this run | paper (its own test set) | target |", "|---|---|---|---|",
              f"| accuracy (4 verdicts) | {_fmt(metrics['accuracy'])} | {PAPER['accuracy']} | >= {TARGETS['accuracy']} |",
              f"| macro F1 | {_fmt(metrics['macro_f1'])} | n/a | every class >= {TARGETS['class_f1']} |",
              f"| mean mask IoU | {_fmt(metrics['mean_iou'])} | {PAPER['mean_iou']} | >= {TARGETS['mean_iou']} |",
              f"| tamper ROC AUC | {_fmt(metrics['tamper_auc'])} | n/a | >= {TARGETS['tamper_auc']} |",
              f"| latency p50 / p95 (s/slice, {lat['device']}, {lat['threads']} threads) | {_fmt(lat['p50'])} / "
              f"{_fmt(lat['p95'])} | {PAPER['latency_s']} (RTX 2080) | <= {TARGETS['latency_p50']} (CPU) |"]
    ci = extra.get("intervals")
    if ci:
        how = (f"A {ci['method']}: {ci['resamples']} resamples (seed {ci['seed']}) of the {ci['n_patients']} "
               f"patients behind the {ci['n_images']} images, each patient drawn with all of its slices (they are "
               "not independent). A target is met with confidence only when the whole interval clears it."
               if ci["resamples"] else "No interval (below).")
        lines += ["", f"## {round(ci['level'] * 100)} % confidence intervals (patients resampled)", "", how,
                  *(["", f"**{ci['note']}**"] if ci.get("note") else []), "",
                  "| metric | estimate (interval) | target |", "|---|---|---|",
                  f"| accuracy | {_ci(ci['accuracy'])} | >= {TARGETS['accuracy']} |",
                  f"| macro F1 | {_ci(ci['macro_f1'])} | |"]
        lines += [f"| F1 {v} | {_ci(ci['f1'][v])} | >= {TARGETS['class_f1']} |" for v in VERDICTS]
        lines += [f"| mean mask IoU | {_ci(ci['mean_iou'])} | >= {TARGETS['mean_iou']} |",
                  f"| tamper ROC AUC | {_ci(ci['tamper_auc'])} | >= {TARGETS['tamper_auc']} |"]
        for name, g in ci.get("by_source", {}).items():
            lines.append(f"| accuracy, source {name} ({g['n']} images, {g['n_patients']} patients) | "
                         f"{_ci(g['accuracy'])} | |")
    cm = metrics["confusion_matrix"]
    lines += ["", "## Confusion matrix (rows: truth, columns: predicted)", "",
              "| | " + " | ".join(cm["labels"]) + " |", "|---" * (len(cm["labels"]) + 1) + "|"]
    for label, row in zip(cm["labels"], cm["matrix"]):
        lines.append(f"| **{label}** | " + " | ".join(str(x) for x in row) + " |")
    seen_methods = set(metrics["model"].get("train_methods") or [])
    seen_sites = set(metrics["model"].get("train_sites") or [])
    for title, key, seen in (("By tampering method", "by_method", seen_methods), ("By source", "by_source", None),
                             ("By acquisition site", "by_site", seen_sites),
                             ("By verdict and region size (pixels of the true region)", "by_area", None)):
        if key not in extra:
            continue
        lines += ["", f"## {title}", ""]
        if seen:
            lines += ["Groups marked *held out* were absent from the model's training data (leave-one-out).", ""]
        lines += ["| group | n | accuracy | flagged as tampered | mean IoU |", "|---|---|---|---|---|"]
        for name, g in extra[key].items():
            label = f"{name} *held out*" if seen and name != "(none)" and name not in seen else name
            lines.append(f"| {label} | {g['n']} | {_fmt(g['accuracy'])} | {_fmt(g['flagged_tampered'])} | {_fmt(g['mean_iou'])} |")
    conf = extra.get("confidence")
    if conf and conf.get("n_images"):
        lines += ["", "## How far the confidence can be trusted", "",
                  "The confidence shown to a doctor is the probability of the predicted verdict. Binned by that "
                  f"confidence ({conf['bins']} equal bins), a trustworthy model is right as often as it says "
                  "(`confidence.json`, `reliability.png`).", "",
                  "| expected calibration error | largest bin gap | mean confidence | accuracy | Brier score | NLL |",
                  "|---|---|---|---|---|---|",
                  f"| {_fmt(conf['ece'])} | {_fmt(conf['mce'])} | {_fmt(conf['mean_confidence'])} | "
                  f"{_fmt(conf['accuracy'])} | {_fmt(conf['brier'])} | {_fmt(conf['nll'])} |", "",
                  "| confidence | images | mean confidence | right |", "|---|---|---|---|"]
        lines += [f"| {b['low']:.1f}-{b['high']:.1f} | {b['count']} | {_fmt(b['confidence'])} | {_fmt(b['accuracy'])} |"
                  for b in conf["reliability"] if b["count"]]
        if conf.get("by_threshold"):
            lines += ["", "| confidence at least | share of the images | accuracy on them |", "|---|---|---|"]
            lines += [f"| {c['threshold']} | {_fmt(c['share'])} ({c['n']}) | {_fmt(c['accuracy'])} |"
                      for c in conf["by_threshold"]]
    ap = extra.get("coco_ap")
    if ap:
        lines += ["", "## COCO average precision (pycocotools, all detections)", "",
                  "| | AP@[.5:.95] | AP50 | AP75 |", "|---|---|---|---|"]
        for t in ("segm", "bbox"):
            if t in ap:
                lines.append(f"| {t} | {_fmt(ap[t].get('AP'))} | {_fmt(ap[t].get('AP50'))} | {_fmt(ap[t].get('AP75'))} |")
    rob = extra.get("robustness")
    if rob:
        lines += ["", "## Robustness (same images, perturbed)", "",
                  "| perturbation | n | accuracy | macro F1 | tamper AUC | mean IoU |", "|---|---|---|---|---|---|"]
        for name, m in rob.items():
            lines.append(f"| {name} | {m['n_images']} | {_fmt(m['accuracy'])} | {_fmt(m['macro_f1'])} | "
                         f"{_fmt(m['tamper_auc'])} | {_fmt(m['mean_iou'])} |")
    checks = extra.get("input_range")
    if checks:
        lines += ["", "## Input range check (the slices' noise against the detector's training data)", "",
                  "Slices the input check (`inference/ml/input_check.py`) puts outside the detector's range get a "
                  "warning in the portal and in `detect`; the verdict is still counted above.", "",
                  "| images | n | outside the range | accuracy within | accuracy outside | not measured |",
                  "|---|---|---|---|---|---|"]
        for name, c in checks.items():
            n = sum(v["n"] for v in c.values())
            lines.append(f"| {'as given' if name == 'none' else name} | {n} | {_fmt(c['outside']['share'])} | "
                         f"{_fmt(c['within']['accuracy'])} | {_fmt(c['outside']['accuracy'])} | "
                         f"{c['not measured']['n']} |")
    path = out_dir / "tables.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_charts(out_dir: Path, metrics: dict, confidence: dict | None = None) -> list[Path]:
    """F1 by verdict, the test distribution, the confusion heat map and, given ``confidence``
    (`metrics.probability_quality`), the reliability diagram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    f1 = [metrics["per_class"][v]["f1"] for v in VERDICTS]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(VERDICTS, f1, color=["#4c72b0", "#55a868", "#c44e52", "#8172b2"])
    ax.axhline(TARGETS["class_f1"], color="grey", linestyle="--", linewidth=1, label=f"target {TARGETS['class_f1']}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title("F1 by verdict")
    ax.bar_label(bars, fmt="%.2f")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "f1_by_class.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    support = [metrics["per_class"][v]["support"] for v in VERDICTS]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    nonzero = [(v, s) for v, s in zip(VERDICTS, support) if s > 0]
    if nonzero:
        ax.pie([s for _, s in nonzero], labels=[f"{v}\n({s})" for v, s in nonzero], autopct="%1.0f%%")
    ax.set_title(f"Evaluated images by true verdict (n={metrics['n_images']})")
    fig.tight_layout()
    paths.append(out_dir / "test_distribution.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    matrix = np.asarray(metrics["confusion_matrix"]["matrix"], dtype=float)
    row_sums = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, row_sums, out=np.zeros_like(matrix), where=row_sums > 0)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(4), VERDICTS, rotation=30, ha="right")
    ax.set_yticks(range(4), VERDICTS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    for i in range(4):
        for j in range(4):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                    color="white" if normalised[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    paths.append(out_dir / "confusion_matrix.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if confidence and confidence.get("n_images"):
        paths.append(_reliability_chart(plt, out_dir / "reliability.png", confidence))
    return paths


def _reliability_chart(plt, path: Path, confidence: dict) -> Path:
    filled = [b for b in confidence["reliability"] if b["count"]]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="as often right as it says")
    ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], marker="o", color="#4c72b0",
            label="this model")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share right")
    ax.set_title(f"Reliability: expected calibration error {confidence['ece']:.3f}")
    ax.legend(loc="lower right", fontsize=8)
    width = 1.0 / confidence["bins"]
    hist.bar([b["low"] + width / 2 for b in filled], [b["count"] for b in filled], width=width * 0.9, color="#8c8c8c")
    hist.set_xlim(0, 1)
    hist.set_xlabel("confidence shown (probability of the predicted verdict)")
    hist.set_ylabel("images")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_description(dataset_dir: str | Path, split: str | None, n_images: int, *, n_selected: int | None = None,
                    options: dict | None = None) -> dict:
    """run.json: the dataset folder, the sha256 of its annotations.json, the split, the number of images
    evaluated (and in the split, ``n_selected``, when --limit took part of them), the time (UTC), the options the
    figures depend on, and the software that computed them (for a reader who wants to reproduce them)."""
    from datetime import datetime, timezone

    from .predictor import file_sha256
    from .versions import software_versions

    about = {"dataset_dir": str(dataset_dir), "dataset_sha256": file_sha256(Path(dataset_dir) / "annotations.json"),
             "split": split, "n_images": int(n_images),
             "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if n_selected is not None and n_selected != n_images:
        about["n_in_split"] = int(n_selected)
    if options is not None:
        about["options"] = dict(options)
    about["software"] = software_versions()
    return about


def evaluate_dataset(
    dataset_dir: str | Path,
    out_dir: str | Path,
    *,
    predictor,
    split: str | None = None,
    robustness: bool = False,
    robustness_limit: int | None = None,
    coco_ap: bool = True,
    charts: bool = True,
    progress: bool = True,
    warmup: int = 3,
    limit: int | None = None,
    bootstrap: int = DEFAULT_RESAMPLES,
) -> dict:
    """Evaluate ``predictor`` on DATASET_DIR (one split or all) and write OUT_DIR; returns metrics.json's dict.
    ``bootstrap``: resamples of patients for the confidence intervals (0: none)."""
    dataset = load_dataset(dataset_dir, split=split)
    records = list(dataset)
    n_selected = len(records)
    if limit is not None:
        records = records[:limit]
    if not records:
        raise ValueError(f"{dataset_dir}: no images to evaluate.")
    problems = evaluation_problems(records)
    if problems:  # before any prediction and before OUT_DIR is touched: nothing half-written
        raise DatasetError(f"{dataset_dir} cannot be evaluated ({len(problems)} problems; nothing was run, "
                           "nothing written):", problems)
    # Everything is written to a hidden folder inside OUT_DIR and moved up at the end: an interrupted run leaves
    # OUT_DIR's files as they were, and a finished one never sits beside files of an earlier run it did not
    # rewrite (robustness.json from a run with --robustness beside the metrics of one without).
    final = Path(out_dir)
    final.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=final))
    try:
        metrics = _evaluate_records(
            records, staging, predictor=predictor, dataset_dir=dataset_dir, split=split, robustness=robustness,
            robustness_limit=robustness_limit, coco_ap=coco_ap, charts=charts, progress=progress, warmup=warmup,
            bootstrap=bootstrap, n_selected=n_selected)
        publish_outputs(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metrics


# What evaluate_dataset writes into OUT_DIR; a new run replaces all of them and leaves anything else there.
OUTPUT_FILES = ("metrics.json", "predictions.jsonl", "run.json", "breakdown.json", "confidence.json",
                "intervals.json", "coco_ap.json", "robustness.json", "tables.md", "f1_by_class.png",
                "test_distribution.png", "confusion_matrix.png", "reliability.png")


def publish_outputs(staging: Path, final: Path) -> None:
    """Move a finished run's files from ``staging`` into ``final``, removing the earlier run's files of the same
    names first (those this run did not write too); other files in ``final`` are kept. Only the renames stand
    between the two runs' files, so the window in which ``final`` holds neither is a few milliseconds."""
    unexpected = sorted(p.name for p in staging.iterdir() if p.name not in OUTPUT_FILES)
    if unexpected:
        raise RuntimeError(f"evaluate_dataset wrote files it does not list in OUTPUT_FILES: {unexpected}")
    for name in OUTPUT_FILES:
        (final / name).unlink(missing_ok=True)
    for path in sorted(staging.iterdir()):
        os.replace(path, final / path.name)


def _evaluate_records(records, out: Path, *, predictor, dataset_dir, split, robustness, robustness_limit, coco_ap,
                      charts, progress, warmup, bootstrap, n_selected) -> dict:
    """evaluate_dataset's work on checked records, every file written into ``out``."""
    # Warm-up (not timed): first calls allocate and pick kernels.
    sample = records[0].pixels()
    for _ in range(max(0, warmup)):
        predictor.predict(sample)

    # the input statistics are measured outside the timed call: latency stays the model's own
    import torch  # here, not at the top: the portal's model page reads this module's tables without torch

    statistics: list = []
    rows, latencies, detections = run_predictions(predictor, records, progress=progress, statistics=statistics)
    metrics = metrics_from_rows(rows)
    metrics["latency_s"] = {
        **percentile_latency(latencies),
        "device": predictor.device,
        "threads": int(torch.get_num_threads()),
    }
    metrics["model"] = dict(predictor.info)
    meta = getattr(predictor, "meta", None) or {}
    for key in ("train_methods", "train_sites"):  # what the model saw, to mark held-out groups
        if meta.get(key):
            metrics["model"][key] = list(meta[key])

    with open(out / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    options = {"robustness": bool(robustness), "robustness_limit": robustness_limit, "coco_ap": bool(coco_ap),
               "bootstrap": int(bootstrap), "warmup": int(warmup), "device": predictor.device}
    about = run_description(dataset_dir, split, len(records), n_selected=n_selected, options=options)
    (out / "run.json").write_text(json.dumps(about, indent=2) + "\n",
                                  encoding="utf-8")

    extra = {
        "dataset_dir": str(dataset_dir),
        "split": split,
        "by_method": _breakdown(rows, records, "method"),
        "by_source": _breakdown(rows, records, "source"),
        "by_site": _breakdown(rows, records, lambda rec: site_of(rec.patient_id, rec.source)),
        "by_area": _breakdown(rows, records, area_group, order=area_group_order),
    }
    if bootstrap:
        extra["intervals"] = patient_intervals(rows, records, resamples=bootstrap)
        (out / "intervals.json").write_text(json.dumps(extra["intervals"], indent=2) + "\n", encoding="utf-8")
    reference = load_reference()
    extra["input_range"] = {"none": input_range_summary(rows, statistics, reference)}
    extra["confidence"] = probability_quality([r["verdict"] for r in rows], [r["scores"] for r in rows])
    (out / "confidence.json").write_text(json.dumps(extra["confidence"], indent=2) + "\n", encoding="utf-8")
    if coco_ap:
        extra["coco_ap"] = coco_average_precision(records, detections)
        (out / "coco_ap.json").write_text(json.dumps(extra["coco_ap"], indent=2) + "\n", encoding="utf-8")
    if robustness:
        subset = records[:robustness_limit] if robustness_limit else records
        extra["robustness"] = {"none": metrics_from_rows(rows[: len(subset)])}
        extra["robustness"]["none"]["input_range"] = input_range_summary(rows[: len(subset)],
                                                                         statistics[: len(subset)], reference)
        for name, fn in PERTURBATIONS.items():
            pstats: list = []
            prow, _, _ = run_predictions(predictor, subset, perturb=fn, progress=progress, desc=name, statistics=pstats)
            extra["robustness"][name] = metrics_from_rows(prow)
            extra["robustness"][name]["input_range"] = input_range_summary(prow, pstats, reference)
            extra["input_range"][name] = extra["robustness"][name]["input_range"]
        (out / "robustness.json").write_text(json.dumps(extra["robustness"], indent=2) + "\n", encoding="utf-8")
    (out / "breakdown.json").write_text(
        json.dumps({k: extra[k] for k in ("by_method", "by_source", "by_site", "by_area", "input_range")}, indent=2) + "\n",
        encoding="utf-8"
    )
    write_tables(out, metrics, extra)
    if charts:
        write_charts(out, metrics, extra["confidence"])
    return metrics
