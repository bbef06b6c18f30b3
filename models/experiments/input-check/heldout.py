"""Perturbations the input check was not designed on: the model's accuracy and the share the check flags."""
from pathlib import Path as _P
HERE = _P(__file__).resolve().parent
ROOT = HERE.parents[2]

import json, sys, numpy as np, cv2
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(HERE))
from inference.ml.coco import load_dataset
from inference.ml.evaluate import run_predictions, metrics_from_rows, input_range_summary
from inference.ml.input_check import load_reference
from inference.ml.predictor import Predictor

from heldout_defs import P  # the perturbations, shared with confusion.py
recs = list(load_dataset("/work/data/tamper-v12", split="test"))[:100]
pred = Predictor.load(str(ROOT / "models" / "detector.pt"))
ref = load_reference()
out = {}
for name, fn in P.items():
    st = []
    rows, _, _ = run_predictions(pred, recs, perturb=fn, progress=False, statistics=st, desc=name)
    m = metrics_from_rows(rows)
    out[name] = {"accuracy": m["accuracy"], "tamper_auc": m["tamper_auc"], "input_range": input_range_summary(rows, st, ref),
                 "median_noise": float(np.median([s["noise"] for s in st if s])), "median_blockiness": float(np.median([s["blockiness"] for s in st if s]))}
    print(name, round(m["accuracy"], 3), "flagged", out[name]["input_range"]["outside"]["share"], round(out[name]["median_noise"], 3), round(out[name]["median_blockiness"], 3), flush=True)
json.dump(out, open(str(HERE / "heldout.json"), "w"), indent=2)
