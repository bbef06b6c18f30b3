"""Texture AUC of a removal's fill, and of the untouched tissue at its detail donor's own place, against tumour-free
slices at borrowed removal regions (400 real tumours): what a same-slice copy starts from. Usage: diag_ceiling.py
METHOD"""
import sys

import numpy as np

import common as C
from inference.ml.dataset import realism as R
from inference.ml.dataset.removal_check import _grouped_auc, authentic_features
from inference.ml.tamper import get_method

ds = C.dataset()
af, ag = authentic_features(C.tumour_free(C.samples(ds, ("train", "val", "test"))))
fill, donor, groups = [], [], []
for rec, img, res, place, _ in C.removals(get_method(sys.argv[1], "remove"), C.real_tumours(ds, 400)):
    if place is None:
        continue
    fill.append(R.texture_features(res.image, res.mask))
    donor.append(R.texture_features(img, place))
    groups.append(rec.patient_id)
y = np.r_[np.ones(len(groups)), np.zeros(len(ag))]
g = np.array(groups + list(ag))
for name, x in ((sys.argv[1] + " fill", fill), ("its detail donor place, untouched", donor)):
    x = np.r_[np.stack(x), af["texture"]]
    print(name, len(groups), "texture AUC", round(_grouped_auc(x, y, g), 3), "stats only",
          round(_grouped_auc(x[:, :4], y, g), 3), "detail only", round(_grouped_auc(x[:, 4:], y, g), 3))
