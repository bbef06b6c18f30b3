"""Step 1 of RULE.md: 0.9.0's shipped reading (plain + mirror) against the same fused with one enlarged view, each
calibrated on the whole validation split with `fit_calibration`; plus the extra view's CPU cost.

    .venv/bin/python models/experiments/test-time-scale/probe.py /work/data/tamper-v12 OUT.json
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from inference.ml.coco import SMALL_REGION_AREA, load_dataset, region_area  # noqa: E402
from inference.ml.imaging import to_uint8  # noqa: E402
from inference.ml.predictor import Predictor, fuse_views, slice_tensor  # noqa: E402
from inference.ml.train import ValItem, _summary, fit_calibration, item_verdict  # noqa: E402

CANDIDATES = {"x1.5-bilinear": (384, "bilinear"), "x2-bilinear": (512, "bilinear"), "x2-nearest": (512, "nearest")}


def enlarged(predictor: Predictor, tensors: list[torch.Tensor], size: int, mode: str) -> list[dict]:
    """The model's outputs on enlarged copies of 256 x 256 slices, in the slices' own coordinates."""
    transform = predictor.model.transform
    saved = transform.min_size, transform.max_size
    transform.min_size, transform.max_size = (size,), max(2 * size, 512)
    try:
        with torch.inference_mode():
            if mode == "bilinear":  # torchvision's transform enlarges; its postprocess maps back
                return predictor.model(tensors)
            factor = size // tensors[0].shape[-1]
            big = [t.repeat_interleave(factor, -1).repeat_interleave(factor, -2) for t in tensors]
            outs = predictor.model(big)
            return [{**o, "boxes": o["boxes"] / factor,
                     "masks": F.avg_pool2d(o["masks"], factor) if len(o["masks"]) else o["masks"][..., ::factor, ::factor]}
                    for o in outs]
    finally:
        transform.min_size, transform.max_size = saved


def item(predictor, rec, out, s) -> ValItem:
    _, detections = predictor._postprocess_detailed(out, s)
    probs = (out["masks"][:, 0].float().cpu().numpy() * 255.0).round().astype(np.uint8)
    return ValItem(rec.verdict, rec.mask(), out["image_logits"].float().cpu().numpy(), detections, probs)


def main(dataset: str, out_path: str) -> None:
    torch.set_num_threads(2)
    predictor = Predictor.load("models/detector.pt", device="cpu")
    predictor.calibration["refine"] = False  # the calibration reads coarse masks, as calibrate_detector does
    records = list(load_dataset(dataset, split="val"))[: int(os.environ.get("LIMIT", 0)) or None]
    readings = {"flip": [], **{name: [] for name in CANDIDATES}}
    t0 = time.time()
    for start in range(0, len(records), 8):
        chunk = records[start : start + 8]
        slices = [to_uint8(rec.pixels()) for rec in chunk]
        _, fused = predictor.forward_views(slices, flip=True)
        readings["flip"] += [item(predictor, r, o, s) for r, o, s in zip(chunk, fused, slices)]
        tensors = [slice_tensor(s) for s in slices]
        for name, (size, mode) in CANDIDATES.items():
            big = enlarged(predictor, tensors, size, mode)
            readings[name] += [item(predictor, r, fuse_views(f, b), s) for r, f, b, s in zip(chunk, fused, big, slices)]
        print(f"{start + len(chunk)}/{len(records)} {time.time() - t0:.0f}s", flush=True)
    small = [k for k, rec in enumerate(records) if 0 < region_area(rec) < SMALL_REGION_AREA]
    small_real = [k for k in small if records[k].verdict == "real_tumor"]
    report = {"n": len(records), "n_small": len(small), "n_small_real": len(small_real), "readings": {}}
    for name, items in readings.items():
        cal, metrics = fit_calibration(items, predictor.has_image_head)
        right = [item_verdict(it, cal, predictor.has_image_head)[0] == it.verdict for it in items]
        report["readings"][name] = {**_summary(metrics), "small_right": sum(right[k] for k in small),
                                    "small_real_right": sum(right[k] for k in small_real),
                                    "right": [int(r) for r in right], "calibration": cal}
        print(name, {k: round(v, 4) for k, v in _summary(metrics).items()},
              "small", report["readings"][name]["small_right"], "/", len(small), flush=True)
    # cost: the shipped predictor (refiner on) one slice at a time, and each extra view alone, on 30 val slices
    predictor.calibration["refine"] = True
    slices = [to_uint8(rec.pixels()) for rec in records[:30]]
    predictor.predict(slices[0])
    base = []
    for s in slices:
        t = time.perf_counter()
        predictor.predict(s)
        base.append(time.perf_counter() - t)
    report["latency_p50_shipped"] = statistics.median(base)
    for name, (size, mode) in CANDIDATES.items():
        enlarged(predictor, [slice_tensor(slices[0])], size, mode)
        extra = []
        for s in slices:
            t = time.perf_counter()
            enlarged(predictor, [slice_tensor(s)], size, mode)
            extra.append(time.perf_counter() - t)
        report["readings"][name]["extra_view_p50"] = statistics.median(extra)
        report["readings"][name]["latency_p50_estimate"] = statistics.median([a + b for a, b in zip(base, extra)])
        print(name, "latency estimate", round(report["readings"][name]["latency_p50_estimate"], 3), flush=True)
    Path(out_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
