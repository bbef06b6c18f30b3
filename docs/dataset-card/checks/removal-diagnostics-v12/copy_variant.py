"""removal_check of a 'copy' removal: the region replaced by the healthy place of the same slice whose ring
looks most like the region's (the touch-up's detail-donor rule), Poisson-blended; touch-ups noise-only.
Usage: copy_variant.py LIMIT [blend]"""
import sys, json, numpy as np
import os; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), *[".."] * 4))
from scipy import ndimage as ndi
from inference.ml.tamper import touchups as T
from inference.ml.tamper.base import REMOVE, NotApplicable, TamperMethod
from inference.ml.tamper.blend import poisson_blend, composite
from inference.ml.tamper.inpaint import MARGIN_RANGE, removal_region
from inference.ml.tamper.patch import _translated
from inference.ml.coco import load_dataset
from inference.ml.dataset.removal_check import removal_check

limit = int(sys.argv[1]); mode = sys.argv[2] if len(sys.argv) > 2 else "poisson"
ds_touch = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
if "nonoise" in sys.argv: T.PROBABILITIES["noise"] = 0.0

class Copy(TamperMethod):
    name = "copy"; kind = REMOVE; detail_sigma = ds_touch
    def edit(self, request, anatomy, rng):
        tumour = np.asarray(request.tumour, bool)
        margin = int(rng.integers(MARGIN_RANGE[0], MARGIN_RANGE[1] + 1))
        region = removal_region(tumour, margin, request.image.shape)
        lesion = ndi.binary_dilation(tumour, iterations=margin + 8)
        h, w = region.shape
        edge = np.zeros((h, w), bool); edge[1:-1, 1:-1] = True
        allowed = anatomy.interior & ~lesion & edge
        shifts = T.donor_shifts(region, allowed)
        if not len(shifts):
            raise NotApplicable("no healthy place")
        ctx = T.Context(original=request.image, head=anatomy.head, forbidden=region | tumour, interior=anatomy.interior)
        best, _ = T._detail_donor(region, ctx, shifts, rng, 6.0)
        dy, dx = best
        src = _translated(request.image, dy, dx)
        out = poisson_blend(request.image, src, region) if mode == "poisson" else src
        return out, region, {"shift": [dy, dx], "margin": margin}

rep = removal_check(load_dataset(os.environ.get("TAMPER_DATA", "/work/data/tamper-v12")), [Copy()], seed=0, limit=limit)
out = {k: {kk: v[kk] for kk in ("n", "texture_auc", "border_noise_auc", "surroundings_auc", "location_auc")} for k, v in rep["methods"].items()}
print(mode, ds_touch, sys.argv[4:], json.dumps(out))
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "variants.jsonl"), "a") as fh:
    fh.write(json.dumps({"variant": f"copy-{mode}-ds{ds_touch}-{sys.argv[4:]}", "limit": limit, **out}) + "\n")
