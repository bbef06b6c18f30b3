"""The injection counterpart of :mod:`.removal_check`: every injection method applied to every tumour-free slice of
a built dataset (all splits), each with a real tumour of another patient of the same corpus as its donor, and
compared with the dataset's real tumours (their masks grown by 3 px, as in :mod:`.realism`) by logistic
regression on the ``texture``, ``border_noise``, ``surroundings`` and ``location`` features with patient-grouped 5-fold
cross-validation.

The card's realism check sees about 95 splices in a test split; here each method meets up to one tumour-free
slice each (about 1100), so a change to a method can be told from noise. Compare variants of a method with each
other, under the same ``seed``.

    python -m inference.ml.dataset.injection_check DATA [--methods splice,gan] [--seed 0] [--limit N]
"""
from __future__ import annotations

import json
import time

import numpy as np

from ..coco import CocoDataset
from ..tamper import TamperMethod, TamperRequest, get_method
from ..tamper import splice
from ..tamper.base import INJECT
from . import realism as R
from .removal_check import authentic_features, measure_method, method_entry, run_cli

MIN_DONOR_AREA = 150  # as the builder's donors


def injection_check(ds: CocoDataset, methods: list[TamperMethod | str] | None = None, *, seed: int = 0,
                    limit: int | None = None, log=None) -> dict:
    """Per method: how many slices it injected into, the grouped-CV AUC of each feature set against the real
    tumours, and the mean of each feature set over its injections and over the real tumours."""
    methods = [get_method(m, INJECT) if isinstance(m, str) else m for m in (methods or ["splice", "gan"])]
    rng = np.random.default_rng(seed)
    targets = [r for r in ds if r.verdict == "no_tumor"]
    if limit and len(targets) > limit:
        targets = [targets[i] for i in sorted(rng.choice(len(targets), limit, replace=False))]
    donors = [r for r in ds if r.verdict == "real_tumor" and int(r.mask().sum()) >= MIN_DONOR_AREA]
    authentic = []
    for split in sorted({r.split for r in ds}):
        authentic += [s for s in R._load(ds, split, np.random.default_rng(seed), None)
                      if s.record.verdict == "real_tumor"]
    if not targets or not donors:
        raise ValueError("The injection check needs no_tumor and real_tumor slices in the dataset.")
    auth_feats, auth_groups = authentic_features(authentic)
    report = {"protocol": f"{len(targets)} no_tumor slices per method (a donor tumour of another patient of the "
                          f"same corpus each) vs {len(authentic)} real_tumor slices; logistic regression, "
                          f"patient-grouped 5-fold CV ROC AUC (0.5 is chance); seed {seed}",
              "authentic": {"n": len(authentic), **{f"{k}_mean": v.mean(0).round(3).tolist()
                                                    for k, v in auth_feats.items()}},
              "methods": {}}
    donor_pixels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def request_for(rec):
        rng = np.random.default_rng([seed, rec.id])
        others = [d for d in donors if d.source == rec.source and d.patient_id != rec.patient_id]
        if not others:
            return None
        k = min(splice.DONOR_OPTIONS, len(others))
        offered = ([others[int(rng.integers(len(others)))]] if k == 1
                   else [others[int(i)] for i in rng.choice(len(others), k, replace=False)])
        for donor in offered:
            if donor.id not in donor_pixels:
                d_img, d_mask = donor.pixels(), donor.mask()
                donor_pixels[donor.id] = (d_img, d_mask, splice.tissue_spread(d_img, d_mask) if k > 1 else None)
        image = rec.pixels()
        chosen = offered[splice.choose_donor(image, [donor_pixels[d.id][2] for d in offered])] if k > 1 else offered[0]
        d_img, d_mask, _ = donor_pixels[chosen.id]
        return TamperRequest(image=image, donor_image=d_img, donor_mask=d_mask), rng

    for method in methods:
        t0 = time.monotonic()
        feats, groups = measure_method(method, targets, request_for)
        report["methods"][method.name] = method_entry(feats, groups, auth_feats, auth_groups, started=t0)
        if log:
            log(f"{method.name}: {json.dumps(report['methods'][method.name])}")
    return report


def main(argv: list[str] | None = None) -> None:
    run_cli(injection_check, __doc__, "splice,gan", "no_tumor", argv)


if __name__ == "__main__":
    main()
