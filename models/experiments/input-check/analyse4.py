from pathlib import Path as _P
HERE = _P(__file__).resolve().parent
ROOT = HERE.parents[2]
import json, numpy as np, itertools
tr = [r["clean"] for r in json.load(open(str(HERE / "feats4-train.json"))) if r["clean"]]
te = json.load(open(str(HERE / "feats4-test.json")))
conds = [k for k in te[0] if k not in ("source", "patient")]
def vec(d, keys):
    out = []
    for k in keys:
        v = d[k]
        out.append(np.log(max(v, 1e-3)) if k not in ("corr1",) else v)
    return np.array(out)
def run(keys, q=99.5):
    X = np.stack([vec(d, keys) for d in tr]); mu = X.mean(0); C = np.cov(X.T) + 1e-6 * np.eye(len(keys)); Ci = np.linalg.inv(C)
    dist = lambda x: float(np.sqrt((x - mu) @ Ci @ (x - mu)))
    thr = np.percentile([dist(x) for x in X], q)
    rates = {}
    for c in conds:
        ds = [dist(vec(r[c], keys)) for r in te if r[c]]
        rates[c] = np.mean(np.array(ds) > thr)
    return thr, rates
for keys in (["lap"], ["lap", "b12"], ["lap", "b12", "b24"], ["lap", "r1", "b12", "b24"], ["lap", "b12", "b24", "corr1"],
             ["lap", "r1", "b12", "b24", "corr1", "block"], ["lap", "b12", "b24", "corr1", "block", "spread"]):
    thr, rates = run(keys)
    print("+".join(keys), f"thr {thr:.2f}", " ".join(f"{c}:{v:.2f}" for c, v in rates.items()))
