"""Perturbations the input check was not designed on: the model's accuracy and the share the check flags."""
from pathlib import Path as _P
HERE = _P(__file__).resolve().parent
ROOT = HERE.parents[2]

import json, sys, numpy as np, cv2
sys.path.insert(0, str(ROOT))
from inference.ml.coco import load_dataset
from inference.ml.evaluate import run_predictions, metrics_from_rows, input_range_summary
from inference.ml.input_check import load_reference
from inference.ml.predictor import Predictor

def noise(s):
    return lambda img, rng: np.clip(img.astype(np.float32) + rng.normal(0, s, img.shape), 0, 255).round().astype(np.uint8)
def jpeg(q):
    def f(img, rng):
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), q]); return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return f
def resample(factor, interp=cv2.INTER_LINEAR):
    def f(img, rng):
        h, w = img.shape
        small = cv2.resize(img, (int(round(w * factor)), int(round(h * factor))), interpolation=cv2.INTER_AREA if factor < 1 else interp)
        return cv2.resize(small, (w, h), interpolation=interp if factor < 1 else cv2.INTER_AREA)
    return f
def blur(s):
    return lambda img, rng: cv2.GaussianBlur(img, (0, 0), s)
def gamma(g):
    return lambda img, rng: np.clip(255 * (img / 255.0) ** g, 0, 255).round().astype(np.uint8)
P = {"none": None, "noise sigma 1": noise(1), "noise sigma 2": noise(2), "JPEG 90": jpeg(90), "JPEG 95": jpeg(95),
     "resample 0.9x bicubic": resample(0.9, cv2.INTER_CUBIC), "upsample 1.5x and back": resample(1.5),
     "gaussian blur 0.6 px": blur(0.6), "gamma 0.8": gamma(0.8)}
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
