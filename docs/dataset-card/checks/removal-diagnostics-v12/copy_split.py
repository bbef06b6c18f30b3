"""Which texture features tell a raw same-slice copy (and the shipped patch/gan fills) from tumour-free tissue:
inside-only statistics against the inside-minus-ring relation. Usage: copy_split.py LIMIT"""
import os, sys, numpy as np
sys.argv = [sys.argv[0], "0", "raw", "1", "nonoise"] + sys.argv[1:]
src_code = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "copy_variant.py")).read().split("rep = removal_check")[0]
exec(src_code)
from inference.ml.tamper import get_method, TamperRequest
from inference.ml.dataset import realism as R
from inference.ml.dataset.removal_check import measure_method, authentic_features, _grouped_auc
limit = int(sys.argv[5]) if len(sys.argv) > 5 else 300
ds = load_dataset(os.environ.get("TAMPER_DATA", "/work/data/tamper-v12"))
rng = np.random.default_rng(0)
sources = [r for r in ds if r.verdict == "real_tumor"]
sources = [sources[i] for i in sorted(rng.choice(len(sources), limit, replace=False))]
samples = []
for split in sorted({r.split for r in ds}):
    samples += R._load(ds, split, np.random.default_rng(0), None)
authentic = [s for s in samples if s.record.verdict == "no_tumor" and s.region is not None]
af, ag = authentic_features(authentic)
cols = {"all": list(range(10)), "inside only": [0, 1, 2, 3, 4, 6, 8], "inside-minus-ring only": [5, 7, 9]}
T.PROBABILITIES["noise"] = 0.0
for name, m in (("copy raw, no noise touch-up", Copy()),):
    feats, groups = measure_method(m, sources, lambda rec: (TamperRequest(image=rec.pixels(), tumour=rec.mask()), np.random.default_rng([0, rec.id])))
    x = np.r_[np.stack(feats["texture"]), af["texture"]]; y = np.r_[np.ones(len(groups)), np.zeros(len(ag))]; g = np.array(list(groups) + list(ag))
    print(name, len(groups), {k: round(_grouped_auc(x[:, c], y, g), 3) for k, c in cols.items()})
