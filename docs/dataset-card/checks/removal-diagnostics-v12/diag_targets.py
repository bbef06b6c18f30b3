"""Do removal fills reach their per-band structure targets? (instrumented patch/gan on 120 real-tumour slices)"""
import sys, numpy as np
import os; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), *[".."] * 4))
from inference.ml.coco import load_dataset
from inference.ml.tamper import get_method, TamperRequest, NotApplicable
from inference.ml.tamper import touchups as T
from inference.ml.dataset import realism as R

ds = load_dataset(os.environ.get("TAMPER_DATA", "/work/data/tamper-v12"))
src = [r for r in ds if r.verdict == "real_tumor"]
rng = np.random.default_rng(0)
src = [src[i] for i in sorted(rng.choice(len(src), 120, replace=False))]
captured = {}
orig_dd = T._detail_donor
def dd(*a, **k):
    best, targets = orig_dd(*a, **k)
    captured["targets"] = targets
    return best, targets
T._detail_donor = dd
for name in sys.argv[1:]:
    m = get_method(name, "remove")
    rows = []
    for rec in src:
        captured.clear()
        try:
            res = m.apply(TamperRequest(image=rec.pixels(), tumour=rec.mask()), np.random.default_rng([0, rec.id]))
        except NotApplicable:
            continue
        t = captured.get("targets")
        if not t:
            continue
        inside = T._detail_inside(res.mask)
        now = [T.log_std(T.dog(res.image.astype(float), lo, hi)[inside]) for lo, hi in T.detail_bands(6.0)[1:]]
        tex = R.texture_features(res.image, res.mask)
        rows.append(list(t) + now + [tex[6], tex[8]])
    a = np.array(rows)
    print(name, len(a), "target(1-3,3-6)", a[:, 0:2].mean(0).round(3), "reached", a[:, 2:4].mean(0).round(3),
          "abs miss", np.abs(a[:, 2:4] - a[:, 0:2]).mean(0).round(3), "realism in1.5-3, in3-6", a[:, 4:6].mean(0).round(3))
