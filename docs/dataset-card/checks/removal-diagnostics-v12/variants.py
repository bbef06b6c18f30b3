"""removal_check under monkeypatched touch-up variants. Usage: variants.py VARIANT METHODS LIMIT"""
import sys, json, numpy as np
import os; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), *[".."] * 4))
from inference.ml.tamper import touchups as T
from inference.ml.tamper import get_method
from inference.ml.coco import load_dataset
from inference.ml.dataset.removal_check import removal_check

variant, methods, limit = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
opts = dict(kv.split("=") for kv in variant.split("+") if "=" in kv)
orig_dd = T._detail_donor
if "gain1" in variant:
    T._detail_donor = lambda *a, **k: (orig_dd(*a, **k)[0], None)
ms = []
for name in methods:
    m = get_method(name, "remove")
    if "feather" in opts:
        m.feather = float(opts["feather"])
    if "ds" in opts:
        m.detail_sigma = float(opts["ds"])
    ms.append(m)
rep = removal_check(load_dataset(os.environ.get("TAMPER_DATA", "/work/data/tamper-v12")), ms, seed=0, limit=limit)
out = {k: {kk: v[kk] for kk in ("n", "texture_auc", "border_noise_auc", "surroundings_auc")} for k, v in rep["methods"].items()}
print(variant, json.dumps(out))
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "variants.jsonl"), "a") as fh:
    fh.write(json.dumps({"variant": variant, "limit": limit, **out}) + "\n")
