"""Step 1's baseline: the shipped refiner (0.9.0's) on a run's cached val coarse masks (0.9.0's own), scored by
`shown_iou` as `train_refiner` scores the new one; with the new one's report beside it.

    .venv/bin/python models/experiments/refiner-0.9.0/baseline.py /work/data/tamper-v13 RUN_DIR OUT.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from inference.ml.coco import load_dataset  # noqa: E402
from inference.ml.model import load_bundle  # noqa: E402
from inference.ml.refiner import CLASSES, load_items, refiner_from_state, shown_iou  # noqa: E402


def main(dataset: str, run_dir: str, out_path: str) -> None:
    bundle = load_bundle("models/detector.pt")
    refiner = refiner_from_state(bundle["refiner"]).float()
    items = load_items(Path(run_dir) / "coarse-val.pkl")
    regions = sum(rec.verdict in CLASSES for rec in load_dataset(dataset, split="val"))
    shipped = shown_iou(refiner, items, regions, float(bundle["calibration"]["mask_threshold"]))
    report = {"shipped_refiner": shipped}
    new = Path(run_dir) / "refine.json"
    if new.is_file():
        report["continued_refiner"] = json.loads(new.read_text())["val"]
    best = {k: max(v["refined"].values()) for k, v in report.items()}
    report["best_cut_iou"] = best
    Path(out_path).write_text(json.dumps(report, indent=1))
    print(json.dumps(best), "unrefined", round(shipped["unrefined"], 4))


if __name__ == "__main__":
    main(*sys.argv[1:4])
