"""Do removal fills reach their per-band structure targets? (120 real tumours). Usage: diag_targets.py METHOD..."""
import sys

import numpy as np

import common as C
from inference.ml.dataset import realism as R
from inference.ml.tamper import get_method
from inference.ml.tamper import touchups as T

sources = C.real_tumours(C.dataset(), 120)
for name in sys.argv[1:]:
    rows = []
    for _, _, res, _, targets in C.removals(get_method(name, "remove"), sources):
        if not targets:
            continue
        inside = T._detail_inside(res.mask)
        now = [T.log_std(T.dog(res.image.astype(float), lo, hi)[inside]) for lo, hi in T.detail_bands(6.0)[1:]]
        tex = R.texture_features(res.image, res.mask)
        rows.append(list(targets) + now + [tex[6], tex[8]])
    a = np.array(rows)
    print(name, len(a), "target(1-3,3-6)", a[:, 0:2].mean(0).round(3), "reached", a[:, 2:4].mean(0).round(3),
          "abs miss", np.abs(a[:, 2:4] - a[:, 0:2]).mean(0).round(3), "realism in1.5-3, in3-6", a[:, 4:6].mean(0).round(3))
