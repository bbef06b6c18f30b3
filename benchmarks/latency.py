"""Latency and throughput of the detector by backbone and input size, single slice and batched.

    .venv/bin/python benchmarks/latency.py --out benchmarks/results.md [--backbones mobilenet_v3 resnet18]
        [--sizes 256 512] [--batch 4] [--repeats 10] [--threads 2] [--weights models/detector.pt ...]
        [--device cuda]   # on a GPU: results-gpu.md

Random weights (no training needed) through the real Predictor (preprocessing and post-processing included),
after warm-up. A random model's detections are not a trained model's, so with --weights the shipped bundle is
measured too. Writes a markdown table (and prints it). Not a test: run it when the CPU is otherwise idle.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from inference.ml.model import ModelConfig, build_model, make_bundle, save_bundle  # noqa: E402
from inference.ml.predictor import Predictor  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "ml_model" / "lgg_TCGA_CS_4941_14.png"


def _slice(size: int) -> np.ndarray:
    import cv2

    from inference.ml.coco import read_png

    img = read_png(SAMPLE)
    return img if img.shape == (size, size) else cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def measure(predictor: Predictor, image: np.ndarray, batch: int, repeats: int) -> dict:
    # every call ends with the outputs back on the CPU (numpy masks), so a GPU's work is finished when it returns
    for _ in range(3):
        predictor.predict(image)
    single = []
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.predict(image)
        single.append(time.perf_counter() - t)
    predictor.batch_size = batch
    batched = []
    for _ in range(max(2, repeats // 2)):
        t = time.perf_counter()
        predictor.predict_batch([image] * batch)
        batched.append(time.perf_counter() - t)
    return {
        "p50": float(np.percentile(single, 50)),
        "p95": float(np.percentile(single, 95)),
        "batched_per_slice": float(np.median(batched)) / batch,
        "throughput": batch / float(np.median(batched)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["tiny", "mobilenet_v3", "resnet18", "resnet34", "resnet50"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", nargs="*", default=[], help="also measure these bundles")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--native", action="store_true",
                        help="run at each size natively (min_size=size) instead of the default resize to 256")
    parser.add_argument("--out", default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        candidates = []
        for backbone in args.backbones:
            candidates.append((backbone, None))
        candidates += [("bundle", w) for w in args.weights]
        for backbone, weights in candidates:
            for size in args.sizes:
                if weights is None:
                    torch.manual_seed(0)
                    config = ModelConfig(backbone=backbone)
                    if args.native:
                        config.min_size, config.max_size = size, max(size, config.max_size)
                    path = save_bundle(make_bundle(build_model(config).eval(), config, name=backbone, version="bench"),
                                       Path(tmp) / f"{backbone}.pt")
                else:
                    path = weights
                predictor = Predictor.load(path, device=args.device)
                params = sum(p.numel() for p in predictor.model.parameters()) / 1e6
                # a bundle calibrated to read each slice's mirror too is measured as shipped and with one view
                readings = [True, False] if predictor.test_time_flip else [False]
                for flip in readings:
                    predictor.calibration["test_time_flip"] = flip
                    result = measure(predictor, _slice(size), args.batch, args.repeats)
                    label = backbone if weights is None else f"{predictor.name} {predictor.version}"
                    if len(readings) > 1:
                        label += " (slice + mirror, as shipped)" if flip else " (one view)"
                    rows.append((label, size, params, result))
                    print(f"{label:28s} {size:4d}px  p50 {result['p50']:.3f}s  p95 {result['p95']:.3f}s  "
                          f"batched {result['batched_per_slice']:.3f}s/slice", flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    on_gpu = args.device.startswith("cuda")
    where = f"GPU ({torch.cuda.get_device_name(args.device)})" if on_gpu else "CPU"
    lines = [
        f"# Detector latency on {where}",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; {args.threads} CPU threads; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; load average at the end "
        f"{load:.1f} (other work on the machine inflates these numbers).",
        f"Through `Predictor.predict` (windowing, model, masks, verdict); {args.repeats} runs after 3 warm-up runs; "
        f"batched = `predict_batch` of {args.batch}. Inputs are resized so the shorter side is "
        f"{'the input size' if args.native else '256'} (the model's min_size).",
        "",
        "| model | input | parameters (M) | p50 s/slice | p95 s/slice | batched s/slice | slices/s (batched) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, size, params, r in rows:
        lines.append(f"| {label} | {size} x {size} | {params:.1f} | {r['p50']:.3f} | {r['p95']:.3f} | "
                     f"{r['batched_per_slice']:.3f} | {r['throughput']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
