"""Mask refinement: a small U-Net that redraws, at the slice's own resolution, the region the detector shows.

Mask R-CNN predicts each mask on a 28 x 28 grid inside its box and pastes it back with bilinear interpolation,
from features pooled at a stride of 4 or more: outlines come out blurred, and a doctor is shown a region whose
edge was never looked at pixel by pixel. The refiner looks again. Its input, on a window around what is shown
(the shown detections' mask probabilities above ``WINDOW_PROB``, plus ``margin`` pixels):

- the slice (normalised as the detector normalises it) and its three SRM noise residuals (`forensics`), because
  a tampered region's edge lies in the noise as much as in the intensity;
- the coarse mask probability of what is shown (the highest of the shown detections' probabilities at each
  pixel), in the channel of the shown class (real_tumor, fake_added, fake_removed): a removal's region is the
  erased tumour plus a margin, an injection's the pasted tumour, a real tumour's the radiologist's outline.

It predicts a correction to the coarse mask's logit (its output starts as the coarse mask), so that it can only
redraw around what the detector found: it never adds a region, and it changes no verdict. The predictor then
cuts the refined probability at the calibration's ``refine_threshold`` (fitted on the validation split for mask
IoU), keeping for each shown detection the refined pixels within ``margin`` of its own coarse region.

Trained by `train_refiner` on the detector's own outputs on the training split (`collect_coarse`), stored in
the detector bundle under ``"refiner"``. No Django here.
"""
from __future__ import annotations

import logging
import math
import pickle
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from .forensics import IMAGE_MEAN, IMAGE_STD, TRUNCATION, srm_kernels
from .labels import CATEGORIES

log = logging.getLogger(__name__)

CLASSES = tuple(CATEGORIES.values())  # real_tumor, fake_added, fake_removed: the coarse mask's channels
WINDOW_PROB = 0.1  # coarse probability that counts as "shown" when the refiner's window is drawn
DOWNSAMPLINGS = 3  # the U-Net halves the window three times: window sides are multiples of 8


@dataclass
class RefinerConfig:
    widths: tuple[int, ...] = (16, 32, 64, 96)
    margin: int = 16  # pixels around the coarse region the refiner may redraw

    def to_dict(self) -> dict:
        data = asdict(self)
        data["widths"] = list(data["widths"])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RefinerConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "widths" in values:
            values["widths"] = tuple(values["widths"])
        return cls(**values)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


def unet_layers(cin: int, widths) -> tuple[nn.ModuleList, nn.ModuleList, nn.ModuleList]:
    """A U-Net's (down, up, merge) layers: one block per width, each halving the scale after the first."""
    down, up, merge = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
    for w in widths:
        down.append(_block(cin, w))
        cin = w
    for w_skip, w_low in zip(reversed(widths[:-1]), reversed(widths[1:])):
        up.append(nn.ConvTranspose2d(w_low, w_skip, 2, stride=2))
        merge.append(_block(2 * w_skip, w_skip))
    return down, up, merge


def unet_features(down: nn.ModuleList, up: nn.ModuleList, merge: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """The U-Net of `unet_layers` on ``x`` (sides multiples of 2 ** (len(down) - 1)): full-scale features."""
    skips = []
    for k, block in enumerate(down):
        if k:
            x = F.max_pool2d(x, 2)
        x = block(x)
        skips.append(x)
    for up_k, merge_k, skip in zip(up, merge, reversed(skips[:-1])):
        x = merge_k(torch.cat([up_k(x), skip], dim=1))
    return x


class MaskRefiner(nn.Module):
    """(grey in [0, 1], coarse (N, 3, H, W) in [0, 1]) -> refined mask logits (N, 1, H, W); H, W multiples of 8."""

    def __init__(self, config: RefinerConfig | None = None):
        super().__init__()
        self.config = config or RefinerConfig()
        widths = self.config.widths
        if len(widths) != DOWNSAMPLINGS + 1:
            raise ValueError(f"A refiner has {DOWNSAMPLINGS + 1} widths (one per scale); got {len(widths)}.")
        self.register_buffer("srm_weight", srm_kernels(), persistent=False)
        self.down, self.up, self.merge = unet_layers(1 + 3 + len(CLASSES), widths)
        self.head = nn.Conv2d(widths[0], 1, 1)
        nn.init.zeros_(self.head.weight)  # starts as the coarse mask itself
        nn.init.zeros_(self.head.bias)

    def forward(self, grey: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        residual = F.conv2d(grey * 255.0, self.srm_weight, padding=2).clamp(-TRUNCATION, TRUNCATION) / TRUNCATION
        x = torch.cat([(grey - IMAGE_MEAN) / IMAGE_STD, residual, coarse * 2.0 - 1.0], dim=1)
        x = unet_features(self.down, self.up, self.merge, x)
        prior = coarse.sum(dim=1, keepdim=True).clamp(0.02, 0.98)
        return self.head(x) + torch.log(prior / (1.0 - prior))


# --- Windows and inputs ------------------------------------------------------------------------------


def window_of(coarse: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1): the box of the coarse probability above WINDOW_PROB, grown by ``margin`` and to sides
    that are multiples of 8 where the slice allows; None when nothing is shown."""
    ys, xs = np.nonzero(coarse >= WINDOW_PROB)
    if ys.size == 0:
        return None
    h, w = coarse.shape
    out = []
    for lo, hi, size in ((ys.min() - margin, ys.max() + 1 + margin, h), (xs.min() - margin, xs.max() + 1 + margin, w)):
        lo, hi = max(0, int(lo)), min(size, int(hi))
        want = min(size, int(math.ceil((hi - lo) / 8) * 8))
        extra = want - (hi - lo)
        lo = max(0, lo - extra // 2)
        hi = min(size, lo + want)
        lo = max(0, hi - want)
        out += [lo, hi]
    return out[0], out[1], out[2], out[3]


def coarse_channels(coarse: np.ndarray, label: str) -> np.ndarray:
    """(3, h, w) float32: ``coarse`` (probabilities in [0, 1]) in the channel of ``label``, zeros elsewhere."""
    if label not in CLASSES:
        raise ValueError(f"A shown region is one of {', '.join(CLASSES)}; got {label!r}.")
    out = np.zeros((len(CLASSES),) + coarse.shape, dtype=np.float32)
    out[CLASSES.index(label)] = coarse
    return out


def _pad_to_8(t: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = t.shape[-2:]
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        t = F.pad(t, (0, pw, 0, ph), mode="replicate")
    return t, h, w


@torch.inference_mode()
def refine_probability(refiner: MaskRefiner, image: np.ndarray, coarse: np.ndarray, label: str,
                       device: str = "cpu") -> np.ndarray:
    """The refined mask probability (h, w) float32 of a uint8 slice whose shown region has the coarse
    probability ``coarse``; 0 outside the refiner's window."""
    refined = np.zeros(coarse.shape, dtype=np.float32)
    window = window_of(coarse, refiner.config.margin)
    if window is None:
        return refined
    y0, y1, x0, x1 = window
    grey = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1], dtype=np.float32) / 255.0)[None, None]
    chans = torch.from_numpy(coarse_channels(coarse[y0:y1, x0:x1], label))[None]
    x = torch.cat([grey, chans], dim=1).to(device)
    x, h, w = _pad_to_8(x)
    logits = refiner(x[:, :1], x[:, 1:])[0, 0, :h, :w]
    refined[y0:y1, x0:x1] = torch.sigmoid(logits).float().cpu().numpy()
    return refined


def near(mask: np.ndarray, margin: int) -> np.ndarray:
    """``mask`` grown by ``margin`` pixels (a square neighbourhood)."""
    if margin <= 0 or not mask.any():
        return mask.copy()
    return ndimage.maximum_filter(mask.astype(np.uint8), size=2 * margin + 1).astype(bool)


# --- Bundles ------------------------------------------------------------------------------------------


def refiner_state(refiner: MaskRefiner) -> dict:
    """What a detector bundle stores under ``"refiner"`` (float16 weights: the file stays small)."""
    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in refiner.state_dict().items()}
    return {"config": refiner.config.to_dict(), "state_dict": state}


def refiner_from_state(data: dict) -> MaskRefiner:
    refiner = MaskRefiner(RefinerConfig.from_dict(data.get("config", {})))
    refiner.load_state_dict(data["state_dict"])
    refiner.eval()
    return refiner


# --- Training data: the detector's own coarse masks ------------------------------------------------------


@dataclass
class CoarseItem:
    """One slice with a true region and what the detector would show there: the coarse probability (uint8,
    x 255) and the class it would be shown as. ``source`` says whether the verdict's own detections (``shown``:
    what the predictor shows) or the true class's (``truth_class``: more examples) gave it."""

    image: np.ndarray
    truth: np.ndarray
    coarse: np.ndarray
    label: str
    source: str
    record_id: int = 0


def coarse_of(item, verdict: str, calibration: dict) -> np.ndarray | None:
    """The highest mask probability (uint8) of the detections `predictor.shown_detections` would show for
    ``verdict`` in a `train.ValItem`; None when nothing would be shown."""
    from .predictor import shown_detections

    idx = shown_detections(verdict, item.detections, float(calibration["detection_threshold"]),
                           float(calibration["show_threshold"]), float(calibration["show_relative"]))
    if not idx:
        return None
    return item.mask_probs[idx].max(axis=0)


def collect_coarse(predictor, records, *, batch_size: int = 8, progress=None) -> list[CoarseItem]:
    """Run the detector (as shipped: its calibration, its views) over the records with a true region, and keep
    for each the coarse masks it gives: those of the verdict it reaches (what a doctor sees) and, where they
    differ and exist, those of the true class."""
    from .train import collect_views, item_verdict

    records = [rec for rec in records if rec.verdict in CLASSES]
    cal = predictor.calibration
    out: list[CoarseItem] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        plain, fused = collect_views(predictor, chunk, batch_size, flip=predictor.test_time_flip)
        items = fused if predictor.test_time_flip else plain
        for rec, it in zip(chunk, items):
            image = np.asarray(rec.pixels())
            if image.dtype != np.uint8:
                from .imaging import to_uint8
                image = to_uint8(image)
            verdict = item_verdict(it, cal, predictor.has_image_head)[0]
            seen = set()
            for label, source in ((verdict, "shown"), (rec.verdict, "truth_class")):
                if label not in CLASSES or label in seen:
                    continue
                seen.add(label)
                coarse = coarse_of(it, label, cal)
                if coarse is not None:
                    out.append(CoarseItem(image, it.truth, coarse, label, source, rec.id))
        if progress:
            progress(min(start + batch_size, len(records)), len(records))
    return out


def save_items(items: list[CoarseItem], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump([asdict(it) for it in items], fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return path


def load_items(path: str | Path) -> list[CoarseItem]:
    """Items written by `save_items` (a cache this project wrote itself)."""
    with open(path, "rb") as fh:
        return [CoarseItem(**d) for d in pickle.load(fh)]


# --- Training ------------------------------------------------------------------------------------------


@dataclass
class RefinerTrainConfig:
    minutes: float = 40.0
    batch_size: int = 16
    crop: int = 96
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0  # 0: torch's default
    config: RefinerConfig = field(default_factory=RefinerConfig)


def _crop_sample(it: CoarseItem, crop: int, margin: int, rng: np.random.Generator):
    """A (grey, coarse channels, truth) crop of ``crop`` x ``crop`` from the refiner's window on ``it``, with
    the augmentations the refiner must not depend on (mirror, quarter turns, the coarse mask's confidence)."""
    coarse = it.coarse.astype(np.float32) / 255.0
    if rng.random() < 0.5:  # the coarse mask sharper or softer than the detector made it
        coarse = coarse ** float(np.exp(rng.uniform(-0.7, 0.7)))
    if rng.random() < 0.3:
        shift = rng.integers(-2, 3, size=2)
        coarse = np.roll(coarse, tuple(int(s) for s in shift), axis=(0, 1))
    y0, y1, x0, x1 = window_of(coarse, margin) or (0, coarse.shape[0], 0, coarse.shape[1])
    h, w = coarse.shape
    size_y, size_x = min(crop, h), min(crop, w)

    def start(lo, hi, size, length):
        if hi - lo >= size:
            return int(rng.integers(lo, hi - size + 1))
        centre = (lo + hi) / 2 + rng.integers(-8, 9)
        return int(np.clip(round(centre - size / 2), 0, length - size))

    sy, sx = start(y0, y1, size_y, h), start(x0, x1, size_x, w)
    sl = (slice(sy, sy + size_y), slice(sx, sx + size_x))
    grey = it.image[sl].astype(np.float32) / 255.0
    chans = coarse_channels(coarse[sl], it.label)
    truth = it.truth[sl].astype(np.float32)
    # a window wider than the slice: replicate the edge (as refine_probability pads)
    if size_y < crop or size_x < crop:
        pad = ((0, crop - size_y), (0, crop - size_x))
        grey = np.pad(grey, pad, mode="edge")
        chans = np.stack([np.pad(c, pad, mode="edge") for c in chans])
        truth = np.pad(truth, pad, mode="edge")
    k = int(rng.integers(0, 4))
    flip = rng.random() < 0.5
    arrays = [grey[None], chans, truth[None]]
    arrays = [np.rot90(a, k, axes=(1, 2)) for a in arrays]
    if flip:
        arrays = [a[:, :, ::-1] for a in arrays]
    return [np.ascontiguousarray(a) for a in arrays]


def budget_lr(base: float, step: int, progress: float) -> float:
    """The learning rate of a time-budgeted run: 50 steps of warm-up, then a cosine over the budget's share
    ``progress`` (0 to 1) down to 2 % of ``base``."""
    return base * (min(1.0, (step + 1) / 50) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))))


def refiner_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus a soft Dice term per crop (the metric is an overlap)."""
    bce = F.binary_cross_entropy_with_logits(logits, truth)
    prob = torch.sigmoid(logits)
    inter = (prob * truth).flatten(1).sum(1)
    total = (prob + truth).flatten(1).sum(1)
    dice = 1.0 - (2.0 * inter + 1.0) / (total + 1.0)
    return bce + dice.mean()


def train_refiner(items: list[CoarseItem], cfg: RefinerTrainConfig, *, out_dir: str | Path,
                  val_items: list[CoarseItem] | None = None, resume: bool = True) -> MaskRefiner:
    """Train a refiner on ``items`` for ``cfg.minutes`` (AdamW, cosine schedule over time), checkpointing to
    ``out_dir/refiner-checkpoint.pt`` every few minutes and resuming from it. Logs the loss and, with
    ``val_items``, their mean IoU at 0.5 before and after refinement."""
    if not items:
        raise ValueError("No training items: the detector showed nothing on any slice with a region.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    refiner = MaskRefiner(cfg.config)
    opt = torch.optim.AdamW(refiner.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt = out_dir / "refiner-checkpoint.pt"
    step, used = 0, 0.0
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        refiner.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, used, rng = state["step"], state["seconds"], state["rng"]
        log.info("resumed at step %d (%.1f min used)", step, used / 60)
    budget = cfg.minutes * 60.0
    started, last_ckpt, losses = time.monotonic() - used, time.monotonic(), []
    refiner.train()
    while time.monotonic() - started < budget:
        progress = (time.monotonic() - started) / budget
        for group in opt.param_groups:
            group["lr"] = budget_lr(cfg.lr, step, progress)
        picks = rng.integers(0, len(items), size=cfg.batch_size)
        batch = [_crop_sample(items[i], cfg.crop, cfg.config.margin, rng) for i in picks]
        grey, chans, truth = (torch.from_numpy(np.stack([b[k] for b in batch])) for k in range(3))
        loss = refiner_loss(refiner(grey, chans), truth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            log.info("step %d  loss %.4f  lr %.2e  %.1f min", step, float(np.mean(losses[-50:])),
                     opt.param_groups[0]["lr"], (time.monotonic() - started) / 60)
        if time.monotonic() - last_ckpt > 180:
            _checkpoint(ckpt, refiner, opt, step, time.monotonic() - started, rng)
            last_ckpt = time.monotonic()
    _checkpoint(ckpt, refiner, opt, step, time.monotonic() - started, rng)
    refiner.eval()
    if val_items:
        before, after = refined_iou(refiner, val_items)
        log.info("validation (%d items, cut 0.5): mean IoU %.4f coarse -> %.4f refined", len(val_items), before, after)
    return refiner


def _checkpoint(path: Path, refiner, opt, step: int, seconds: float, rng) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": refiner.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": seconds,
                "rng": rng}, tmp)
    tmp.replace(path)


def refined_iou(refiner: MaskRefiner, items: list[CoarseItem], coarse_cut: float = 0.5,
                refined_cut: float = 0.5) -> tuple[float, float]:
    """Mean IoU with the truth of the coarse masks cut at ``coarse_cut`` and of the refined ones cut at
    ``refined_cut``, over ``items`` (a quick check; the calibration measures what a doctor is shown)."""
    from .metrics import mask_iou

    before, after = [], []
    for it in items:
        coarse = it.coarse.astype(np.float32) / 255.0
        refined = refine_probability(refiner, it.image, coarse, it.label)
        before.append(mask_iou(it.truth, coarse >= coarse_cut) or 0.0)
        after.append(mask_iou(it.truth, (refined >= refined_cut) & near(coarse >= WINDOW_PROB, refiner.config.margin)) or 0.0)
    return float(np.mean(before)), float(np.mean(after))


# --- Calibration and the bundle ------------------------------------------------------------------------

REFINE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def shown_iou(refiner: MaskRefiner | None, items: list[CoarseItem], n_regions: int, mask_threshold: float,
              cuts=REFINE_THRESHOLDS) -> dict:
    """Mean IoU over ``n_regions`` slices with a true region (slices where nothing is shown count 0, as in the
    evaluation) of what is shown (``items`` with source ``shown``): unrefined (the coarse masks cut at
    ``mask_threshold``) and, with a refiner, refined and cut at each of ``cuts``."""
    from .metrics import mask_iou

    shown = [it for it in items if it.source == "shown"]
    if n_regions <= 0 or len(shown) > n_regions:
        raise ValueError(f"{len(shown)} shown regions for {n_regions} slices with a region.")
    coarse_sum, refined_sum = 0.0, {c: 0.0 for c in cuts}
    for it in shown:
        coarse = it.coarse.astype(np.float32) / 255.0
        coarse_sum += mask_iou(it.truth, coarse >= mask_threshold) or 0.0
        if refiner is None:
            continue
        prob = refine_probability(refiner, it.image, coarse, it.label)
        allowed = near(coarse >= WINDOW_PROB, refiner.config.margin)
        for c in cuts:
            refined_sum[c] += mask_iou(it.truth, (prob >= c) & allowed) or 0.0
    out = {"n_regions": n_regions, "n_shown": len(shown), "unrefined": coarse_sum / n_regions}
    if refiner is not None:
        out["refined"] = {str(c): v / n_regions for c, v in refined_sum.items()}
    return out


def choose_refinement(report: dict, min_gain: float = 0.0) -> dict:
    """The calibration entries for a `shown_iou` report: refine at the cut with the best mean IoU if it beats
    the unrefined masks by more than ``min_gain`` (ties: the lower cut), else no refinement."""
    refined = report.get("refined") or {}
    if not refined:
        return {"refine": False}
    cut, iou = max(refined.items(), key=lambda kv: (round(kv[1], 9), -float(kv[0])))
    if iou > report["unrefined"] + min_gain:
        return {"refine": True, "refine_threshold": float(cut)}
    return {"refine": False}


def attach_refiner(bundle: dict, refiner: MaskRefiner, calibration: dict, *, version: str | None = None,
                   meta: dict | None = None) -> dict:
    """A copy of a detector bundle carrying ``refiner`` and the calibration entries of `choose_refinement`
    (the detector's weights and its other calibration untouched)."""
    out = dict(bundle)
    out["refiner"] = refiner_state(refiner)
    out["calibration"] = {**bundle.get("calibration", {}), **calibration}
    out["meta"] = {**bundle.get("meta", {}), **(meta or {})}
    if version:
        out["meta"]["version"] = version
    return out


def refine_bundle(weights: str | Path, dataset_dir: str | Path, out_dir: str | Path, *,
                  train_cfg: RefinerTrainConfig | None = None, version: str | None = None, device: str = "cpu",
                  train_split: str = "train", val_split: str = "val", limit: int | None = None,
                  progress=None) -> dict:
    """The whole run: the detector's coarse masks on ``train_split`` and ``val_split`` (cached in ``out_dir``),
    a refiner trained on the first, its cut chosen on the second (`shown_iou`, `choose_refinement`), and the
    bundle with it written to ``out_dir/detector.pt``. Returns the report (also ``out_dir/refine.json``)."""
    import json

    from .coco import load_dataset
    from .model import load_bundle, save_bundle
    from .predictor import Predictor

    if val_split == "test" or train_split == "test":
        raise ValueError("The refiner is trained and its cut chosen without the test split; use train and val.")
    train_cfg = train_cfg or RefinerTrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(weights)
    if bundle.get("refiner"):
        bundle = {k: v for k, v in bundle.items() if k != "refiner"}  # a new refiner replaces the old one
    predictor = Predictor.load(weights, device=device)
    predictor.refiner = None  # the coarse masks are the detector's own
    items, regions = {}, {}
    for split in (train_split, val_split):
        records = list(load_dataset(dataset_dir, split=split))[: limit or None]
        if not records:
            raise ValueError(f"The dataset {dataset_dir} has no image in split {split!r}.")
        regions[split] = sum(rec.verdict in CLASSES for rec in records)
        cache = out_dir / f"coarse-{split}.pkl"
        if cache.is_file():
            items[split] = load_items(cache)
            log.info("%s: %d coarse masks from %s", split, len(items[split]), cache)
            continue
        log.info("%s: the detector's coarse masks on %d slices", split, len(records))
        items[split] = collect_coarse(predictor, records,
                                      progress=(lambda i, n, s=split: progress(s, i, n)) if progress else None)
        save_items(items[split], cache)
    refiner = train_refiner(items[train_split], train_cfg, out_dir=out_dir, val_items=None)
    mask_threshold = float(predictor.calibration["mask_threshold"])
    val_report = shown_iou(refiner, items[val_split], regions[val_split], mask_threshold)
    chosen = choose_refinement(val_report)
    report = {
        "weights": str(weights), "dataset_dir": str(dataset_dir), "train_split": train_split,
        "val_split": val_split, "train_items": len(items[train_split]), "val": val_report, "chosen": chosen,
        "train": {**asdict(train_cfg), "config": train_cfg.config.to_dict()},
    }
    refined = attach_refiner(bundle, refiner, chosen, version=version,
                             meta={"refined_on": {"dataset_dir": str(dataset_dir), "split": train_split,
                                                  "chosen_on": val_split, "val": val_report}})
    save_bundle(refined, out_dir / "detector.pt")
    (out_dir / "refine.json").write_text(json.dumps(report, indent=2))
    return report
