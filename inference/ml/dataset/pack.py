"""Pack one split of a contract dataset into size-limited parts, and unpack them into a loadable dataset.

    python -m inference.ml.dataset.pack pack DATASET_DIR OUT_DIR [--split train[,val]] [--part-mb 55]
    python -m inference.ml.dataset.pack unpack OUT_DIR/part0 OUT_DIR/part1 ... --out DATASET_COPY

For a machine that takes only so many megabytes at a time (this workplace's GPU machines: 64 MiB a call). The
images travel as lossless WebP (a sixth smaller than the PNGs of a noisy 8-bit slice) in parts of at most
``--part-mb``; the last part carries annotations.json restricted to the split. Unpacking writes PNGs again, pixel
for pixel the same (checked on every image when packing), so training on the copy trains on the same data.
Needs only numpy and OpenCV.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np


def _pool() -> ProcessPoolExecutor:
    # spawned, not forked: a fork inherits OpenCV's thread pool, which deadlocks in the child once used
    return ProcessPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                               mp_context=multiprocessing.get_context("spawn"))


def _encode(path: Path) -> bytes:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"{path}: only 8-bit greyscale PNGs can be packed")
    ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])  # quality > 100: lossless
    data = buf.tobytes()
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if not ok or back is None or not np.array_equal(back, img):
        raise ValueError(f"{path}: the WebP round trip changed pixels")
    return data


def pack(dataset_dir: Path, out_dir: Path, split: str, part_bytes: int) -> list[Path]:
    annotations = json.loads((dataset_dir / "annotations.json").read_text())
    splits = {s.strip() for s in split.split(",") if s.strip()}  # "train,val": both travel together
    images = [im for im in annotations["images"] if im.get("split") in splits]
    missing = sorted(s for s in splits if not any(im.get("split") == s for im in images))
    if not images or missing:
        raise ValueError(f"{dataset_dir}: no image in split {(missing or [split])[0]!r}")
    ids = {im["id"] for im in images}
    subset = {**annotations, "images": images,
              "annotations": [a for a in annotations["annotations"] if a["image_id"] in ids]}
    parts, size = [out_dir / "part0"], 0
    (parts[0] / "images").mkdir(parents=True, exist_ok=True)
    with _pool() as pool:
        for im, data in zip(images, pool.map(_encode, [dataset_dir / im["file_name"] for im in images], chunksize=32)):
            if size + len(data) > part_bytes and size:
                parts.append(out_dir / f"part{len(parts)}")
                (parts[-1] / "images").mkdir(parents=True, exist_ok=True)
                size = 0
            (parts[-1] / "images" / (Path(im["file_name"]).stem + ".webp")).write_bytes(data)
            size += len(data)
    (parts[-1] / "annotations.json").write_text(json.dumps(subset))
    return parts


def _decode(args: tuple[Path, Path]) -> None:
    src, dest = args
    img = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
    if img is None or not cv2.imwrite(str(dest), img):
        raise ValueError(f"{src}: could not be unpacked")


def unpack(parts: list[Path], out: Path) -> int:
    found = [p / "annotations.json" for p in parts if (p / "annotations.json").is_file()]
    if len(found) != 1:
        raise ValueError("exactly one of the parts must hold annotations.json (the last one packed)")
    annotations = json.loads(found[0].read_text())
    (out / "images").mkdir(parents=True, exist_ok=True)
    webps = {w.stem: w for p in parts for w in (p / "images").glob("*.webp")}
    jobs = []
    for im in annotations["images"]:
        stem = Path(im["file_name"]).stem
        if stem not in webps:
            raise ValueError(f"{im['file_name']} is in annotations.json but in none of the parts")
        jobs.append((webps[stem], out / im["file_name"]))
    with _pool() as pool:
        list(pool.map(_decode, jobs, chunksize=32))
    (out / "annotations.json").write_text(json.dumps(annotations))
    return len(jobs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack")
    p.add_argument("dataset_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--split", default="train", help="a split, or several separated by commas")
    p.add_argument("--part-mb", type=float, default=55.0)
    u = sub.add_parser("unpack")
    u.add_argument("parts", type=Path, nargs="+")
    u.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.verb == "pack":
            parts = pack(args.dataset_dir, args.out_dir, args.split, int(args.part_mb * 1e6))
            for part in parts:
                print(part, sum(f.stat().st_size for f in part.rglob("*") if f.is_file()), "bytes")
        else:
            print(unpack(args.parts, args.out), "images in", args.out)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
