"""removal_check under monkeypatched touch-up variants. Usage: variants.py VARIANT METHODS LIMIT"""
import json
import sys

import common as C
from inference.ml.dataset.removal_check import removal_check
from inference.ml.tamper import get_method
from inference.ml.tamper import touchups as T

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
rep = removal_check(C.dataset(), ms, seed=0, limit=limit)
out = {k: {kk: v[kk] for kk in ("n", "texture_auc", "border_noise_auc", "surroundings_auc")} for k, v in rep["methods"].items()}
print(variant, json.dumps(out))
C.record_variant({"variant": variant, "limit": limit, **out})
