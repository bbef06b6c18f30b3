"""Texture AUC of untouched tissue of tumour slices (the removal's chosen detail-donor place, and the mirror of the
region) against tumour-free slices at borrowed removal regions: what any same-slice copy starts from."""
import sys, numpy as np
import os; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), *[".."] * 4))
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "diag_donor.py")).read().split("m = get_method")[0])
from inference.ml.dataset.removal_check import authentic_features, _grouped_auc, FEATURES
samples = []
for split in ("train", "val", "test"):
    samples += R._load(ds, split, np.random.default_rng(0), None)
authentic = [s for s in samples if s.record.verdict == "no_tumor" and s.region is not None]
af, ag = authentic_features(authentic)
m = get_method(sys.argv[1], "remove")
fill, donor, groups = [], [], []
for rec in src[:400]:
    cap.clear(); img = rec.pixels()
    try:
        res = m.apply(TamperRequest(image=img, tumour=rec.mask()), np.random.default_rng([0, rec.id]))
    except NotApplicable:
        continue
    if not cap.get("shift"): continue
    dy, dx = cap["shift"]; ys, xs = np.nonzero(res.mask); placed = np.zeros_like(res.mask); placed[ys + dy, xs + dx] = True
    fill.append(R.texture_features(res.image, res.mask)); donor.append(R.texture_features(img, placed)); groups.append(rec.patient_id)
y = np.r_[np.ones(len(groups)), np.zeros(len(ag))]; g = np.array(groups + list(ag))
for name, x in ((sys.argv[1] + " fill", fill), ("its detail donor place, untouched", donor)):
    x = np.r_[np.stack(x), af["texture"]]
    print(name, len(groups), "texture AUC", round(_grouped_auc(x, y, g), 3), "stats only", round(_grouped_auc(x[:, :4], y, g), 3), "detail only", round(_grouped_auc(x[:, 4:], y, g), 3))
