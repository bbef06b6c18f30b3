"""A removal's fill against its detail donor's own place and against its content before touch-ups: detail at the
texture detector's three scales, inside and relative to the ring (150 real tumours). Usage: diag_donor.py METHOD"""
import sys

import numpy as np

import common as C
from inference.ml.dataset import realism as R
from inference.ml.tamper import TamperRequest, get_method

m = get_method(sys.argv[1], "remove")
rows = []
for rec, img, res, donor, _ in C.removals(m, C.real_tumours(C.dataset(), 150), C.NOISE_ONLY):
    if donor is None:
        continue
    raw = m.apply(TamperRequest(image=img, tumour=rec.mask()), np.random.default_rng([0, rec.id]), touch_ups=False)
    rows.append(np.r_[R.texture_features(res.image, res.mask), R.texture_features(img, donor),
                      R.texture_features(raw.image, raw.mask)])
a = np.array(rows)
for name, o in (("fill", 0), ("donor place", 10), ("content, no touch-ups", 20)):
    v = a[:, o:o + 10]
    print(f"{name:22s} n {len(v)} in0.7-1.5 {v[:,4].mean():.3f} in1.5-3 {v[:,6].mean():.3f} in3-6 {v[:,8].mean():.3f} "
          f"shape {np.mean(v[:,6]-v[:,8]):+.3f} p5 {v[:,1].mean():.1f} dark {v[:,3].mean():.3f} "
          f"ring0.7-1.5 {np.mean(v[:,4]-v[:,5]):.3f} ring1.5-3 {np.mean(v[:,6]-v[:,7]):.3f} ring3-6 {np.mean(v[:,8]-v[:,9]):.3f}")
