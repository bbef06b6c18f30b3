"""Which texture features tell v12 removals from tumour-free slices (all splits pooled, grouped 5-fold CV)."""
import numpy as np

import common as C
from inference.ml.dataset import realism as R
from inference.ml.dataset.removal_check import _grouped_auc

samples = C.samples(C.dataset(), ("train", "val", "test"))
rem = [s for s in samples if s.record.verdict == "fake_removed"]
auth = C.tumour_free(samples)
X = {}
for name, group in (("rem", rem), ("auth", auth)):
    X[name] = np.stack([R.texture_features(s.image, s.region) for s in group])
meth = np.array([s.record.method for s in rem])
print("methods", {m: int((meth == m).sum()) for m in set(meth)})
names = ["std", "p5", "p95", "dark"] + [f"{k}{b}" for b in ("0.7-1.5", "1.5-3", "3-6") for k in ("in", "diff")]
g_rem = np.array([s.record.patient_id for s in rem]); g_auth = np.array([s.record.patient_id for s in auth])
def auc(cols, sel):
    x = np.r_[X["rem"][sel][:, cols], X["auth"][:, cols]]
    y = np.r_[np.ones(sel.sum()), np.zeros(len(auth))]
    g = np.r_[g_rem[sel], g_auth]
    return _grouped_auc(x, y, g)
for m in sorted(set(meth)):
    sel = meth == m
    out = {"all": auc(list(range(10)), sel),
           "inside only (stats + in)": auc([0, 1, 2, 3, 4, 6, 8], sel),
           "detail in only": auc([4, 6, 8], sel),
           "stats only": auc([0, 1, 2, 3], sel),
           "detail in+diff": auc([4, 5, 6, 7, 8, 9], sel)}
    print(m, {k: round(v, 3) for k, v in out.items()})
    for j, n in enumerate(names):
        print("   ", n, round(auc([j], sel), 3), "rem mean", round(X["rem"][sel][:, j].mean(), 3), "auth", round(X["auth"][:, j].mean(), 3))

# the spectral shape alone, and structure gains from provenance
for m in sorted(set(meth)):
    sel = meth == m
    s = X["rem"][sel][:, 6] - X["rem"][sel][:, 8]; a = X["auth"][:, 6] - X["auth"][:, 8]
    print(m, "in1.5-3 minus in3-6 AUC", round(auc([6, 8], sel), 3), "mean", round(s.mean(), 3), round(a.mean(), 3))
    gains = []
    for smp in np.array(rem)[sel]:
        tu = (smp.record.extra.get("provenance") or {}).get("params", {}).get("touch_ups", {})
        n = tu.get("noise", {})
        if "structure_gain" in n:
            gains.append(n["structure_gain"])
    gains = np.array(gains)
    if len(gains):
        print("   structure gains n", len(gains), "median", np.median(gains, 0).round(2), "p10", np.percentile(gains, 10, 0).round(2), "p90", np.percentile(gains, 90, 0).round(2))
