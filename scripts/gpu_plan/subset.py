"""Write DST/annotations.json: SRC's train split and its first N val images (the GPU plan's data), with DST/images
linked to SRC/images.  python scripts/gpu_plan/subset.py /work/data/tamper-v12 /work/data/tamper-v12-gpu [--val 300]"""
import argparse
import json
import os
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("src")
parser.add_argument("dst")
parser.add_argument("--val", type=int, default=300)
args = parser.parse_args()
src, dst = Path(args.src), Path(args.dst)
data = json.loads((src / "annotations.json").read_text())
val = [im for im in data["images"] if im.get("split") == "val"][: args.val]
keep = {im["id"] for im in data["images"] if im.get("split") == "train"} | {im["id"] for im in val}
data["images"] = [im for im in data["images"] if im["id"] in keep]
data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
dst.mkdir(parents=True, exist_ok=True)
if not (dst / "images").exists():
    os.symlink((src / "images").resolve(), dst / "images")
(dst / "annotations.json").write_text(json.dumps(data))
print(f"{len(data['images'])} images ({len(val)} val) -> {dst}")
