import os, sys, numpy as np
import os; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), *[".."] * 4))
from scipy import ndimage as ndi
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "diag_donor.py")).read().split("m = get_method")[0])
from inference.ml.dataset.realism import _band_images
m = get_method(sys.argv[1], "remove")
def shape(img, region, er):
    inside = ndi.binary_erosion(region, iterations=er)
    if inside.sum() < 30: return None
    b = _band_images(img)
    return [np.log(x[inside].std() + 1e-3) for x in b]
rows = []
for rec in src:
    cap.clear(); img = rec.pixels()
    try:
        res = m.apply(TamperRequest(image=img, tumour=rec.mask()), np.random.default_rng([0, rec.id]), probabilities={"resample": 0, "jpeg": 0, "seam_blur": 0, "noise": 1.0})
    except NotApplicable:
        continue
    if not cap.get("shift"): continue
    dy, dx = cap["shift"]; ys, xs = np.nonzero(res.mask); placed = np.zeros_like(res.mask); placed[ys + dy, xs + dx] = True
    r = []
    for er in (3, 6, 9):
        f, d = shape(res.image, res.mask, er), shape(img, placed, er)
        if f is None or d is None: break
        r += f + d
    if len(r) == 18: rows.append(r)
a = np.array(rows); print("n", len(a))
for i, er in enumerate((3, 6, 9)):
    f = a[:, i*6:i*6+3]; d = a[:, i*6+3:i*6+6]
    print(f"erode {er}: fill bands {f.mean(0).round(3)} shape {np.mean(f[:,1]-f[:,2]):+.3f} | donor bands {d.mean(0).round(3)} shape {np.mean(d[:,1]-d[:,2]):+.3f}")
