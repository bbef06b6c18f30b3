"""Step 1 of RULE.md: 0.9.0's weights read with four test-time budgets (RPN proposals before / after NMS, detections
per slice), each reading (plain + mirror fused, as shipped) calibrated on the whole validation split with
`fit_calibration`; plus each budget's latency with the shipped predictor.

    .venv/bin/python models/experiments/test-time-budget/probe.py /work/data/tamper-v13 OUT.json
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

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from inference.ml.coco import SMALL_REGION_AREA, load_dataset, region_area  # noqa: E402
from inference.ml.imaging import to_uint8  # noqa: E402
from inference.ml.predictor import Predictor  # noqa: E402
from inference.ml.train import ValItem, _summary, fit_calibration, item_verdict, val_item  # noqa: E402

BUDGETS = {"base": (200, 50, 10), "b1000-100": (1000, 100, 10), "b1000-300-d20": (1000, 300, 20),
           "b1000-1000-d100": (1000, 1000, 100)}


def set_budget(predictor: Predictor, budget: tuple[int, int, int]) -> None:
    """The model's test-time budget: RPN top-n per level before NMS, proposals kept after it, detections kept."""
    pre, post, dets = budget
    predictor.model.rpn._pre_nms_top_n["testing"] = pre
    predictor.model.rpn._post_nms_top_n["testing"] = post
    predictor.model.roi_heads.detections_per_img = dets


MIN_THRESHOLD = 0.05  # the lowest detection threshold `fit_rule` tries: detections below it change no fit


def item(predictor, rec, out, s) -> ValItem:
    return val_item(predictor, rec, out, s, min_score=MIN_THRESHOLD)


def main(dataset: str, out_path: str) -> None:
    torch.set_num_threads(2)
    predictor = Predictor.load("models/detector.pt", device="cpu")
    predictor.calibration["refine"] = False  # the calibration reads coarse masks, as calibrate_detector does
    records = list(load_dataset(dataset, split="val"))[: int(os.environ.get("LIMIT", 0)) or None]
    small = [k for k, rec in enumerate(records) if 0 < region_area(rec) < SMALL_REGION_AREA]
    report = {"n": len(records), "n_small": len(small), "readings": {}}
    slices_all = [to_uint8(rec.pixels()) for rec in records]
    for name, budget in BUDGETS.items():
        set_budget(predictor, budget)
        items, plain_items, t0 = [], [], time.time()
        for start in range(0, len(records), 8):
            chunk, slices = records[start : start + 8], slices_all[start : start + 8]
            plain, fused = predictor.forward_views(slices, flip=True)
            items += [item(predictor, r, o, s) for r, o, s in zip(chunk, fused, slices)]
            plain_items += [item(predictor, r, o, s) for r, o, s in zip(chunk, plain, slices)]
        seconds = time.time() - t0
        cal, metrics = fit_calibration(items, predictor.has_image_head)
        _, plain_metrics = fit_calibration(plain_items, predictor.has_image_head)
        right = [item_verdict(it, cal, predictor.has_image_head)[0] == it.verdict for it in items]
        report["readings"][name] = {
            "budget": {"rpn_pre_nms_top_n_test": budget[0], "rpn_post_nms_top_n_test": budget[1],
                       "box_detections_per_img": budget[2]},
            **_summary(metrics), "plain_view": _summary(plain_metrics), "pass_seconds": seconds,
            "small_right": sum(right[k] for k in small), "right": [int(r) for r in right], "calibration": cal,
            "mean_detections_over_005": float(np.mean([len(it.detections) for it in items])),
        }
        print(name, {k: round(v, 4) for k, v in _summary(metrics).items()}, "small",
              report["readings"][name]["small_right"], "/", len(small), f"{seconds:.0f}s", flush=True)
        Path(out_path).write_text(json.dumps(report, indent=1))
    # latency: the shipped predictor (refiner on, its own calibration) one slice at a time, 30 val slices
    predictor.calibration["refine"] = True
    slices = slices_all[:30]
    for name, budget in BUDGETS.items():
        set_budget(predictor, budget)
        predictor.predict(slices[0])
        times = []
        for s in slices:
            t = time.perf_counter()
            predictor.predict(s)
            times.append(time.perf_counter() - t)
        report["readings"][name]["latency_p50"] = statistics.median(times)
        print(name, "latency p50", round(statistics.median(times), 3), flush=True)
    Path(out_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
