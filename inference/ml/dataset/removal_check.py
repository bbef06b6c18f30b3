"""A method-isolated realism check for removals, larger than the card's: every removal method applied to every
real-tumour slice of a built dataset (all splits), each compared with the dataset's tumour-free slices at
borrowed removal regions (as in :mod:`.realism`), by logistic regression on the ``texture``, ``border_noise``
``surroundings`` and ``location`` features with patient-grouped 5-fold cross-validation (a patient's slices are never on
both sides of a fold).

The card's realism check sees about 60 removals per method in a test split: its AUCs move by 0.05 between
two seeds of the protocol. Here each method meets up to 1113 slices (one per real tumour), so a change to a
method's fill can be told from noise. The sources are the dataset's own real tumour slices, not the bases the
builder draws for removals, so the absolute figures differ a little from the card's; compare variants of a
method with each other, under the same ``seed``.

    python -m inference.ml.dataset.removal_check DATA [--methods gan,inpaint,patch] [--seed 0] [--limit N]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ..coco import CocoDataset, load_dataset
from ..tamper import NotApplicable, TamperMethod, TamperRequest, get_method
from ..tamper.base import REMOVE
from . import realism as R

FEATURES = {
    "texture": R.texture_features,
    "border_noise": R.border_noise_features,
    "surroundings": R.surroundings_features,
    "location": R.location_features,
}


def _grouped_auc(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5) -> float | None:
    from sklearn.model_selection import GroupKFold

    folds = min(folds, len(set(groups.tolist())))
    if folds < 2 or len(set(y.tolist())) < 2:
        return None
    score = np.zeros(len(y))
    for train, test in GroupKFold(folds).split(x, y, groups):
        if len(set(y[train].tolist())) < 2:
            return None
        score[test] = R._logistic(x[train], y[train], x[test])  # the card's detector, fitted per fold
    return R._auc(y, score)


def removal_check(ds: CocoDataset, methods: list[TamperMethod | str] | None = None, *, seed: int = 0,
                  limit: int | None = None, log=None) -> dict:
    """Per method: how many slices it removed from, the grouped-CV AUC of each feature set against the
    tumour-free slices, and the mean texture features of its fills and of the authentic regions."""
    methods = [get_method(m, REMOVE) if isinstance(m, str) else m for m in (methods or ["gan", "inpaint", "patch"])]
    rng = np.random.default_rng(seed)
    sources = [r for r in ds if r.verdict == "real_tumor"]
    if limit and len(sources) > limit:
        sources = [sources[i] for i in sorted(rng.choice(len(sources), limit, replace=False))]
    samples = []
    for split in sorted({r.split for r in ds}):
        samples += R._load(ds, split, np.random.default_rng(seed), None)
    authentic = [s for s in samples if s.record.verdict == "no_tumor" and s.region is not None]
    if not sources or not authentic:
        raise ValueError("The removal check needs real_tumor and no_tumor slices in the dataset.")
    auth_feats, auth_groups = authentic_features(authentic)
    report = {"protocol": f"{len(sources)} real_tumor slices per method vs {len(authentic)} no_tumor slices at "
                          f"borrowed removal regions; logistic regression, patient-grouped 5-fold CV ROC AUC "
                          f"(0.5 is chance); seed {seed}",
              "authentic": {"n": len(authentic), "texture_mean": auth_feats["texture"].mean(0).round(3).tolist()},
              "methods": {}}
    for method in methods:
        t0 = time.monotonic()
        feats, groups = measure_method(method, sources, lambda rec: (
            TamperRequest(image=rec.pixels(), tumour=rec.mask()), np.random.default_rng([seed, rec.id])))
        report["methods"][method.name] = method_entry(feats, groups, auth_feats, auth_groups, started=t0,
                                                      texture_only=True)
        if log:
            log(f"{method.name}: {json.dumps(report['methods'][method.name])}")
    return report


def measure_method(method: TamperMethod, records, make_request) -> tuple[dict[str, list], list]:
    """Apply ``method`` to each record's request (``make_request(record)``: (request, rng), or None to skip it)
    and measure every result with each feature set: (features, patient of each) for the records it worked on."""
    feats: dict[str, list] = {k: [] for k in FEATURES}
    groups = []
    for rec in records:
        made = make_request(rec)
        if made is None:
            continue
        try:
            result = method.apply(*made)
        except NotApplicable:
            continue
        for k, f in FEATURES.items():
            feats[k].append(f(result.image, result.mask))
        groups.append(rec.patient_id)
    return feats, groups


def authentic_features(authentic: list) -> tuple[dict[str, np.ndarray], list]:
    """Every feature set of the authentic samples (one row each) and their patients (the CV groups)."""
    feats = {k: np.stack([f(s.image, s.region) for s in authentic]) for k, f in FEATURES.items()}
    return feats, [s.record.patient_id for s in authentic]


def method_entry(feats: dict[str, list], groups: list, auth_feats: dict[str, np.ndarray], auth_groups: list, *,
                 started: float, texture_only: bool = False) -> dict:
    """One method's figures: its sample count, the grouped-CV AUC of each feature set against the authentic
    samples, and the means of its features (the texture features only, with ``texture_only``)."""
    entry: dict = {"n": len(groups), "seconds": round(time.monotonic() - started, 1)}
    if groups:
        y = np.r_[np.ones(len(groups)), np.zeros(len(auth_groups))]
        g = np.array(list(groups) + list(auth_groups))
        for k in FEATURES:
            entry[f"{k}_auc"] = _grouped_auc(np.r_[np.stack(feats[k]), auth_feats[k]], y, g)
        for k in (["texture"] if texture_only else FEATURES):
            entry[f"{k}_mean"] = np.stack(feats[k]).mean(0).round(3).tolist()
    return entry


def run_cli(check, doc: str, default_methods: str, what: str, argv: list[str] | None = None) -> None:
    """The command line of a method check: ``check(dataset, methods, seed=, limit=, log=)``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--methods", default=default_methods, help="comma-separated methods")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help=f"at most this many {what} slices (drawn with the seed)")
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    report = check(load_dataset(args.data), args.methods.split(","), seed=args.seed, limit=args.limit, log=print)
    print(json.dumps({k: v for k, v in report.items() if k != "methods"}, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)


def main(argv: list[str] | None = None) -> None:
    run_cli(removal_check, __doc__, "gan,inpaint,patch", "real_tumor", argv)


if __name__ == "__main__":
    main()
