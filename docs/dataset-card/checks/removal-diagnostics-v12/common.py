"""What this folder's diagnostics share: the project on the path, the dataset ($TAMPER_DATA, default
/work/data/tamper-v12), the samples, and removals applied with the touch-up's detail donor recorded."""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, *[".."] * 4))

from inference.ml.coco import load_dataset  # noqa: E402
from inference.ml.dataset import realism as R  # noqa: E402
from inference.ml.tamper import NotApplicable, TamperRequest  # noqa: E402
from inference.ml.tamper import touchups as T  # noqa: E402

DATA = os.environ.get("TAMPER_DATA", "/work/data/tamper-v12")
# noise re-synthesis on every removal, no other touch-up: what the detail transplant alone does
NOISE_ONLY = {"resample": 0, "jpeg": 0, "seam_blur": 0, "noise": 1.0}


def dataset():
    return load_dataset(DATA)


def real_tumours(ds, n, seed=0):
    """``n`` real-tumour records drawn with ``seed`` (as removal_check draws its sources)."""
    src = [r for r in ds if r.verdict == "real_tumor"]
    rng = np.random.default_rng(seed)
    return [src[i] for i in sorted(rng.choice(len(src), n, replace=False))]


def samples(ds, splits):
    """The realism samples of ``splits`` (in that order), tumour-free ones at borrowed removal regions."""
    out = []
    for split in splits:
        out += R._load(ds, split, np.random.default_rng(0), None)
    return out


def tumour_free(all_samples):
    return [s for s in all_samples if s.record.verdict == "no_tumor" and s.region is not None]


def shifted(mask, shift):
    """``mask`` moved by ``shift`` (dy, dx): where the detail donor sits."""
    dy, dx = shift
    ys, xs = np.nonzero(mask)
    out = np.zeros_like(mask)
    out[ys + dy, xs + dx] = True
    return out


def removals(method, sources, probabilities=None):
    """``method`` applied to each source as removal_check applies it; yields (record, original slice, result,
    the detail donor's region or None, the per-band structure targets or None) for those it worked on."""
    captured = {}
    original = T._detail_donor

    def spy(*args, **kwargs):
        best, targets = original(*args, **kwargs)
        captured.update(shift=best, targets=targets)
        return best, targets

    T._detail_donor = spy
    try:
        for rec in sources:
            captured.clear()
            image = rec.pixels()
            try:
                result = method.apply(TamperRequest(image=image, tumour=rec.mask()),
                                      np.random.default_rng([0, rec.id]), probabilities=probabilities)
            except NotApplicable:
                continue
            donor = shifted(result.mask, captured["shift"]) if captured.get("shift") else None
            yield rec, image, result, donor, captured.get("targets")
    finally:
        T._detail_donor = original


def record_variant(entry):
    with open(os.path.join(HERE, "variants.jsonl"), "a") as fh:
        fh.write(json.dumps(entry) + "\n")
