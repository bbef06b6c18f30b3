"""Which texture features tell a raw same-slice copy (no noise touch-up) from tumour-free tissue: inside-only
statistics against the inside-minus-ring relation. Usage: copy_split.py [LIMIT]"""
import sys

import numpy as np

import common as C
from copy_variant import Copy
from inference.ml.dataset.removal_check import _grouped_auc, authentic_features, measure_method
from inference.ml.tamper import TamperRequest
from inference.ml.tamper import touchups as T

limit = int(sys.argv[1]) if len(sys.argv) > 1 else 300
ds = C.dataset()
af, ag = authentic_features(C.tumour_free(C.samples(ds, sorted({r.split for r in ds}))))
cols = {"all": list(range(10)), "inside only": [0, 1, 2, 3, 4, 6, 8], "inside-minus-ring only": [5, 7, 9]}
T.PROBABILITIES["noise"] = 0.0
feats, groups = measure_method(Copy("raw", 1.0), C.real_tumours(ds, limit), lambda rec: (
    TamperRequest(image=rec.pixels(), tumour=rec.mask()), np.random.default_rng([0, rec.id])))
x = np.r_[np.stack(feats["texture"]), af["texture"]]
y = np.r_[np.ones(len(groups)), np.zeros(len(ag))]
g = np.array(list(groups) + list(ag))
print("copy raw, no noise touch-up", len(groups), {k: round(_grouped_auc(x[:, c], y, g), 3) for k, c in cols.items()})
