from pathlib import Path as _P
HERE = _P(__file__).resolve().parent
ROOT = HERE.parents[2]
import json, sys, numpy as np
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(HERE))
from heldout_defs import P
from inference.ml.coco import load_dataset
from inference.ml.evaluate import run_predictions, metrics_from_rows
from inference.ml.predictor import Predictor
recs = list(load_dataset("/work/data/tamper-v12", split="test"))[:100]
pred = Predictor.load(str(ROOT / "models" / "detector.pt"))
out = {}
for name in ("none", "noise sigma 1", "JPEG 95", "resample 0.9x bicubic", "gaussian blur 0.6 px"):
    rows, _, _ = run_predictions(pred, recs, perturb=P[name], progress=False)
    m = metrics_from_rows(rows); out[name] = m
    cm = np.array(m["confusion_matrix"]["matrix"])
    auth = cm[:2].sum(); fa = cm[:2, 2:].sum()
    tam = cm[2:].sum(); miss = cm[2:, :2].sum()
    print(name, "acc", round(m["accuracy"], 3), "authentic called tampered", f"{fa}/{auth}", "tampered called authentic", f"{miss}/{tam}", cm.tolist(), flush=True)
json.dump(out, open(str(HERE / "confusion.json"), "w"), indent=1)
