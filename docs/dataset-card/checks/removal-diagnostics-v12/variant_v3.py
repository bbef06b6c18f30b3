"""removal_check with V3 targets: the donor interior's band shape kept, shifted by one offset (mean over bands of
lesion ring minus donor ring). Usage: variant_v3.py METHODS LIMIT OUT"""
import json
import sys

import numpy as np

import common as C
from inference.ml.dataset.removal_check import removal_check
from inference.ml.tamper import touchups as T

orig = T._detail_donor
def dd(mask, ctx, shifts, rng, detail_sigma):
    best, targets = orig(mask, ctx, shifts, rng, detail_sigma)
    if targets is None or best is None:
        return best, targets
    # recompute the pieces (same donor) to get donor inside and rings per band
    o = ctx.original.astype(np.float64)
    healthy = ctx.head & ~ctx.forbidden
    own = T.ring(mask, *T.DETAIL_RING); around = own & healthy
    if around.sum() < 20: around = own & ctx.head
    bands = [T.dog(o, lo, hi) for lo, hi in T.detail_bands(detail_sigma)]
    ref = [T.log_std(b[around]) for b in bands]
    placed = C.shifted(mask, best)
    d_in = [T.log_std(b[T._detail_inside(placed)]) for b in bands[1:]]
    d_ring = [T.log_std(b[T.ring(placed, *T.DETAIL_RING) & healthy]) for b in bands[1:]]
    off = float(np.mean([r - d for r, d in zip(ref[1:], d_ring)]))
    new = [di + off for di in d_in]
    return best, (new if all(np.isfinite(new)) else targets)
T._detail_donor = dd
methods, limit, out = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
rep = removal_check(C.dataset(), methods, seed=0, limit=limit, log=print)
json.dump(rep, open(out, "w"), indent=1)
