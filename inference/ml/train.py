"""Training the detector on a contract dataset, resumable, on CPU or GPU.

In the manner of torchvision's ``references/detection``: this module wires a config to the dataset, model,
optimiser, schedule and checkpoints; ``train_detector`` only parses arguments.

- Checkpoints (``OUT/checkpoint.pt``) are dicts with model, optimizer, scheduler, epoch, step and the args, written
  every few minutes, at each epoch end, and on SIGINT/SIGTERM; ``resume`` continues exactly (the per-epoch sample
  order and each sample's augmentation are functions of the seed, the epoch and the index).
- Validation (every ``val_every_minutes`` and each epoch end) fits the calibration (temperature, mix of image head
  and detections, detection threshold) on the validation split, scores macro F1, and writes the best model as a
  bundle ``OUT/detector.pt`` that `Predictor.load` reads. Early stopping after ``patience`` validations
  without improvement; ``max_minutes`` stops cleanly on a time budget.
- Logs: ``OUT/train.log`` (progress), ``OUT/losses.jsonl`` (losses every ``log_every`` steps),
  ``OUT/history.json`` (validations).

No Django here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .coco import (SMALL_REGION_AREA, DatasetError, evaluation_problems, load_dataset, region_area,
                   segmentation_to_mask, site_of)
from .confidence import fit_confidence_temperature, temper_scores
from .imaging import to_uint8
from .labels import VERDICTS
from .metrics import (accuracy, classification_metrics, confusion_matrix, macro_f1, mask_iou, probability_quality,
                      union_mask)
from .model import DEFAULT_CALIBRATION, ModelConfig, build_model, load_bundle, make_bundle, save_bundle
from .predictor import Instance, Predictor, fuse_scores, select_instances, slice_tensor
from .transforms import AugmentConfig, augment, paste_tumour
from .versions import software_versions
from .verdict_model import fit_verdict_model, grouped_folds, verdict_features, verdict_probs

log = logging.getLogger("inference.ml.train")

CHECKPOINT = "checkpoint.pt"
BEST_BUNDLE = "detector.pt"


@dataclass
class TrainConfig:
    dataset_dir: str
    out_dir: str
    train_split: str = "train"
    val_split: str | None = "val"
    epochs: int = 10
    max_steps: int | None = None  # the schedule's length; default epochs x steps per epoch
    max_minutes: float | None = None  # stop cleanly after this much training time (this invocation)
    schedule_minutes: float | None = None  # cosine over this much total training time instead of max_steps
    batch_size: int = 4
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    image_loss_weight: float = 1.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    workers: int = 0  # > 0: augment in this many DataLoader worker processes (same draws: a sample depends only
    # on (seed, epoch, index, copy)), for a GPU that one process cannot keep busy
    checkpoint_minutes: float = 5.0
    val_every_minutes: float | None = 15.0
    val_limit: int | None = 300
    patience: int = 4
    source_balance: float = 0.0  # > 0: images of smaller source corpora are repeated per epoch (TrainSet.repeats)
    small_region_repeat: int = 1  # > 1: slices whose regions total under small_region_area px appear this many
    small_region_area: int = SMALL_REGION_AREA  # times as often per epoch (times their source repeats; fresh draws each copy)
    paste_injections: float = 0.0  # > 0: each time a tumour-free slice is drawn, with this probability it becomes a
    # fake_added by a crude paste of another training patient's real tumour (transforms.paste_tumour)
    log_every: int = 10
    train_limit: int | None = None
    exclude_methods: list = field(default_factory=list)  # leave-one-method-out: not in train nor val
    exclude_sites: list = field(default_factory=list)  # leave-one-site-out: acquisition sites (coco.site_of)
    init_weights: str | None = None  # a detector bundle to start from (fine-tuning); its model config is used
    name: str = "mri-tamper-maskrcnn"
    version: str = "0.1.0"
    model: dict = field(default_factory=dict)  # ModelConfig fields
    augment: dict = field(default_factory=dict)  # AugmentConfig fields

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def augment_config(self) -> AugmentConfig:
        known = {f.name for f in dataclasses.fields(AugmentConfig)}
        return AugmentConfig(**{k: v for k, v in self.augment.items() if k in known})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown training options: {', '.join(sorted(unknown))}")
        return cls(**data)


# --- Data -----------------------------------------------------------------------------------------


class TamperTrainSet:
    """The training split in memory (uint8 slices; masks decoded per sample), augmented per (epoch, index)."""

    def __init__(self, records, augment_config: AugmentConfig, seed: int, paste_injections: float = 0.0):
        if not 0.0 <= paste_injections <= 1.0:
            raise ValueError(f"paste_injections is a probability (0 to 1), not {paste_injections}.")
        self.records = list(records)
        self.images = [to_uint8(rec.pixels()) for rec in self.records]
        self.augment_config = augment_config
        self.seed = seed
        self.paste_injections = paste_injections
        self._interiors: dict[int, np.ndarray] = {}
        # donors for pasted injections: real tumours of the same source from other patients
        tumours = [k for k, rec in enumerate(self.records) if rec.verdict == "real_tumor" and rec.annotations]
        self._donors = {
            k: [d for d in tumours if self.records[d].source == rec.source and self.records[d].patient_id != rec.patient_id]
            for k, rec in enumerate(self.records) if rec.verdict == "no_tumor"
        } if paste_injections > 0 else {}

    def __len__(self) -> int:
        return len(self.records)

    def repeats(self, source_balance: float, small_region_repeat: int = 1,
                small_region_area: int = SMALL_REGION_AREA) -> np.ndarray:
        """How often each image appears in an epoch: ``(largest source / its source) ** source_balance``,
        rounded (0: once each; 0.5: a source 9 times smaller is seen 3 times as often per image), times
        ``small_region_repeat`` for a slice whose regions (COCO areas, summed) cover more than 0 and fewer than
        ``small_region_area`` pixels: small lesions, the ones the detector misses most."""
        if small_region_repeat < 1:
            raise ValueError(f"small_region_repeat must be at least 1, not {small_region_repeat}.")
        counts: dict[str, int] = {}
        for rec in self.records:
            counts[rec.source] = counts.get(rec.source, 0) + 1
        largest = max(counts.values(), default=1)
        out = np.array([max(1, round((largest / counts[rec.source]) ** source_balance)) for rec in self.records])
        if small_region_repeat > 1:
            small = np.array([0 < region_area(rec) < small_region_area for rec in self.records], bool)
            out[small] *= small_region_repeat
        return out

    def sample(self, index: int, epoch: int, copy: int = 0) -> tuple[torch.Tensor, dict]:
        """Image ``index`` augmented for ``epoch``; ``copy`` > 0 for its repeats in the same epoch (other draws)."""
        rec = self.records[index]
        masks = [segmentation_to_mask(a["segmentation"], rec.height, rec.width) for a in rec.annotations]
        image, verdict = self.images[index], rec.verdict
        if self._donors.get(index):
            pasted = self._paste(index, np.random.default_rng([self.seed, epoch, index, copy, 7]))
            if pasted is not None:
                image, masks, verdict = pasted[0], [pasted[1]], "fake_added"
        rng = np.random.default_rng([self.seed, epoch, index] + ([copy] if copy else []))
        image, masks = augment(image, masks, self.augment_config, rng)
        return slice_tensor(image), make_target(masks, verdict, image.shape)

    def _paste(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        """With probability ``paste_injections``, tumour-free slice ``index`` with another patient's real tumour
        pasted in (`transforms.paste_tumour`; up to 8 donors tried for one whose place is in this head's tissue)."""
        if rng.random() >= self.paste_injections:
            return None
        if index not in self._interiors:
            from .tamper.anatomy import analyse

            self._interiors[index] = analyse(self.images[index]).interior
        donors = self._donors[index]
        for k in rng.choice(len(donors), size=min(8, len(donors)), replace=False):
            donor = int(donors[k])
            pasted = paste_tumour(self.images[index], self.images[donor], self.records[donor].mask(), rng,
                                  self._interiors[index])
            if pasted is not None:
                return pasted
        return None


class _Samples(torch.utils.data.Dataset):
    """The training set keyed by (epoch, item) (``epoch_order`` codes), for a DataLoader's worker processes."""

    def __init__(self, train_set: TamperTrainSet):
        self.train_set = train_set

    def __len__(self) -> int:
        return len(self.train_set)

    def __getitem__(self, key: tuple[int, int]):
        epoch, item = key
        copy, index = divmod(int(item), len(self.train_set))
        return self.train_set.sample(index, epoch, copy)


class _EpochBatches(torch.utils.data.Sampler):
    """A batch sampler whose batches the training loop sets each epoch (the workers persist across epochs)."""

    def __init__(self):
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _as_list(batch):
    return batch


def _worker_init(_worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)


class BatchStream:
    """Augmented training batches, epoch by epoch: in this process, or with ``workers`` > 0 in that many worker
    processes started once for the whole run. Either way the samples are the same (a sample depends only on
    (seed, epoch, index, copy)); workers are for a GPU that one process cannot keep busy."""

    def __init__(self, train_set: TamperTrainSet, batch_size: int, workers: int = 0):
        self.samples, self.batch_size, self.loader = _Samples(train_set), batch_size, None
        if workers > 0:
            self.sampler = _EpochBatches()
            self.loader = torch.utils.data.DataLoader(
                self.samples, batch_sampler=self.sampler, num_workers=workers, collate_fn=_as_list,
                worker_init_fn=_worker_init, prefetch_factor=4, persistent_workers=True,
                pin_memory=torch.cuda.is_available(),
                # fresh processes: a fork inherits OpenCV's and OpenMP's thread pools, which deadlock in the
                # child once the parent has used them
                multiprocessing_context="spawn")

    def epoch(self, order: np.ndarray, epoch: int, first_step: int, steps: int):
        """An iterator over the batches of steps ``first_step`` .. ``steps - 1`` of ``epoch`` (order from
        ``epoch_order``); a new call abandons the previous epoch's iterator."""
        keys = [(epoch, int(item)) for item in order[first_step * self.batch_size : steps * self.batch_size]]
        batches = [keys[i : i + self.batch_size] for i in range(0, len(keys) - self.batch_size + 1, self.batch_size)]
        if self.loader is None:
            return ([self.samples[k] for k in batch] for batch in batches)
        self.sampler.batches = batches
        return iter(self.loader)

    def close(self) -> None:
        """Stops the worker processes, if any."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown_workers()
        self.loader = None


def make_target(masks: list[np.ndarray], verdict: str, shape: tuple[int, int]) -> dict:
    """torchvision's target (boxes, labels, masks) plus the verdict index for the image head."""
    from .labels import VERDICT_CATEGORY

    category = VERDICT_CATEGORY[verdict]
    boxes, kept = [], []
    for m in masks if category is not None else []:
        ys, xs = np.nonzero(m)
        if ys.size == 0:
            continue
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        boxes.append([float(x0), float(y0), float(x1), float(y1)])
        kept.append(m)
    h, w = shape
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.full((len(kept),), category or 0, dtype=torch.int64),
        "masks": torch.from_numpy(np.stack(kept).astype(np.uint8)) if kept else torch.zeros((0, h, w), dtype=torch.uint8),
        "verdict": torch.tensor(VERDICTS.index(verdict), dtype=torch.int64),
    }


def epoch_order(n: int, seed: int, epoch: int, repeats: np.ndarray | None = None) -> np.ndarray:
    """A seeded permutation of the epoch's items; with ``repeats``, image i appears repeats[i] times, its k-th
    copy encoded as ``i + k * n`` (``divmod(item, n)`` gives back (copy, index))."""
    items = np.arange(n) if repeats is None else np.concatenate(
        [i + n * np.arange(r) for i, r in enumerate(repeats)]).astype(np.int64)
    return np.random.default_rng([seed, epoch, 7919]).permutation(items)


# --- Schedule -------------------------------------------------------------------------------------


def lr_lambda(warmup: int, total: int, min_ratio: float, *, clock=None):
    """Linear warm-up, then cosine to ``min_ratio`` over ``total`` steps, or, with ``clock`` (a function
    returning the fraction of the training-time budget used), over time: on a shared CPU the step rate varies
    tenfold, and a schedule in steps would end too early or never."""
    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if clock is not None:
            progress = min(1.0, clock())
        else:
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


# --- Validation and calibration ---------------------------------------------------------------------


@dataclass
class ValItem:
    verdict: str
    truth: np.ndarray  # union of ground-truth regions, bool
    image_logits: np.ndarray
    detections: list[Instance]
    mask_probs: np.ndarray | None = None  # (n, h, w) uint8, each detection's mask probability x 255
    _cut: dict = field(default_factory=dict, repr=False)  # mask threshold -> detections with those masks

    def shown_mask(self, verdict: str, calibration: dict) -> np.ndarray:
        """The union of what would be shown for ``verdict`` under ``calibration`` (its mask and show thresholds)."""
        calibration = {**DEFAULT_CALIBRATION, **calibration}
        detections = self.detections
        if self.mask_probs is not None:
            key = float(calibration["mask_threshold"])
            if key not in self._cut:
                self._cut[key] = [Instance(d.label, d.score, d.box, probs >= key * 255.0)
                                  for d, probs in zip(self.detections, self.mask_probs)]
            detections = self._cut[key]
        shown = select_instances(verdict, detections, float(calibration["detection_threshold"]),
                                 float(calibration["show_threshold"]), float(calibration["show_relative"]))
        return union_mask([d.mask for d in shown], self.truth.shape)


def val_item(predictor: Predictor, rec, out: dict, image: np.ndarray, min_score: float = 0.0) -> ValItem:
    """One record's `ValItem` from the model's output ``out`` on its uint8 slice ``image``; detections scoring under
    ``min_score`` are dropped first (memory: no fit looks below the lowest detection threshold it tries)."""
    if min_score > 0:
        keep = out["scores"] >= min_score
        out = {**out, **{k: out[k][keep] for k in ("boxes", "scores", "labels", "masks")}}
    _, detections = predictor._postprocess_detailed(out, image)
    probs = (out["masks"][:, 0].float().cpu().numpy() * 255.0).round().astype(np.uint8)
    return ValItem(rec.verdict, rec.mask(), out["image_logits"].float().cpu().numpy(), detections, probs)


def collect_validation(predictor: Predictor, records, batch_size: int = 8) -> list[ValItem]:
    """The model's plain (one-view) outputs on ``records``, ready for `fit_calibration`."""
    return collect_views(predictor, records, batch_size, flip=False)[0]


def collect_views(predictor: Predictor, records, batch_size: int = 8,
                  flip: bool = True) -> tuple[list[ValItem], list[ValItem] | None]:
    """The plain outputs and, with ``flip``, the outputs fused with the mirrored view (test-time flip), from one
    pass of the model over ``records``."""
    plain, fused = [], ([] if flip else None)
    predictor.model.eval()

    def item(rec, out, s) -> ValItem:
        return val_item(predictor, rec, out, s)

    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        slices = [to_uint8(rec.pixels()) for rec in chunk]
        outs, outs_fused = predictor.forward_views(slices, flip=flip)
        plain += [item(rec, out, s) for rec, out, s in zip(chunk, outs, slices)]
        if flip:
            fused += [item(rec, out, s) for rec, out, s in zip(chunk, outs_fused, slices)]
    return plain, fused


def item_features(it: ValItem, has_image_head: bool) -> np.ndarray:
    """The learned verdict's features of one item (`verdict_model.verdict_features`), as the predictor computes
    them from the same output."""
    return verdict_features(it.image_logits if has_image_head else None, [d.label for d in it.detections],
                            [d.score for d in it.detections], [d.box for d in it.detections])


def item_verdict(it: ValItem, calibration: dict, has_image_head: bool) -> tuple[str, dict[str, float]]:
    """The verdict and probabilities the predictor gives for ``it`` under ``calibration``."""
    scores = temper_scores(_untempered_item_scores(it, calibration, has_image_head),
                           calibration.get("confidence_temperature", 1.0))
    return max(VERDICTS, key=lambda v: scores[v]), scores


def _untempered_item_scores(it: ValItem, calibration: dict, has_image_head: bool) -> dict[str, float]:
    if calibration.get("verdict_model"):
        probs = verdict_probs(calibration["verdict_model"], item_features(it, has_image_head))
        return {v: float(p) for v, p in zip(VERDICTS, probs)}
    image_probs = None
    if has_image_head:
        logits = it.image_logits / float(calibration["temperature"])
        logits = logits - logits.max()
        image_probs = np.exp(logits) / np.exp(logits).sum()
    threshold = float(calibration["detection_threshold"])
    class_scores = {}
    for name in ("real_tumor", "fake_added", "fake_removed"):
        s = [d.score for d in it.detections if d.label == name and d.score >= threshold]
        class_scores[name] = max(s) if s else 0.0
    weight = float(calibration["image_weight"]) if has_image_head else 0.0
    return fuse_scores(image_probs, class_scores, weight)


def score_items(items: list[ValItem], calibration: dict, has_image_head: bool, with_iou: bool = True) -> dict:
    y_true, y_pred, tamper, ious, nll, all_scores = [], [], [], [], [], []
    for it in items:
        verdict, scores = item_verdict(it, calibration, has_image_head)
        all_scores.append(scores)
        y_true.append(it.verdict)
        y_pred.append(verdict)
        tamper.append(scores["fake_added"] + scores["fake_removed"])
        nll.append(-math.log(max(scores[it.verdict], 1e-9)))
        if with_iou and it.truth.any():
            ious.append(mask_iou(it.truth, it.shown_mask(verdict, calibration)))
        else:
            ious.append(None)
    metrics = classification_metrics(y_true, y_pred, tamper, ious)
    metrics["nll"] = float(np.mean(nll))
    metrics["ece"] = probability_quality(y_true, all_scores)["ece"] if items else None
    return metrics


def fit_calibration(items: list[ValItem], has_image_head: bool) -> tuple[dict, dict]:
    """The calibration with the best validation macro F1 (ties: lower NLL), then the display (mask and show
    thresholds, `fit_display`) with the best mean IoU for those verdicts; and its metrics."""
    best = fit_display(items, fit_rule(items, has_image_head), has_image_head)
    return best, score_items(items, best, has_image_head, with_iou=True)


def fit_rule(items: list[ValItem], has_image_head: bool) -> dict:
    """The hand-set verdict rule's settings (temperature, image weight, detection threshold) with the best macro F1
    on ``items`` (ties: lower NLL)."""
    temperatures = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0) if has_image_head else (1.0,)
    weights = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0) if has_image_head else (0.0,)
    thresholds = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
    best, best_key = None, None
    for t, w, th in itertools.product(temperatures, weights, thresholds):
        cal = {**DEFAULT_CALIBRATION, "temperature": t, "image_weight": w, "detection_threshold": th}
        m = score_items(items, cal, has_image_head, with_iou=False)
        key = (round(m["macro_f1"], 6), -m["nll"])
        if best_key is None or key > best_key:
            best, best_key = cal, key
    return best


def choose_verdict_model(items: list[ValItem], groups: list, calibration: dict, has_image_head: bool,
                         mode: str = "auto") -> tuple[dict, dict]:
    """Whether the learned verdict (`verdict_model`) replaces the hand-set rule of ``calibration`` (fitted on
    ``items``): both are scored by patient-grouped cross-validation on ``items`` (the rule refitted on each
    training fold as `fit_rule` fits it, the model as `fit_verdict_model` fits it), and ``"auto"`` keeps the
    model only if its out-of-fold macro F1 is higher; ``"on"`` / ``"off"`` force it. With the model, the display
    (`fit_display`) is refitted for its verdicts. Returns (calibration, report of both cross-validations)."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"verdict_model must be auto, on or off; got {mode!r}.")
    calibration = {**calibration, "verdict_model": None}
    if mode == "off":
        return calibration, {"chosen": "rule"}
    if len(set(groups)) < 2:
        if mode == "on":
            raise ValueError("The learned verdict is fitted and checked by patient-grouped cross-validation: the "
                             "split needs slices of at least two patients.")
        return calibration, {"chosen": "rule", "why": "slices of one patient: nothing to cross-validate on"}
    folds = grouped_folds(groups)
    truth = [it.verdict for it in items]
    rule_pred = [""] * len(items)
    for train_idx, test_idx in folds:
        cal = {**calibration, **fit_rule([items[i] for i in train_idx], has_image_head)}
        for i in test_idx:
            rule_pred[i] = item_verdict(items[i], cal, has_image_head)[0]
    matrix = confusion_matrix(truth, rule_pred)
    rule_cv = {"macro_f1": macro_f1(matrix), "accuracy": accuracy(matrix), "folds": len(folds)}
    x = np.stack([item_features(it, has_image_head) for it in items])
    model, model_cv = fit_verdict_model(x, truth, groups)
    use = mode == "on" or round(model_cv["macro_f1"], 6) > round(rule_cv["macro_f1"], 6)
    report = {"chosen": "verdict_model" if use else "rule", "rule_cv": rule_cv, "verdict_model_cv": model_cv}
    if use:
        calibration = fit_display(items, {**calibration, "verdict_model": model}, has_image_head)
    return calibration, report


MASK_THRESHOLDS = (0.4, 0.5, 0.6, 0.7)
SHOW_THRESHOLDS = (0.0, 0.5, 0.7)
SHOW_RELATIVE = (0.0, 0.5, 0.8)


def fit_display(items: list[ValItem], calibration: dict, has_image_head: bool) -> dict:
    """The mask threshold and show thresholds with the best mean IoU over the items with a region, the verdicts
    fixed by ``calibration`` (ties: the calibration's own setting wins, so that a flat criterion changes nothing)."""
    with_truth = [it for it in items if it.truth.any()]
    if not with_truth:
        return calibration
    calibration = {**DEFAULT_CALIBRATION, **calibration}
    verdicts = [item_verdict(it, calibration, has_image_head)[0] for it in with_truth]
    best, best_iou = calibration, None
    # the default first: it wins ties
    grid = [(calibration["mask_threshold"], calibration["show_threshold"], calibration["show_relative"])]
    grid += [g for g in itertools.product(MASK_THRESHOLDS, SHOW_THRESHOLDS, SHOW_RELATIVE) if g != grid[0]]
    for mask_t, show_t, show_r in grid:
        cal = {**calibration, "mask_threshold": mask_t, "show_threshold": show_t, "show_relative": show_r}
        iou = float(np.mean([mask_iou(it.truth, it.shown_mask(v, cal)) or 0.0 for it, v in zip(with_truth, verdicts)]))
        if best_iou is None or iou > best_iou + 1e-9:
            best, best_iou = cal, iou
    return best


def _summary(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in ("accuracy", "macro_f1", "mean_iou", "tamper_auc", "nll", "ece")}


def fit_confidence(items: list[ValItem], calibration: dict, has_image_head: bool) -> tuple[dict, dict]:
    """``calibration`` with its ``confidence_temperature`` fitted on ``items`` (`confidence`), every other setting
    as it is (no verdict moves); and a report: T, and the items' NLL and ECE before and after."""
    untempered = {**calibration, "confidence_temperature": 1.0}
    scores = [item_verdict(it, untempered, has_image_head)[1] for it in items]
    truth = [it.verdict for it in items]
    t, fit = fit_confidence_temperature(scores, truth)
    tempered = [temper_scores(sc, t) for sc in scores]
    report = {"confidence_temperature": t, **fit, "ece_before": probability_quality(truth, scores)["ece"],
              "ece_after": probability_quality(truth, tempered)["ece"]}
    return {**calibration, "confidence_temperature": t}, report


def calibrate_bundle(weights: str | Path, dataset_dir: str | Path, out: str | Path, *, split: str = "val",
                     device: str = "auto", limit: int | None = None,
                     test_time_flip: str = "auto", verdict_model: str = "off",
                     confidence_only: bool = False) -> tuple[dict, dict]:
    """Refit a bundle's calibration (verdict mix and thresholds, then mask and show thresholds) on a whole split,
    typically the full validation split after training validated on a subset; writes the bundle to ``out`` with
    its weights untouched and ``meta["calibrated_on"]`` saying on what. Returns (calibration, metrics).

    ``test_time_flip``: ``"auto"`` fits both the plain outputs and the ones fused with the mirrored view and keeps
    the flip only if its validation macro F1 is higher (ties: lower NLL, then plain, which costs half the time);
    ``"on"`` / ``"off"`` force it. ``verdict_model``: then, on the chosen reading, whether a learned verdict
    replaces the hand-set rule (`choose_verdict_model`: ``"auto"`` by patient-grouped cross-validated macro F1).
    Last, the confidence temperature (`fit_confidence`). ``confidence_only``: keep the bundle's calibration as it
    is (its reading, rule and display) and fit only the confidence temperature: no verdict or mask moves."""
    if test_time_flip not in ("auto", "on", "off"):
        raise ValueError(f"test_time_flip must be auto, on or off; got {test_time_flip!r}.")
    if verdict_model not in ("auto", "on", "off"):
        raise ValueError(f"verdict_model must be auto, on or off; got {verdict_model!r}.")
    records = list(load_dataset(dataset_dir, split=split))
    if limit:
        records = records[:limit]
    if not records:
        raise ValueError(f"The dataset {dataset_dir} has no image in split {split!r} to calibrate on.")
    problems = evaluation_problems(records)
    if problems:
        raise DatasetError(f"{dataset_dir} cannot be calibrated on ({len(problems)} problems; nothing was fitted):",
                           problems)
    bundle = load_bundle(weights)
    predictor = Predictor.load(weights, device=device)
    if confidence_only:
        return _calibrate_confidence_only(bundle, predictor, records, dataset_dir, split, out)
    plain, fused = collect_views(predictor, records, flip=test_time_flip != "off")
    fits = {}
    if test_time_flip != "on":
        fits["plain"] = fit_calibration(plain, predictor.has_image_head)
    if fused is not None:
        cal, metrics = fit_calibration(fused, predictor.has_image_head)
        fits["flip"] = ({**cal, "test_time_flip": True}, metrics)
    chosen = max(fits, key=lambda k: (round(fits[k][1]["macro_f1"], 6), -round(fits[k][1]["nll"], 6), k == "plain"))
    calibration, metrics = fits[chosen]
    items = fused if chosen == "flip" else plain
    calibration, verdict_report = choose_verdict_model(items, [rec.patient_id for rec in records], calibration,
                                                       predictor.has_image_head, verdict_model)
    calibration, confidence_report = fit_confidence(items, calibration, predictor.has_image_head)
    metrics = score_items(items, calibration, predictor.has_image_head)
    previous = bundle.get("calibration")
    bundle["calibration"] = calibration
    bundle["meta"] = {**bundle.get("meta", {}), "calibrated_on": {
        **_calibrated_on(dataset_dir, split, len(plain)),
        "metrics": _summary(metrics),
        "views": {k: _summary(m) for k, (_, m) in fits.items()},
        "verdict": verdict_report,
        "confidence": confidence_report,
        "previous_calibration": previous,
    }}
    save_bundle(bundle, out)
    return calibration, metrics


def _calibrated_on(dataset_dir, split: str, n_images: int) -> dict:
    return {"dataset_dir": str(dataset_dir), "dataset_sha256": _file_sha256(Path(dataset_dir) / "annotations.json"),
            "split": split, "n_images": n_images}


def _calibrate_confidence_only(bundle: dict, predictor, records, dataset_dir, split: str,
                               out: str | Path) -> tuple[dict, dict]:
    """`calibrate_bundle` with ``confidence_only``: the bundle's own reading (mirror or not) and settings, only the
    confidence temperature fitted; what the bundle was calibrated on before stays in ``meta`` beside it."""
    calibration = {**DEFAULT_CALIBRATION, **bundle.get("calibration", {})}
    flip = bool(calibration.get("test_time_flip"))
    plain, fused = collect_views(predictor, records, flip=flip)
    items = fused if flip else plain
    calibration, confidence_report = fit_confidence(items, calibration, predictor.has_image_head)
    metrics = score_items(items, calibration, predictor.has_image_head)
    meta = bundle.get("meta", {})
    bundle["calibration"] = calibration
    bundle["meta"] = {**meta, "confidence_calibrated_on": {
        **_calibrated_on(dataset_dir, split, len(items)),
        "metrics": _summary(metrics), "confidence": confidence_report,
    }}
    save_bundle(bundle, out)
    return calibration, metrics


# --- Training -------------------------------------------------------------------------------------


def _setup_logging(out_dir: Path) -> None:
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in log.handlers):
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(stream)
    log.setLevel(logging.INFO)
    log.propagate = False


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(config: TrainConfig, *, resume: str | Path | None = None) -> dict:
    """Train (or resume) and return a summary; the best bundle is OUT/detector.pt."""
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _setup_logging(out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = "cuda" if config.device == "auto" and torch.cuda.is_available() else (
        "cpu" if config.device == "auto" else config.device)
    torch.manual_seed(config.seed)

    dataset = load_dataset(config.dataset_dir, split=config.train_split)
    def kept(records) -> list:
        """The records left after the held-out methods and sites (tampered images of a held-out method, and
        every image from a held-out site, whatever its verdict)."""
        return [r for r in records if (r.method is None or r.method not in config.exclude_methods)
                and site_of(r.patient_id, r.source) not in config.exclude_sites]

    train_records = kept(dataset)
    if config.train_limit:
        train_records = train_records[: config.train_limit]
    if config.exclude_methods or config.exclude_sites:
        log.info("held out of training and validation: methods %s, sites %s", config.exclude_methods or "-",
                 config.exclude_sites or "-")
    if not train_records:
        raise ValueError("No training image is left after the exclusions.")
    val_records = []
    if config.val_split:
        val_records = kept(load_dataset(config.dataset_dir, split=config.val_split))
        if config.val_limit and len(val_records) > config.val_limit:
            # a fixed, verdict-mixed subset: every k-th image
            step = len(val_records) / config.val_limit
            val_records = [val_records[int(i * step)] for i in range(config.val_limit)]
    problems = evaluation_problems(train_records + val_records)
    if problems:  # found now, not hours into the run when the sampler first draws the image
        raise DatasetError(f"{config.dataset_dir} cannot be trained on ({len(problems)} problems; no step was run):",
                           problems)
    log.info("train: %d images (%s), val: %d images", len(train_records), config.train_split, len(val_records))
    train_set = TamperTrainSet(train_records, config.augment_config(), config.seed, config.paste_injections)
    if config.paste_injections:
        log.info("pasted injections: %.2f of tumour-free draws", config.paste_injections)

    model_config = config.model_config()
    init_bundle = None
    if config.init_weights and not resume:
        init_bundle = load_bundle(config.init_weights)
        # the starting weights fix the architecture: a config that disagrees would not load
        model_config = ModelConfig.from_dict(init_bundle["config"])
        config.model = model_config.to_dict()
    model = build_model(model_config).to(device)
    init_from = None  # recorded in the bundle; a resumed fine-tune still names its starting weights
    if config.init_weights and Path(config.init_weights).is_file():
        start = init_bundle or load_bundle(config.init_weights)
        init_from = {"path": str(config.init_weights), "sha256": _file_sha256(Path(config.init_weights)),
                     **{k: start["meta"].get(k) for k in ("name", "version", "steps")}}
    if init_bundle is not None:
        model.load_state_dict(init_bundle["state_dict"])
        log.info("initialised from %s (%s %s, %s steps)", config.init_weights, init_bundle["meta"].get("name"),
                 init_bundle["meta"].get("version"), init_bundle["meta"].get("steps"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    repeats = None
    if config.source_balance or config.small_region_repeat != 1:
        repeats = train_set.repeats(config.source_balance, config.small_region_repeat, config.small_region_area)
    epoch_items = len(train_set) if repeats is None else int(repeats.sum())
    if repeats is not None:
        log.info("source balance %.2f, small regions (< %d px) x%d: %d items an epoch from %d images",
                 config.source_balance, config.small_region_area, config.small_region_repeat, epoch_items,
                 len(train_set))
    steps_per_epoch = max(1, epoch_items // config.batch_size)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_score": -1.0, "bad_validations": 0,
             "train_seconds": 0.0, "history": []}
    clock = None
    if config.schedule_minutes:
        clock = lambda: state["train_seconds"] / (config.schedule_minutes * 60)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(config.warmup_steps, total_steps, config.min_lr_ratio, clock=clock))
    if resume:
        ckpt = torch.load(resume, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state.update({k: ckpt[k] for k in state if k in ckpt})
        previous_lr = ckpt.get("args", {}).get("lr")
        if previous_lr is not None and previous_lr != config.lr:
            # resuming with another peak learning rate: the schedule keeps its shape and position
            scheduler.base_lrs = [config.lr] * len(scheduler.base_lrs)
            for group, fn in zip(optimizer.param_groups, scheduler.lr_lambdas):
                group["initial_lr"] = config.lr
                group["lr"] = config.lr * fn(scheduler.last_epoch)
            log.info("learning rate changed on resume: %g -> %g", previous_lr, config.lr)
        log.info("resumed from %s at epoch %d, step %d (%.1f min trained so far)", resume, state["epoch"],
                 state["global_step"], state["train_seconds"] / 60)

    dataset_sha = _file_sha256(Path(config.dataset_dir) / "annotations.json")

    def save_checkpoint() -> None:
        _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "args": config.to_dict(), **state},
                     out_dir / CHECKPOINT)
        log.info("checkpoint: epoch %d step %d -> %s", state["epoch"], state["global_step"], out_dir / CHECKPOINT)

    def validate() -> bool:
        """Validate, maybe write the best bundle; True when training should stop early."""
        if not val_records:
            _write_bundle(DEFAULT_CALIBRATION, {})
            return False
        started = time.time()
        predictor = Predictor(model, config=model_config.to_dict(), calibration=DEFAULT_CALIBRATION,
                              meta={}, sha256="", device=device)
        items = collect_validation(predictor, val_records)
        calibration, metrics = fit_calibration(items, model_config.image_head)
        model.train()
        score = metrics["macro_f1"]
        summary = _summary(metrics)
        summary.update({"epoch": state["epoch"], "step": state["global_step"],
                        "train_minutes": round(state["train_seconds"] / 60, 2), "calibration": calibration,
                        "per_class_f1": {v: metrics["per_class"][v]["f1"] for v in VERDICTS}})
        state["history"].append(summary)
        (out_dir / "history.json").write_text(json.dumps(state["history"], indent=2) + "\n")
        log.info("validation (%d images, %.0f s): accuracy %.3f macro F1 %.3f tamper AUC %s mean IoU %s; cal %s",
                 len(items), time.time() - started, metrics["accuracy"], score, _f(metrics["tamper_auc"]),
                 _f(metrics["mean_iou"]), calibration)
        if score > state["best_score"]:
            state["best_score"] = score
            state["bad_validations"] = 0
            _write_bundle(calibration, summary)
            return False
        state["bad_validations"] += 1
        return state["bad_validations"] >= config.patience

    def _write_bundle(calibration: dict, val_summary: dict) -> None:
        meta = {
            "backbone": model_config.backbone,
            "trained": True,
            "dataset_dir": str(config.dataset_dir),
            "dataset_sha256": dataset_sha,
            "train_split": config.train_split,
            "train_methods": sorted({r.method for r in train_records if r.method}),
            "train_sites": sorted({site_of(r.patient_id, r.source) for r in train_records}),
            "val_split": config.val_split,
            "steps": state["global_step"],
            "epochs_completed": state["epoch"],
            "train_minutes": round(state["train_seconds"] / 60, 2),
            "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
            "init_from": init_from,
            "validation": val_summary,
            "train_args": config.to_dict(),
            "software": software_versions(),
        }
        bundle = make_bundle(model, model_config, name=config.name, version=config.version,
                             calibration=calibration, meta=meta)
        save_bundle(bundle, out_dir / BEST_BUNDLE)
        log.info("best model so far -> %s (validation macro F1 %.3f)", out_dir / BEST_BUNDLE,
                 val_summary.get("macro_f1", float("nan")))

    stop = {"signal": None}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["signal"] = signum
        log.info("signal %d: stopping after this step", signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    session_start = time.time()
    last_ckpt = last_val = time.time()
    losses_file = open(out_dir / "losses.jsonl", "a", encoding="utf-8")
    stream = BatchStream(train_set, config.batch_size, config.workers)
    model.train()
    reason = "epochs done"
    try:
        from tqdm import tqdm

        while state["epoch"] < config.epochs and state["global_step"] < total_steps:
            order = epoch_order(len(train_set), config.seed, state["epoch"], repeats)
            bar = tqdm(total=steps_per_epoch, initial=state["step_in_epoch"], desc=f"epoch {state['epoch'] + 1}",
                       unit="step", mininterval=30, disable=None)
            batches = stream.epoch(order, state["epoch"], state["step_in_epoch"], steps_per_epoch)
            while state["step_in_epoch"] < steps_per_epoch:
                step_start = time.time()
                batch = next(batches)
                images = [b[0].to(device, non_blocking=True) for b in batch]
                targets = [{k: v.to(device, non_blocking=True) for k, v in b[1].items()} for b in batch]
                loss_dict = model(images, targets)
                weights = {"loss_image": config.image_loss_weight}
                loss = sum(weights.get(k, 1.0) * v for k, v in loss_dict.items())
                if not torch.isfinite(loss):
                    log.warning("non-finite loss at step %d (%s); skipping the batch", state["global_step"],
                                {k: float(v) for k, v in loss_dict.items()})
                    optimizer.zero_grad(set_to_none=True)
                else:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                    optimizer.step()
                scheduler.step()
                state["step_in_epoch"] += 1
                state["global_step"] += 1
                state["train_seconds"] += time.time() - step_start
                bar.update(1)
                if state["global_step"] % config.log_every == 0:
                    row = {"step": state["global_step"], "epoch": state["epoch"], "lr": scheduler.get_last_lr()[0],
                           "loss": float(loss.detach()), **{k: round(float(v.detach()), 5) for k, v in loss_dict.items()},
                           "s_per_step": round(time.time() - step_start, 3), "time": time.time()}
                    losses_file.write(json.dumps(row) + "\n")
                    losses_file.flush()
                    log.info("step %d epoch %d loss %.4f (%s) lr %.2e", state["global_step"], state["epoch"] + 1,
                             float(loss.detach()), ", ".join(f"{k[5:]} {float(v.detach()):.3f}" for k, v in loss_dict.items()),
                             scheduler.get_last_lr()[0])
                out_of_time = config.max_minutes is not None and time.time() - session_start > config.max_minutes * 60
                if stop["signal"] is not None or out_of_time or state["global_step"] >= total_steps:
                    break
                if time.time() - last_ckpt > config.checkpoint_minutes * 60:
                    save_checkpoint()
                    last_ckpt = time.time()
                # no periodic validation in the budget's last 3 minutes: the final one follows anyway
                near_end = config.max_minutes is not None and (
                    time.time() - session_start > config.max_minutes * 60 - 180)
                if config.val_every_minutes and not near_end and time.time() - last_val > config.val_every_minutes * 60:
                    early = validate()
                    last_val = time.time()
                    save_checkpoint()
                    last_ckpt = time.time()
                    if early:
                        stop["signal"] = "early-stopping"
                        break
            bar.close()
            if state["step_in_epoch"] >= steps_per_epoch:
                state["epoch"] += 1
                state["step_in_epoch"] = 0
                if validate():
                    stop["signal"] = "early-stopping"
                last_val = time.time()
                save_checkpoint()
                last_ckpt = time.time()
            if stop["signal"] is not None:
                reason = "early stopping" if stop["signal"] == "early-stopping" else f"signal {stop['signal']}"
                break
            if config.max_minutes is not None and time.time() - session_start > config.max_minutes * 60:
                reason = "time budget"
                break
            if state["global_step"] >= total_steps:
                reason = "max steps"
                break
        else:
            reason = "max steps" if state["global_step"] >= total_steps else "epochs done"
        if reason in ("time budget", "max steps", "epochs done") or reason.startswith("signal"):
            # a final validation unless the epoch end just did one
            if state["step_in_epoch"] != 0 or not state["history"]:
                validate()
        save_checkpoint()
    finally:
        losses_file.close()
        stream.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    summary = {"reason": reason, "epoch": state["epoch"], "global_step": state["global_step"],
               "train_minutes": round(state["train_seconds"] / 60, 2), "best_macro_f1": state["best_score"],
               "checkpoint": str(out_dir / CHECKPOINT), "bundle": str(out_dir / BEST_BUNDLE)}
    log.info("finished (%s): %s", reason, summary)
    return summary


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
