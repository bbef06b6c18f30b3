"""removal_check of a 'copy' removal: the region replaced by the healthy place of the same slice whose ring looks
most like the region's (the touch-up's detail-donor rule, at least margin + 8 px from the tumour), Poisson-blended
(``poisson``) or pasted and feathered (``raw``); the noise touch-up with the given detail scale, or none
(``nonoise``). Usage: copy_variant.py LIMIT [poisson|raw] [DETAIL_SIGMA] [nonoise]"""
import json
import sys

import numpy as np
from scipy import ndimage as ndi

import common as C
from inference.ml.dataset.removal_check import removal_check
from inference.ml.tamper import touchups as T
from inference.ml.tamper.base import REMOVE, NotApplicable, TamperMethod
from inference.ml.tamper.blend import poisson_blend
from inference.ml.tamper.inpaint import MARGIN_RANGE, removal_region
from inference.ml.tamper.patch import _translated


class Copy(TamperMethod):
    name = "copy"
    kind = REMOVE

    def __init__(self, mode="poisson", detail_sigma=1.0):
        self.mode, self.detail_sigma = mode, detail_sigma

    def edit(self, request, anatomy, rng):
        tumour = np.asarray(request.tumour, bool)
        margin = int(rng.integers(MARGIN_RANGE[0], MARGIN_RANGE[1] + 1))
        region = removal_region(tumour, margin, request.image.shape)
        lesion = ndi.binary_dilation(tumour, iterations=margin + 8)
        h, w = region.shape
        edge = np.zeros((h, w), bool)
        edge[1:-1, 1:-1] = True
        shifts = T.donor_shifts(region, anatomy.interior & ~lesion & edge)
        if not len(shifts):
            raise NotApplicable("no healthy place")
        ctx = T.Context(original=request.image, head=anatomy.head, forbidden=region | tumour,
                        interior=anatomy.interior)
        (dy, dx), _ = T._detail_donor(region, ctx, shifts, rng, 6.0)
        src = _translated(request.image, dy, dx)
        out = poisson_blend(request.image, src, region) if self.mode == "poisson" else src
        return out, region, {"shift": [dy, dx], "margin": margin}


if __name__ == "__main__":
    limit = int(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "poisson"
    detail_sigma = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    if "nonoise" in sys.argv:
        T.PROBABILITIES["noise"] = 0.0
    rep = removal_check(C.dataset(), [Copy(mode, detail_sigma)], seed=0, limit=limit)
    out = {k: {kk: v[kk] for kk in ("n", "texture_auc", "border_noise_auc", "surroundings_auc", "location_auc")}
           for k, v in rep["methods"].items()}
    print(mode, detail_sigma, sys.argv[4:], json.dumps(out))
    C.record_variant({"variant": f"copy-{mode}-ds{detail_sigma}-{sys.argv[4:]}", "limit": limit, **out})
