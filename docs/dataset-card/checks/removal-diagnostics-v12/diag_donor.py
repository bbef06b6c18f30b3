import sys, numpy as np
import os; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), *[".."] * 4))
from scipy import ndimage as ndi
from inference.ml.coco import load_dataset
from inference.ml.tamper import get_method, TamperRequest, NotApplicable
from inference.ml.tamper import touchups as T
from inference.ml.dataset import realism as R
ds = load_dataset(os.environ.get("TAMPER_DATA", "/work/data/tamper-v12"))
src = [r for r in ds if r.verdict == "real_tumor"]
rng = np.random.default_rng(0)
src = [src[i] for i in sorted(rng.choice(len(src), 400, replace=False))]
cap = {}
orig_dd = T._detail_donor
def dd(*a, **k):
    best, t = orig_dd(*a, **k); cap["shift"] = best; return best, t
T._detail_donor = dd
m = get_method(sys.argv[1], "remove")
rows = []
for rec in src:
    cap.clear(); img = rec.pixels()
    try:
        res = m.apply(TamperRequest(image=img, tumour=rec.mask()), np.random.default_rng([0, rec.id]), probabilities={"resample": 0, "jpeg": 0, "seam_blur": 0, "noise": 1.0})
    except NotApplicable:
        continue
    if not cap.get("shift"): continue
    dy, dx = cap["shift"]; ys, xs = np.nonzero(res.mask); placed = np.zeros_like(res.mask)
    placed[ys + dy, xs + dx] = True
    f = R.texture_features(res.image, res.mask); d = R.texture_features(img, placed)
    # the edited content before touch-ups, no touch-ups at all
    raw = m.apply(TamperRequest(image=img, tumour=rec.mask()), np.random.default_rng([0, rec.id]), touch_ups=False)
    r = R.texture_features(raw.image, raw.mask)
    rows.append(np.r_[f, d, r])
a = np.array(rows)
for name, o in (("fill", 0), ("donor place", 10), ("content, no touch-ups", 20)):
    v = a[:, o:o + 10]
    print(f"{name:22s} n {len(v)} in0.7-1.5 {v[:,4].mean():.3f} in1.5-3 {v[:,6].mean():.3f} in3-6 {v[:,8].mean():.3f} shape {np.mean(v[:,6]-v[:,8]):+.3f} p5 {v[:,1].mean():.1f} dark {v[:,3].mean():.3f} ring0.7-1.5 {np.mean(v[:,4]-v[:,5]):.3f} ring1.5-3 {np.mean(v[:,6]-v[:,7]):.3f} ring3-6 {np.mean(v[:,8]-v[:,9]):.3f}")
