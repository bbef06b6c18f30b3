"""Where 0.9.0's small-region misses come from (val, after step 1): for each validation slice with a region under
500 px that the base reading gets wrong, the best score of a detection of the true class whose mask touches the
true region, under each budget; and the image head's probability of the true verdict.

    .venv/bin/python models/experiments/test-time-budget/small_misses.py /work/data/tamper-v13 VALIDATION.json OUT.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from inference.ml.coco import SMALL_REGION_AREA, load_dataset, region_area  # noqa: E402
from inference.ml.imaging import to_uint8  # noqa: E402
from inference.ml.labels import VERDICTS  # noqa: E402
from inference.ml.predictor import CATEGORIES, Predictor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe import BUDGETS, set_budget  # noqa: E402


def main(dataset: str, validation: str, out_path: str) -> None:
    torch.set_num_threads(2)
    report = json.loads(Path(validation).read_text())
    right = report["readings"]["base"]["right"]
    records = list(load_dataset(dataset, split="val"))
    misses = [k for k, rec in enumerate(records) if 0 < region_area(rec) < SMALL_REGION_AREA and not right[k]]
    predictor = Predictor.load("models/detector.pt", device="cpu")
    rows = []
    for k in misses:
        rec = records[k]
        truth = rec.mask()
        s = to_uint8(rec.pixels())
        row = {"index": k, "file": rec.file_name, "verdict": rec.verdict, "area": int(region_area(rec))}
        for name, budget in BUDGETS.items():
            set_budget(predictor, budget)
            _, fused = predictor.forward_views([s], flip=True)
            out = fused[0]
            masks = (out["masks"][:, 0] >= 0.5).cpu().numpy()
            labels = [CATEGORIES.get(int(c)) for c in out["labels"]]
            scores = out["scores"].float().cpu().numpy()
            touching = [i for i in range(len(scores)) if (masks[i] & truth).any()]
            best_true = max((float(scores[i]) for i in touching if labels[i] == rec.verdict), default=0.0)
            best_any = max(((float(scores[i]), labels[i]) for i in touching), default=(0.0, None))
            logits = out["image_logits"].float().cpu().numpy()
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            row[name] = {"best_true_class_score": round(best_true, 3), "best_touching": [round(best_any[0], 3),
                         best_any[1]], "image_head_true": round(float(probs[VERDICTS.index(rec.verdict)]), 3),
                         "n_detections": len(scores)}
        rows.append(row)
        print(row["verdict"], row["area"], {n: row[n]["best_true_class_score"] for n in BUDGETS},
              row["base"]["image_head_true"], flush=True)
    Path(out_path).write_text(json.dumps({"n_misses": len(rows), "rows": rows}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
