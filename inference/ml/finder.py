"""The tumour finder: a small U-Net that segments whatever looks like a tumour on a slice, real or injected.

Whether a slice shows a tumour at all is a question of content, not of forensics, and it is where the detector
errs most (real tumours of under 1500 pixels called tumour-free). The Mask R-CNN learns it beside the forensic
task with box-level losses; the finder learns only it, with a loss on every pixel, from the intensity alone:
its target is the union of the regions of ``real_tumor`` and ``fake_added`` slices (what shows a tumour) and is
empty on ``no_tumor`` and ``fake_removed`` slices (a removal's region shows none). Its answer is an input of the
learned verdict (`finder_features`); it never draws a region itself.

No Django here. Trained by `train_finder` (time budget, checkpoints every few minutes, resume, the best state
by pixel F1 on the validation split kept).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .forensics import IMAGE_MEAN, IMAGE_STD
from .refiner import budget_lr, refiner_loss, unet_features, unet_layers

log = logging.getLogger(__name__)

SHOWS_TUMOUR = ("real_tumor", "fake_added")
N_FEATURES = 4


@dataclass
class FinderConfig:
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)

    def to_dict(self) -> dict:
        return {"widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict) -> "FinderConfig":
        return cls(widths=tuple(data.get("widths", cls.widths)))


class TumourFinder(nn.Module):
    """grey (N, 1, H, W) in [0, 1] -> tumour logits (N, 1, H, W); any H, W (padded inside)."""

    def __init__(self, config: FinderConfig | None = None):
        super().__init__()
        self.config = config or FinderConfig()
        widths = self.config.widths
        self.down, self.up, self.merge = unet_layers(1, widths)
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        h, w = grey.shape[-2:]
        m = 2 ** (len(self.down) - 1)
        ph, pw = (-h) % m, (-w) % m
        x = (grey - IMAGE_MEAN) / IMAGE_STD
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.head(unet_features(self.down, self.up, self.merge, x))[..., :h, :w]


def finder_state(finder: TumourFinder) -> dict:
    return {"config": finder.config.to_dict(), "state_dict": {k: v.detach().cpu() for k, v in finder.state_dict().items()}}


def finder_from_state(data: dict) -> TumourFinder:
    finder = TumourFinder(FinderConfig.from_dict(data["config"]))
    finder.load_state_dict(data["state_dict"])
    return finder.eval()


def finder_target(rec) -> np.ndarray:
    """What the finder should mark on a dataset record: its regions if it shows a tumour, else nothing."""
    if rec.verdict in SHOWS_TUMOUR:
        return rec.mask()
    return np.zeros((rec.height, rec.width), dtype=bool)


@torch.no_grad()
def finder_probability(finder: TumourFinder, images: list[np.ndarray], *, flip: bool = True) -> list[np.ndarray]:
    """Each uint8 slice's tumour probability map (float32), averaged with the mirrored reading when ``flip``."""
    finder.eval()
    out = []
    for image in images:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / 255.0)[None, None]
        if flip:
            x = torch.cat([x, x.flip(-1)])
        p = torch.sigmoid(finder(x))
        if flip:
            p = 0.5 * (p[0:1] + p[1:2].flip(-1))
        out.append(p[0, 0].numpy())
    return out


def finder_features(prob: np.ndarray, labels, scores, boxes) -> np.ndarray:
    """The finder's four numbers for the learned verdict: its highest probability on the slice, log(1 + area at
    probability >= 0.5), and its highest probability inside the best real_tumor and the best fake_added box (0
    where the detector has none)."""
    out = np.zeros(N_FEATURES, dtype=np.float64)
    out[0] = float(prob.max()) if prob.size else 0.0
    out[1] = math.log1p(float((prob >= 0.5).sum()))
    scores = list(scores)
    labels = list(labels)
    for k, name in enumerate(("real_tumor", "fake_added")):
        idx = [i for i, lab in enumerate(labels) if lab == name]
        if not idx:
            continue
        best = max(idx, key=lambda i: scores[i])
        x0, y0, x1, y1 = (int(round(float(v))) for v in boxes[best])
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(prob.shape[1], max(x1, x0 + 1)), min(prob.shape[0], max(y1, y0 + 1))
        window = prob[y0:y1, x0:x1]
        out[2 + k] = float(window.max()) if window.size else 0.0
    return out


# --- Training ----------------------------------------------------------------------------------------


@dataclass
class FinderTrainConfig:
    minutes: float = 30.0
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0
    val_every_minutes: float = 4.0
    crop: int = 160  # train on crops of this side (0: whole slices), half of them around the target
    config: FinderConfig = field(default_factory=FinderConfig)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}
        return {**d, "config": self.config.to_dict()}


def _crop(image: np.ndarray, target: np.ndarray, size: int, rng: np.random.Generator):
    """A ``size`` square: around a random target pixel half of the time (where there is one), else anywhere."""
    h, w = image.shape
    if not size or (size >= h and size >= w):
        return image, target
    sh, sw = min(size, h), min(size, w)
    ys, xs = np.nonzero(target)
    if len(ys) and rng.random() < 0.5:
        k = int(rng.integers(len(ys)))
        cy, cx = int(ys[k]) + int(rng.integers(-sh // 3, sh // 3 + 1)), int(xs[k]) + int(rng.integers(-sw // 3, sw // 3 + 1))
    else:
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, left = int(np.clip(cy - sh // 2, 0, h - sh)), int(np.clip(cx - sw // 2, 0, w - sw))
    return image[top : top + sh, left : left + sw], target[top : top + sh, left : left + sw]


def _augment(image: np.ndarray, target: np.ndarray, rng: np.random.Generator,
             crop: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A crop, a mirror, a gamma and a contrast change (content, not noise: the finder reads intensity)."""
    image, t = _crop(image, target, crop, rng)
    x = image.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        x, t = x[:, ::-1], t[:, ::-1]
    x = np.clip(x, 0.0, 1.0) ** float(np.exp(rng.uniform(-0.25, 0.25)))
    c = float(rng.uniform(0.8, 1.2))
    x = np.clip((x - x.mean()) * c + x.mean(), 0.0, 1.0)
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(t, dtype=np.float32)


def pixel_f1(finder: TumourFinder, images: list[np.ndarray], targets: list[np.ndarray]) -> dict:
    """Pixel F1 at probability 0.5 over all slices together, and the mean per-slice Dice over slices with a target."""
    tp = fp = fn = 0
    dice = []
    for prob, t in zip(finder_probability(finder, images), targets):
        p = prob >= 0.5
        a, b, c = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
        tp, fp, fn = tp + a, fp + b, fn + c
        if t.any():
            dice.append(2 * a / max(1, 2 * a + b + c))
    f1 = 2 * tp / max(1, 2 * tp + fp + fn)
    return {"pixel_f1": f1, "mean_dice": float(np.mean(dice)) if dice else None, "slices": len(images)}


def train_finder(train_records, val_records, cfg: FinderTrainConfig, *, out_dir: str | Path) -> tuple[TumourFinder, dict]:
    """Train for ``cfg.minutes`` (AdamW, cosine over time), validating every ``val_every_minutes`` and keeping the
    best state by validation pixel F1 in ``out_dir/finder.pt``; checkpoints to ``out_dir/finder-checkpoint.pt``
    and resumes from it. Returns the best finder and its report."""
    from .imaging import to_uint8

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    images = [to_uint8(r.pixels()) for r in train_records]
    targets = [finder_target(r) for r in train_records]
    val_images = [to_uint8(r.pixels()) for r in val_records]
    val_targets = [finder_target(r) for r in val_records]
    finder = TumourFinder(cfg.config)
    opt = torch.optim.AdamW(finder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt, best_path = out_dir / "finder-checkpoint.pt", out_dir / "finder.pt"
    step, used, history, best = 0, 0.0, [], None
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        finder.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, used, rng, history, best = state["step"], state["seconds"], state["rng"], state["history"], state["best"]
        log.info("resumed at step %d (%.1f min used)", step, used / 60)
    budget = cfg.minutes * 60.0
    started = time.monotonic() - used
    last_val = time.monotonic()
    losses: list[float] = []

    def validate() -> None:
        nonlocal best
        report = {"step": step, "minutes": round((time.monotonic() - started) / 60, 2), **pixel_f1(finder, val_images, val_targets)}
        history.append(report)
        log.info("val step %d: pixel F1 %.4f, mean Dice %.4f", step, report["pixel_f1"], report["mean_dice"] or 0)
        if best is None or report["pixel_f1"] > best["pixel_f1"]:
            best = report
            torch.save({**finder_state(finder), "report": report, "train": cfg.to_dict()}, best_path)
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        torch.save({"model": finder.state_dict(), "opt": opt.state_dict(), "step": step,
                    "seconds": time.monotonic() - started, "rng": rng, "history": history, "best": best}, tmp)
        tmp.replace(ckpt)
        finder.train()

    finder.train()
    while time.monotonic() - started < budget:
        progress = (time.monotonic() - started) / budget
        for group in opt.param_groups:
            group["lr"] = budget_lr(cfg.lr, step, progress)
        picks = rng.integers(0, len(images), size=cfg.batch_size)
        batch = [_augment(images[i], targets[i], rng, cfg.crop) for i in picks]
        shapes = {b[0].shape for b in batch}
        if len(shapes) > 1:  # slices of other sizes: one size per batch
            batch = [b for b in batch if b[0].shape == batch[0][0].shape]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None]
        t = torch.from_numpy(np.stack([b[1] for b in batch]))[:, None]
        loss = refiner_loss(finder(x), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            log.info("step %d  loss %.4f  lr %.2e  %.1f min", step, float(np.mean(losses[-50:])),
                     opt.param_groups[0]["lr"], (time.monotonic() - started) / 60)
        if time.monotonic() - last_val > cfg.val_every_minutes * 60:
            validate()
            last_val = time.monotonic()
    validate()
    data = torch.load(best_path, map_location="cpu", weights_only=False)
    return finder_from_state(data), {"best": data["report"], "history": history, "steps": step}
