"""Step 1 of RULE.md: 0.9.0 alone and with a second detector from git history, each member reading the slice and
its mirror (fused, as shipped), the two members' outputs then fused with `fuse_views` (weight 1/2 each); every
reading calibrated on the whole validation split with `fit_calibration`; plus each reading's latency.

    git show 6cdd93d:models/detector.pt > /work/runs/members/0.8.0.pt
    git show 70ba869:models/detector.pt > /work/runs/members/0.7.2.pt
    .venv/bin/python models/experiments/ensemble/probe.py /work/data/tamper-v13 /work/runs/members OUT.json
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
from inference.ml.predictor import Predictor, fuse_views  # noqa: E402
from inference.ml.train import ValItem, _summary, fit_calibration, item_verdict, val_item  # noqa: E402

PARTNERS = ("0.8.0", "0.7.2")
MIN_THRESHOLD = 0.05  # the lowest detection threshold `fit_rule` tries: detections below it change no fit


def item(predictor, rec, out, s) -> ValItem:
    return val_item(predictor, rec, out, s, min_score=MIN_THRESHOLD)


def main(dataset: str, members_dir: str, out_path: str) -> None:
    torch.set_num_threads(2)
    base = Predictor.load("models/detector.pt", device="cpu")
    base.calibration["refine"] = False  # the calibration reads coarse masks, as calibrate_detector does
    partners = {name: Predictor.load(Path(members_dir) / f"{name}.pt", device="cpu") for name in PARTNERS}
    records = list(load_dataset(dataset, split="val"))[: int(os.environ.get("LIMIT", 0)) or None]
    small = [k for k, rec in enumerate(records) if 0 < region_area(rec) < SMALL_REGION_AREA]
    names = ["base", *(f"alone-{p}" for p in PARTNERS), *(f"e-{p}" for p in PARTNERS)]
    items: dict[str, list[ValItem]] = {n: [] for n in names}
    t0 = time.time()
    for start in range(0, len(records), 8):
        chunk = records[start : start + 8]
        slices = [to_uint8(rec.pixels()) for rec in chunk]
        outs = {"base": base.forward(slices, flip=True)}
        for p, pred in partners.items():
            outs[f"alone-{p}"] = pred.forward(slices, flip=True)
            outs[f"e-{p}"] = [fuse_views(a, b) for a, b in zip(outs["base"], outs[f"alone-{p}"])]
        for n in names:
            items[n] += [item(base, r, o, s) for r, o, s in zip(chunk, outs[n], slices)]
        print(f"{start + len(chunk)}/{len(records)} {time.time() - t0:.0f}s", flush=True)
    report = {"n": len(records), "n_small": len(small), "pass_seconds": time.time() - t0, "readings": {}}
    for n in names:
        cal, metrics = fit_calibration(items[n], base.has_image_head)
        right = [item_verdict(it, cal, base.has_image_head)[0] == it.verdict for it in items[n]]
        report["readings"][n] = {**_summary(metrics), "per_class_f1": metrics.get("per_class_f1"),
                                 "small_right": sum(right[k] for k in small), "right": [int(r) for r in right],
                                 "calibration": cal}
        print(n, {k: round(v, 4) for k, v in _summary(metrics).items() if v is not None}, "small",
              report["readings"][n]["small_right"], "/", len(small), flush=True)
        Path(out_path).write_text(json.dumps(report, indent=1))
    base_right = np.array(report["readings"]["base"]["right"])
    for p in PARTNERS:
        other = np.array(report["readings"][f"alone-{p}"]["right"])
        report["readings"][f"alone-{p}"]["errors_shared_with_base"] = int(((1 - base_right) * (1 - other)).sum())
        report["readings"][f"alone-{p}"]["errors_base"] = int((1 - base_right).sum())
    # latency: one slice at a time, each member reading it and its mirror, fused; the base's refiner on
    base.calibration["refine"] = True
    slices = [to_uint8(rec.pixels()) for rec in records[:30]]
    for n in ("base", *(f"e-{p}" for p in PARTNERS)):
        members = [base] + ([partners[n[2:]]] if n != "base" else [])
        times = []
        for k, s in enumerate([slices[0], *slices]):
            t = time.perf_counter()
            outs = [m.forward([s], flip=True)[0] for m in members]
            out = outs[0] if len(outs) == 1 else fuse_views(outs[0], outs[1])
            base._postprocess_detailed(out, s)
            if k:
                times.append(time.perf_counter() - t)
        report["readings"][n]["latency_p50"] = statistics.median(times)
        print(n, "latency p50", round(statistics.median(times), 3), flush=True)
    Path(out_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
