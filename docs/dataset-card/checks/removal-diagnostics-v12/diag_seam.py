"""Where in the region the fill's detail departs from its donor's: log std of the three detail bands inside the
region eroded by 3, 6 and 9 px, fill and donor place (150 real tumours). Usage: diag_seam.py METHOD"""
import sys

import numpy as np
from scipy import ndimage as ndi

import common as C
from inference.ml.dataset.realism import _band_images
from inference.ml.tamper import get_method

ERODE = (3, 6, 9)


def bands(img, region, er):
    inside = ndi.binary_erosion(region, iterations=er)
    if inside.sum() < 30:
        return None
    return [np.log(x[inside].std() + 1e-3) for x in _band_images(img)]


rows = []
for _, img, res, donor, _ in C.removals(get_method(sys.argv[1], "remove"), C.real_tumours(C.dataset(), 150),
                                        C.NOISE_ONLY):
    if donor is None:
        continue
    pairs = [(bands(res.image, res.mask, er), bands(img, donor, er)) for er in ERODE]
    if all(f is not None and d is not None for f, d in pairs):
        rows.append([v for f, d in pairs for v in f + d])
a = np.array(rows)
print("n", len(a))
for i, er in enumerate(ERODE):
    f, d = a[:, i * 6:i * 6 + 3], a[:, i * 6 + 3:i * 6 + 6]
    print(f"erode {er}: fill bands {f.mean(0).round(3)} shape {np.mean(f[:,1]-f[:,2]):+.3f} | "
          f"donor bands {d.mean(0).round(3)} shape {np.mean(d[:,1]-d[:,2]):+.3f}")
