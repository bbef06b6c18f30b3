"""Tampering methods the detector never saw: how often the shipped model flags them, and where.

On a split of tamper-v12 (test by default: patients the model never saw), each authentic slice of the LGG FLAIR
corpus is tampered by methods that are in neither the dataset builder nor the shipped model's training:

- removals of each real tumour (its mask grown by 4 px), by a **harmonic fill** (the Laplace equation solved
  inside the region from its border: smooth, no texture) and the same **with noise** re-synthesised to the level
  measured in a ring 2-8 px around the region (what a careful attacker adds);
- injections into each tumour-free slice of a real tumour from another test patient's slice, kept at the donor's
  own place in the image (skipped when that place is not inside this head's brain tissue), by **OpenCV
  seamlessClone** (Poisson cloning with OpenCV's solver and its own mask handling, not the builder's blend) and by a
  **feathered paste** (alpha from a 2 px Gaussian edge, no intensity matching, no touch-ups).

Reported per attack: the share of the tampered slices flagged as tampered, the share given the right verdict, mean
IoU of what is shown with what changed, the mean absolute change of the region's pixels and the flagged share
among regions changed by at least 10 grey levels on average (visible) and below (faint: seamlessClone often washes
a bright tumour out); and the same slices untouched (their verdicts as authentic).

    .venv/bin/python models/experiments/heldout-methods/heldout.py /work/data/tamper-v12 [OUT.json] [--split val]
        [--weights BUNDLE]
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import ndimage as ndi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from inference.ml.coco import load_dataset  # noqa: E402
from inference.ml.imaging import to_uint8  # noqa: E402
from inference.ml.metrics import mask_iou  # noqa: E402
from inference.ml.predictor import Predictor  # noqa: E402
from inference.ml.tamper.anatomy import analyse  # noqa: E402

TAMPERED = ("fake_added", "fake_removed")
VISIBLE = 10.0  # grey levels: a region whose pixels changed by less than this on average is barely visible


def harmonic_fill(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``image`` with ``region`` replaced by the solution of Laplace's equation whose boundary values are the
    pixels around it (4-neighbour, direct sparse solve)."""
    img = image.astype(np.float64)
    ys, xs = np.nonzero(region)
    index = -np.ones(region.shape, dtype=np.int64)
    index[ys, xs] = np.arange(len(ys))
    rows, cols, vals = [], [], []
    rhs = np.zeros(len(ys))
    for k, (y, x) in enumerate(zip(ys, xs)):
        rows.append(k), cols.append(k), vals.append(4.0)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            yy, xx = min(max(y + dy, 0), region.shape[0] - 1), min(max(x + dx, 0), region.shape[1] - 1)
            if index[yy, xx] >= 0:
                rows.append(k), cols.append(int(index[yy, xx])), vals.append(-1.0)
            else:
                rhs[k] += img[yy, xx]
    solution = spla.spsolve(sp.csr_matrix((vals, (rows, cols)), shape=(len(ys), len(ys))), rhs)
    out = img.copy()
    out[ys, xs] = solution
    return out


def ring_noise(image: np.ndarray, region: np.ndarray) -> float:
    """The 1 px noise level (MAD of a high-pass residual) in the ring 2-8 px outside ``region``."""
    img = image.astype(np.float64)
    residual = img - ndi.gaussian_filter(img, 1.0)
    ring = ndi.binary_dilation(region, iterations=8) & ~ndi.binary_dilation(region, iterations=2)
    v = residual[ring]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size > 10 else 0.0


def remove_harmonic(image, tumour, rng, noise: bool):
    region = ndi.binary_dilation(tumour, iterations=4) & (image > 0)
    filled = harmonic_fill(image, region)
    if noise:
        # residual of the filter at sigma 1 underestimates white noise by about this factor
        sigma = ring_noise(image, region) / 0.6
        filled[region] += rng.normal(0.0, sigma, int(region.sum()))
    out = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
    return out, region | (out != image)


def inject(image, donor, donor_mask, how: str):
    if how == "seamless":
        ys, xs = np.nonzero(donor_mask)
        center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
        mask = ndi.binary_dilation(donor_mask, iterations=2).astype(np.uint8) * 255
        out = cv2.seamlessClone(cv2.cvtColor(donor, cv2.COLOR_GRAY2BGR), cv2.cvtColor(image, cv2.COLOR_GRAY2BGR),
                                mask, center, cv2.NORMAL_CLONE)[:, :, 0]
    else:
        alpha = np.clip(ndi.gaussian_filter(donor_mask.astype(np.float64), 2.0) * 2.0, 0.0, 1.0)
        out = np.clip(np.rint(alpha * donor + (1.0 - alpha) * image), 0, 255).astype(np.uint8)
    changed = out != image
    return out, changed | donor_mask


def main(dataset: str, out_path: str, split: str = "test", weights: str | None = None) -> None:
    import torch

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    recs = [r for r in load_dataset(dataset, split=split) if r.source == "lgg-flair"]
    tumours = [r for r in recs if r.verdict == "real_tumor"]
    healthy = [r for r in recs if r.verdict == "no_tumor"]
    if os.environ.get("LIMIT"):  # a quick check of the script
        tumours, healthy = tumours[: int(os.environ["LIMIT"])], healthy[: int(os.environ["LIMIT"])]
    predictor = Predictor.load(weights or HERE.parents[1] / "detector.pt", device="cpu")
    cases = {name: [] for name in ("harmonic", "harmonic+noise", "seamlessClone", "feathered paste")}
    originals = []  # (slice, verdict)
    items_src = {name: [] for name in cases}  # each tampered slice's untouched original
    for rec in tumours:
        img, mask = to_uint8(rec.pixels()), rec.mask()
        originals.append((img, "real_tumor"))
        for name, noise in (("harmonic", False), ("harmonic+noise", True)):
            cases[name].append((*remove_harmonic(img, mask, rng, noise), "fake_removed"))
            items_src[name].append(img)
    for rec in healthy:
        img = to_uint8(rec.pixels())
        originals.append((img, "no_tumor"))
        interior = analyse(img).interior
        for k in rng.permutation(len(tumours))[:40]:
            donor = tumours[k]
            dmask = donor.mask()
            if donor.patient_id == rec.patient_id or not dmask.any() or interior[dmask].mean() < 0.95:
                continue
            dimg = to_uint8(donor.pixels())
            for name, how in (("seamlessClone", "seamless"), ("feathered paste", "paste")):
                cases[name].append((*inject(img, dimg, dmask, how), "fake_added"))
                items_src[name].append(img)
            break
    report = {"dataset": dataset, "split": split, "source": "lgg-flair", "model": predictor.info, "attacks": {}}
    t0 = time.time()
    preds = predictor.predict_batch([img for img, _ in originals])
    report["authentic"] = {"n": len(originals),
                           "flagged": float(np.mean([p.verdict in TAMPERED for p in preds])),
                           "right": float(np.mean([p.verdict == v for p, (_, v) in zip(preds, originals)]))}
    print("authentic", report["authentic"], flush=True)
    for name, items in cases.items():
        preds = predictor.predict_batch([img for img, _, _ in items])
        ious = []
        for p, (_, region, _) in zip(preds, items):
            shown = np.zeros_like(region)
            for inst in p.instances:
                shown |= inst.mask
            ious.append(mask_iou(region, shown) if p.verdict in TAMPERED else 0.0)
        verdicts = [p.verdict for p in preds]
        change = [float(np.abs(img.astype(float) - o.astype(float))[r].mean())
                  for (img, r, _), o in zip(items, items_src[name])]
        visible = [c >= VISIBLE for c in change]
        report["attacks"][name] = {
            "n": len(items), "kind": items[0][2],
            "flagged": float(np.mean([v in TAMPERED for v in verdicts])),
            "right": float(np.mean([v == t for v, (_, _, t) in zip(verdicts, items)])),
            "mean_iou": float(np.mean(ious)),
            "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
            "region_px_median": float(np.median([r.sum() for _, r, _ in items])),
            "mean_abs_change_median": float(np.median(change)),
            "visible_n": int(sum(visible)),
            "visible_flagged": float(np.mean([v in TAMPERED for v, ok in zip(verdicts, visible) if ok])) if any(visible) else None,
            "faint_flagged": float(np.mean([v in TAMPERED for v, ok in zip(verdicts, visible) if not ok])) if not all(visible) else None,
        }
        print(name, {k: v for k, v in report["attacks"][name].items()}, f"{time.time() - t0:.0f}s", flush=True)
    Path(out_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("out", nargs="?", default=str(HERE / "heldout.json"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--weights", default=None, help="a detector bundle (default: the shipped one)")
    args = parser.parse_args()
    main(args.dataset, args.out, args.split, args.weights)
