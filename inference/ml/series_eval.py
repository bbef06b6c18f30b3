"""Series-level evaluation: the scan verdict on whole real series, authentic and tampered.

`evaluate_detector` scores single slices drawn to balance the four verdicts, from the middle of the stack. A
doctor uploads a whole series; the portal reads every slice and turns them into one scan verdict
(`predictor.volume_verdict`). That verdict meets what the slice evaluation never shows: slices near the skull
base and the vertex, dozens of chances for a false alarm per series, a few tampered slices among many authentic
ones. This module measures it on the patients of one split of the default build (the same patient split as
`build_dataset` with the same seed, so the test patients are ones the detector never saw):

- ``authentic``: every slice of a real series as read (truth ``real_tumor`` when a slice has a tumour of at least
  ``MIN_TUMOUR_AREA`` pixels, else ``no_tumor``);
- ``added_1`` / ``added_3``: a tumour from another patient of the same split and corpus injected into one slice,
  or into three neighbouring tumour-free slices (truth ``fake_added``);
- ``removed_all``: the tumour erased from every slice that shows it, as an attacker must (truth
  ``fake_removed``).
- held out, with ``--volume-injections``: ``added_volume``, a real tumour volume (five neighbouring slices of another
  patient's tumour) injected into five neighbouring tumour-free slices with one size, angle, mirror and place, as
  an attacker editing the volume in 3-D would; reported apart, beside ``added_3`` on the same series, and never used
  to choose the rule.

Tampering uses one registered method per series (drawn from its name and the seed; the others are fallbacks),
with the same touch-ups as the dataset. Each slice is predicted once (a tampered series differs from its authentic
one only on its tampered slices), and the per-slice scores are kept in ``slices.json`` so that scan-level rules
can be compared without the model.

Rules (both `predictor.volume_verdict`): ``max``, without a rule, as shipped up to model 0.9.0 (each verdict's
highest slice probability, ``no_tumor`` its lowest, renormalised); ``count``, the scan rule: the scan's probability
of being tampered is a logistic curve in its ``min_slices``-th highest slice tamper score, 0.5 at ``threshold``,
with a slope fitted on the same series (`scan_rule.fit_slope`), and the verdict the most probable of the four.
(threshold, min_slices, slope) are chosen on the validation split's series only; `rule_document` is what `evaluate_series --save-rule` writes beside the weights
for the portal, `detect` and the worker to use.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .coco import SPLITS
from .dataset.builder import MIN_DONOR_AREA, MIN_TUMOUR_AREA, _item_seed
from .dataset.readers import SourceError, SourceSlice, read_source
from .dataset.splits import DEFAULT_FRACTIONS, split_patients
from .evaluate import PERTURBATIONS
from .input_check import check_slices
from .labels import TAMPERED, VERDICTS
from .intervals import wilson
from .metrics import roc_auc
from .scan_rule import MIN_RULE_THRESHOLD, evidence, fit_slope, scan_scores, tamper_probability
from .tamper import INJECT, REMOVE, NotApplicable, TamperRequest, methods as registered_methods

log = logging.getLogger(__name__)

VARIANTS = ("authentic", "added_1", "added_3", "removed_all")
# Held out: made only when asked (`evaluate_series --volume-injections`), never used to choose the rule, reported
# apart. ``added_volume``: a real tumour volume (VOLUME_SLICES neighbouring slices of another patient's tumour)
# injected into as many neighbouring slices with one geometry, as an attacker who edits the volume in 3-D would
# (CT-GAN; `_inject_volume`); ``added_3`` pastes one donor slice three times, each drawn afresh.
# ``processed ...`` (`evaluate_series --processed`): every slice of an authentic series passed through one of the
# slice evaluation's perturbations (JPEG, noise, resampling, contrast: `evaluate.PERTURBATIONS`), as an archive,
# an export or a viewer may have done: the false alarms a hospital would meet, and whether the input check warns.
PROCESSED_PREFIX = "processed "
PROCESSED_VARIANTS = tuple(PROCESSED_PREFIX + name for name in PERTURBATIONS)
HELD_OUT_VARIANTS = ("added_volume",) + PROCESSED_VARIANTS
ALL_VARIANTS = VARIANTS + HELD_OUT_VARIANTS  # in this order: each variant's seed is its place here
VARIANT_TRUTH = {"added_1": "fake_added", "added_3": "fake_added", "removed_all": "fake_removed",
                 "added_volume": "fake_added"}  # processed series keep the authentic series' truth
VOLUME_SLICES = 5
THRESHOLDS = (0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995)  # at least MIN_RULE_THRESHOLD
MIN_SLICES = (1, 2, 3)
assert min(THRESHOLDS) >= MIN_RULE_THRESHOLD


@dataclass
class Series:
    key: str  # "<source>:<series>", the series being a volume file or a patient's folder of slice files
    source: str
    patient_id: str
    split: str
    slices: list[SourceSlice]

    @property
    def truth(self) -> str:
        return "real_tumor" if any(s.tumour_area >= MIN_TUMOUR_AREA for s in self.slices) else "no_tumor"


@dataclass
class SeriesCase:
    """One series as the portal would receive it: per slice, the key of the pixels it holds."""

    series: str
    variant: str
    truth: str
    split: str
    source: str
    patient_id: str
    slice_keys: list[str]
    tampered: list[int] = field(default_factory=list)  # positions in the series that were tampered
    methods: list[str] = field(default_factory=list)


def group_series(slices: Iterable[SourceSlice]) -> list[Series]:
    """Slices -> series in stack order. A file holding several slices is a series (a NIfTI volume); files of
    one slice each are grouped by their folder (the LGG layout: one folder per patient and study)."""
    per_file: dict[tuple[str, str], int] = defaultdict(int)
    slices = list(slices)
    for s in slices:
        per_file[(s.source, s.file)] += 1
    groups: dict[tuple[str, str], list[SourceSlice]] = defaultdict(list)
    for s in slices:
        name = s.file if per_file[(s.source, s.file)] > 1 else str(Path(s.file).parent)
        groups[(s.source, name)].append(s)
    out = []
    for (source, name), members in sorted(groups.items()):
        members.sort(key=lambda s: (s.position if s.position is not None else 0.0, s.meta.get("slice", 0), s.index))
        out.append(Series(f"{source}:{name}", source, members[0].patient_id, "", members))
    return out


def assign_splits(series: list[Series], seed: int = 0,
                  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> dict[str, dict[str, str]]:
    """The patient split `build_dataset` makes with ``seed`` (same inputs, same arithmetic), set on ``series``."""
    by_source: dict[str, list[SourceSlice]] = defaultdict(list)
    for s in series:
        by_source[s.source].extend(s.slices)
    assignments = {}
    for ci, source in enumerate(sorted(by_source)):
        corpus = by_source[source]
        tumour = [s for s in corpus if s.tumour_area >= MIN_TUMOUR_AREA]
        # the builder counts eligible healthy slices; the count only breaks ties among tumour-free patients,
        # and every patient of these corpora has tumour slices, but keep the arithmetic identical
        from .dataset.builder import _eligible_healthy

        healthy = _eligible_healthy(tumour, [s for s in corpus if not s.mask.any()])
        t_counts: dict[str, int] = defaultdict(int)
        h_counts: dict[str, int] = defaultdict(int)
        for s in tumour:
            t_counts[s.patient_id] += 1
        for s in healthy:
            h_counts[s.patient_id] += 1
        assignments[source] = split_patients(dict(t_counts), dict(h_counts), fractions=fractions,
                                             seed=_item_seed(seed, ci, 999))
    for s in series:
        s.split = assignments[s.source].get(s.patient_id, "train")
    return assignments


def _brainy(s: SourceSlice) -> bool:
    """Enough signal to be a slice an attacker would inject into (not a blank or air-only slice)."""
    return float((s.image > 20).mean()) > 0.08


def make_cases(series: list[Series], *, seed: int = 0, variants: Sequence[str] = VARIANTS,
               methods: Sequence[str] | None = None, touch_ups: bool = True,
               donor_pool: list[Series] | None = None,
               ) -> tuple[list[SeriesCase], dict[str, np.ndarray], dict]:
    """The series cases and the pixels of every tampered slice (key -> uint8 image); authentic slices are
    referred to by their SourceSlice key. Donor tumours come from ``donor_pool`` (default ``series``): another
    patient of the same split and corpus. Returns (cases, tampered pixels, skipped counts). The same series,
    pool and seed give the same pixels whatever else is evaluated beside them."""
    inject = registered_methods(INJECT, list(methods) if methods else None)
    remove = registered_methods(REMOVE, list(methods) if methods else None)
    donors_by: dict[tuple[str, str], list[SourceSlice]] = defaultdict(list)
    volume_donors: dict[tuple[str, str], list[tuple[Series, int]]] = defaultdict(list)  # (series, first slice)
    for s in sorted(donor_pool if donor_pool is not None else series, key=lambda s: s.key):
        donors_by[(s.source, s.split)].extend(x for x in s.slices if x.tumour_area >= MIN_DONOR_AREA)
        if "added_volume" in variants:
            volume_donors[(s.source, s.split)].extend((s, i) for i in _tumour_runs(s, VOLUME_SLICES))
    cases: list[SeriesCase] = []
    pixels: dict[str, np.ndarray] = {}
    skipped: dict[str, int] = defaultdict(int)
    for s in series:
        si = _item_seed(seed, *s.key.encode("utf-8")[-16:]) % 1_000_003  # per series, not per place in the list
        keys = [x.key for x in s.slices]
        base = dict(series=s.key, split=s.split, source=s.source, patient_id=s.patient_id)
        if "authentic" in variants:
            cases.append(SeriesCase(variant="authentic", truth=s.truth, slice_keys=keys, **base))
        for vi, variant in enumerate(v for v in ALL_VARIANTS if v != "authentic"):
            if variant not in variants:
                continue
            rng = np.random.default_rng(_item_seed(seed, 7, si, vi))
            if variant.startswith(PROCESSED_PREFIX):
                perturb = PERTURBATIONS[variant[len(PROCESSED_PREFIX):]]
                new_keys = []
                for x in s.slices:
                    key = f"{x.key}~{variant}"
                    pixels[key] = perturb(x.image, rng)
                    new_keys.append(key)
                cases.append(SeriesCase(variant=variant, truth=s.truth, slice_keys=new_keys,
                                        methods=[variant[len(PROCESSED_PREFIX):]], **base))
                continue
            try:
                if variant == "added_volume":
                    changed, used = _inject_volume(s, VOLUME_SLICES, inject,
                                                   [d for d in volume_donors[(s.source, s.split)]
                                                    if d[0].patient_id != s.patient_id], rng, touch_ups, si)
                elif variant.startswith("added_"):
                    changed, used = _inject(s, int(variant.split("_")[1]), inject,
                                            [d for d in donors_by[(s.source, s.split)] if d.patient_id != s.patient_id],
                                            rng, touch_ups, si)
                else:
                    changed, used = _remove_all(s, remove, rng, touch_ups, si)
            except NotApplicable as exc:
                log.warning("%s %s: %s", s.key, variant, exc)
                skipped[variant] += 1
                continue
            new_keys = list(keys)
            for pos, image in changed.items():
                key = f"{keys[pos]}~{variant}"
                pixels[key] = image
                new_keys[pos] = key
            cases.append(SeriesCase(variant=variant, truth=VARIANT_TRUTH[variant], slice_keys=new_keys,
                                    tampered=sorted(changed), methods=used, **base))
    return cases, pixels, dict(skipped)


def _healthy_runs(s: Series, count: int) -> list[int]:
    """The first slice of every run of ``count`` neighbouring tumour-free slices with brain in them (the places
    an injection may go), or NotApplicable."""
    healthy = [i for i, x in enumerate(s.slices) if not x.mask.any() and _brainy(x)]
    starts = [i for i in healthy if all(j in healthy for j in range(i, i + count))]
    if not starts:
        raise NotApplicable(f"no run of {count} neighbouring tumour-free slices with brain tissue")
    return starts


def _inject(s: Series, count: int, inject, donors, rng, touch_ups: bool, si: int):
    if not donors:
        raise NotApplicable("no donor tumour from another patient of this split and corpus")
    starts = _healthy_runs(s, count)
    method = inject[si % len(inject)]
    others = [m for m in inject if m is not method]
    for start in [starts[i] for i in rng.permutation(len(starts))][:8]:
        donor = donors[int(rng.integers(len(donors)))]
        changed = {}
        for m in [method, *others]:
            changed = {}
            try:
                for pos in range(start, start + count):
                    result = m.apply(TamperRequest(s.slices[pos].image, donor_image=donor.image,
                                                   donor_mask=donor.mask), rng, touch_ups=touch_ups)
                    changed[pos] = result.image
            except NotApplicable:
                continue
            return changed, [m.name]
    raise NotApplicable(f"every injection method failed on 8 runs of {count} slices")


MAX_VOLUME_STEP = 12.0  # px: how far a donor tumour's largest part may move from one slice to the next


def _tumour_runs(s: Series, count: int) -> list[int]:
    """Where ``count`` neighbouring slices of ``s`` all show a donor-sized tumour whose largest part (what
    `splice` cuts) moves at most ``MAX_VOLUME_STEP`` px from slice to slice (one object, not two lobes taking
    turns): the first slice of each such run, at most one run per tumour (the one centred on its largest slice),
    so big tumours are not drawn more often."""
    from .tamper.splice import crop_centre

    big = [x.tumour_area >= MIN_DONOR_AREA for x in s.slices]
    centres = [crop_centre(x.mask) if b else None for x, b in zip(s.slices, big)]
    joined = [big[i] and big[i + 1] and math.dist(centres[i], centres[i + 1]) <= MAX_VOLUME_STEP
              for i in range(len(big) - 1)]
    starts = [i for i in range(len(big) - count + 1) if all(joined[i:i + count - 1])]
    if not starts:
        return []
    runs, current = [], [starts[0]]
    for i in starts[1:]:
        if i == current[-1] + 1:
            current.append(i)
        else:
            runs.append(current)
            current = [i]
    runs.append(current)
    out = []
    for run in runs:  # the start whose middle slice shows the most tumour
        out.append(max(run, key=lambda i: (s.slices[i + count // 2].tumour_area, -i)))
    return out


def _inject_volume(s: Series, count: int, inject, donors: list[tuple[Series, int]], rng, touch_ups: bool, si: int):
    """A tumour volume injected with one geometry: ``count`` neighbouring slices of another patient's tumour into as
    many neighbouring tumour-free slices of ``s``. The middle slice is placed as `splice` places a tumour (its
    place, size, angle and mirror drawn); every other slice takes the same size, angle and mirror, and a centre
    moved by its donor slice's offset from the middle one (`splice.carry_offset`), so the tumour is one solid
    object through the slices, not a new draw on each."""
    from .tamper.splice import carry_offset, crop_centre

    if not donors:
        raise NotApplicable(f"no run of {count} neighbouring tumour slices in another patient of this split and corpus")
    starts = _healthy_runs(s, count)
    method = inject[si % len(inject)]
    others = [m for m in inject if m is not method]
    mid = count // 2
    for start in [starts[i] for i in rng.permutation(len(starts))][:8]:
        donor, first = donors[int(rng.integers(len(donors)))]
        pairs = [(s.slices[start + k], donor.slices[first + k]) for k in range(count)]
        centres = [crop_centre(d.mask) for _, d in pairs]
        for m in [method, *others]:
            try:
                host, d = pairs[mid]
                result = m.apply(TamperRequest(host.image, donor_image=d.image, donor_mask=d.mask), rng,
                                 touch_ups=touch_ups)
                # the blend band too where the method reports it (gan does not: it draws its own per slice)
                geometry = {key: result.params[key] for key in ("scale", "angle", "flip", "band")
                            if key in result.params}
                changed = {start + mid: result.image}
                for k, (host, d) in enumerate(pairs):
                    if k == mid:
                        continue
                    dy, dx = carry_offset((centres[k][0] - centres[mid][0], centres[k][1] - centres[mid][1]),
                                          scale=geometry["scale"], angle=geometry["angle"], flip=geometry["flip"])
                    y, x = result.params["position"]
                    placement = {**geometry, "centre": (y + dy, x + dx)}
                    changed[start + k] = m.apply(TamperRequest(host.image, donor_image=d.image, donor_mask=d.mask,
                                                               placement=placement), rng, touch_ups=touch_ups).image
            except NotApplicable:
                continue
            return dict(sorted(changed.items())), [m.name]
    raise NotApplicable(f"every injection method failed on 8 runs of {count} slices with one geometry")


def _remove_all(s: Series, remove, rng, touch_ups: bool, si: int):
    tumour = [i for i, x in enumerate(s.slices) if x.mask.any()]
    if not tumour:
        raise NotApplicable("no tumour to erase")
    first = si % len(remove)
    changed, used = {}, []
    for pos in tumour:
        for k in range(len(remove)):
            m = remove[(first + k) % len(remove)]
            try:
                result = m.apply(TamperRequest(s.slices[pos].image, tumour=s.slices[pos].mask), rng,
                                 touch_ups=touch_ups)
            except NotApplicable:
                continue
            changed[pos] = result.image
            used.append(m.name)
            break
        else:
            raise NotApplicable(f"no removal method could erase the tumour on slice {pos} of {len(s.slices)}")
    return changed, sorted(set(used))


# --- scan-level rules -------------------------------------------------------------------------------


def max_rule(slices: list[dict]) -> str:
    """`volume_verdict` without a rule (as shipped up to model 0.9.0), on per-slice score dicts."""
    return scan_scores(slices)[0]


def series_rule_verdict(slices: list[dict], threshold: float, min_slices: int, slope: float = 1.0) -> str:
    """`volume_verdict` with the scan rule (threshold, min_slices, slope)."""
    return scan_scores(slices, {"threshold": threshold, "min_slices": min_slices, "slope": slope})[0]


def _rule_decide(rule: dict) -> Callable[[list[dict]], str]:
    return lambda s: series_rule_verdict(s, rule["threshold"], rule["min_slices"], rule["slope"])


def slope_for(cases: list[dict], threshold: float, min_slices: int) -> float:
    """`scan_rule.fit_slope` on ``cases`` (tampered: every variant but authentic)."""
    return fit_slope([(evidence(c["scores"], min_slices), c["variant"] != "authentic") for c in cases], threshold)


def probability_quality(cases: list[dict], rule: dict) -> dict:
    """How well the scan's tamper probability fits: the Brier score with tampered and authentic series weighted to
    count half each (the even odds it is fitted at), and per probability bin how many series were tampered."""
    rows = [(tamper_probability(evidence(c["scores"], rule["min_slices"]), rule["threshold"], rule["slope"]),
             c["variant"] != "authentic") for c in cases]
    n_t = sum(y for _, y in rows)
    n_a = len(rows) - n_t
    if not n_t or not n_a:
        return {}
    brier = 0.5 * (sum((q - 1) ** 2 for q, y in rows if y) / n_t + sum(q ** 2 for q, y in rows if not y) / n_a)
    bins = []
    for low, high in ((0.0, 0.1), (0.1, 0.5), (0.5, 0.9), (0.9, 1.01)):
        members = [(q, y) for q, y in rows if low <= q < high]
        bins.append({"low": low, "high": min(high, 1.0), "series": len(members),
                     "tampered": sum(y for _, y in members)})
    return {"brier_balanced": brier, "bins": bins}


def score_rule(cases: list[dict], decide: Callable[[list[dict]], str]) -> dict:
    """Accuracy per variant and overall, false alarms on authentic series, detection of tampered ones."""
    rows = [(c, decide(c["scores"])) for c in cases]
    out: dict = {"n_cases": len(rows)}
    if not rows:
        return out
    out["accuracy"] = sum(p == c["truth"] for c, p in rows) / len(rows)
    per_variant = {}
    for variant in VARIANTS:
        members = [(c, p) for c, p in rows if c["variant"] == variant]
        if not members:
            continue
        entry = {"n": len(members), "correct": sum(p == c["truth"] for c, p in members) / len(members),
                 "called_tampered": sum(p in TAMPERED for _, p in members) / len(members)}
        per_variant[variant] = entry
    out["per_variant"] = per_variant
    authentic = [p for c, p in rows if c["variant"] == "authentic"]
    tampered = [p for c, p in rows if c["variant"] != "authentic"]
    out["n_authentic"], out["n_tampered"] = len(authentic), len(tampered)
    out["false_alarm_rate"] = sum(p in TAMPERED for p in authentic) / len(authentic) if authentic else None
    out["detection_rate"] = sum(p in TAMPERED for p in tampered) / len(tampered) if tampered else None
    # balanced: authentic series are one case in four here, but most uploads are authentic
    if authentic and tampered:
        out["balanced_accuracy"] = 0.5 * ((1 - out["false_alarm_rate"]) + out["detection_rate"])
    return out


def choose_rule(cases: list[dict], *, max_false_alarm: float = 0.1) -> dict:
    """(threshold, min_slices) with the best balanced accuracy on ``cases`` among those whose false-alarm rate
    on authentic series is at most ``max_false_alarm`` (the lowest false-alarm rate when none qualifies);
    ties go to the higher threshold, then fewer slices."""
    grid = []
    for t in THRESHOLDS:
        for m in MIN_SLICES:
            slope = slope_for(cases, t, m)
            r = score_rule(cases, lambda s, t=t, m=m, a=slope: series_rule_verdict(s, t, m, a))
            grid.append({"threshold": t, "min_slices": m, "slope": slope, **r})
    ok = [g for g in grid if (g["false_alarm_rate"] or 0.0) <= max_false_alarm]
    if ok:
        best = max(ok, key=lambda g: (round(g["balanced_accuracy"], 9), round(g["accuracy"], 9), g["threshold"],
                                      -g["min_slices"]))
    else:
        best = min(grid, key=lambda g: (g["false_alarm_rate"], -g["balanced_accuracy"]))
    return {"chosen": {"threshold": best["threshold"], "min_slices": best["min_slices"], "slope": best["slope"]},
            "max_false_alarm": max_false_alarm, "grid": grid}


# --- the run ----------------------------------------------------------------------------------------


def collect(predictor, sources: Sequence[str], *, splits: Sequence[str] = ("val", "test"), seed: int = 0,
            variants: Sequence[str] = VARIANTS, max_series: int | None = None, progress: bool = True,
            methods: Sequence[str] | None = None) -> dict:
    """Read ``sources``, make the series cases of ``splits`` and predict every slice once. Returns the
    ``slices.json`` document: per case its truth, variant and per-slice scores."""
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"Unknown split(s) {sorted(unknown)}; the splits are {', '.join(SPLITS)}.")
    unknown = set(variants) - set(ALL_VARIANTS)
    if unknown:
        raise ValueError(f"Unknown variant(s) {sorted(unknown)}; the variants are {', '.join(ALL_VARIANTS)}.")
    slices: list[SourceSlice] = []
    for spec in sources:
        slices.extend(read_source(spec))
    if not slices:
        raise SourceError("The sources hold no slices.")
    series = group_series(slices)
    assign_splits(series, seed=seed)
    chosen = [s for s in series if s.split in splits]
    if max_series:
        # the first series of each corpus and split in turn, so a short run still sees every corpus
        buckets = defaultdict(list)
        for s in chosen:
            buckets[(s.split, s.source)].append(s)
        chosen = [x for i in range(max_series) for b in sorted(buckets) for x in buckets[b][i:i + 1]][:max_series]
    # donors come from every series of the split (not only the ones evaluated)
    cases, pixels, skipped = make_cases(chosen, seed=seed, variants=variants, methods=methods,
                                        donor_pool=[s for s in series if s.split in splits])
    source_pixels = {x.key: x.image for s in chosen for x in s.slices}
    needed = sorted({k for c in cases for k in c.slice_keys})
    scores: dict[str, dict] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(needed), unit="slice", desc="predicting", mininterval=2.0)
    start = time.monotonic()
    batch = max(1, int(getattr(predictor, "batch_size", 4)))
    for i in range(0, len(needed), batch):
        keys = needed[i:i + batch]
        preds = predictor.predict_batch([pixels[k] if k in pixels else source_pixels[k] for k in keys])
        for k, p in zip(keys, preds):
            scores[k] = {v: round(float(p.scores[v]), 6) for v in VERDICTS}
        if bar is not None:
            bar.update(len(keys))
    if bar is not None:
        bar.close()
    checks = {}  # does the input check warn? on authentic series, as read and processed
    for c in cases:
        if c.variant == "authentic" or c.variant.startswith(PROCESSED_PREFIX):
            checks[(c.series, c.variant)] = check_slices(
                [pixels[k] if k in pixels else source_pixels[k] for k in c.slice_keys]).within
    return {
        "model": dict(predictor.info),
        "seed": seed,
        "sources": sorted({s.source for s in series}),
        "splits": list(splits),
        "n_slices_predicted": len(needed),
        "predict_seconds": round(time.monotonic() - start, 1),
        "skipped": skipped,
        "cases": [{"series": c.series, "variant": c.variant, "truth": c.truth, "split": c.split,
                   "source": c.source, "patient_id": c.patient_id, "tampered": c.tampered, "methods": c.methods,
                   "scores": [scores[k] for k in c.slice_keys],
                   **({"input_check_within": checks[(c.series, c.variant)]} if (c.series, c.variant) in checks
                      else {})} for c in cases],
    }


def analyse(doc: dict, *, max_false_alarm: float = 0.1) -> dict:
    """The rules on the collected cases: ``max`` on every split; ``count`` chosen on val, measured on test."""
    by_split, held_by_split = defaultdict(list), defaultdict(list)
    for c in doc["cases"]:
        (by_split if c["variant"] in VARIANTS else held_by_split)[c["split"]].append(c)
    out: dict = {"model": doc["model"], "seed": doc["seed"], "max_false_alarm": max_false_alarm, "splits": {}}
    chosen = None
    if by_split.get("val"):
        choice = choose_rule(by_split["val"], max_false_alarm=max_false_alarm)
        chosen = choice["chosen"]
        out["chosen_on_val"] = chosen
        out["val_grid"] = choice["grid"]
    rules = {"max": max_rule}
    if chosen:
        rules["count"] = _rule_decide(chosen)
    for split, cases in sorted(by_split.items()):
        entry = {"n_series": len({c["series"] for c in cases}),
                 # how well the highest slice tamper score alone tells tampered series from authentic ones
                 "max_tamper_auc": roc_auc([c["variant"] != "authentic" for c in cases],
                                           [max(p["fake_added"] + p["fake_removed"] for p in c["scores"])
                                            for c in cases]),
                 "n_slices": sum(len(c["scores"]) for c in cases if c["variant"] == "authentic"),
                 "max": score_rule(cases, max_rule),
                 "authentic_slices_flagged": _slice_flags(cases)}
        if chosen:
            entry["count"] = score_rule(cases, _rule_decide(chosen))
            entry["tamper_probability"] = probability_quality(cases, chosen)
        entry["per_method"] = {
            f"{variant.split('_')[0]} {method}": {
                rule: sum(decide(c["scores"]) == c["truth"] for c in members) / len(members)
                for rule, decide in rules.items()} | {"n": len(members)}
            for (variant, method), members in sorted(_by_method(cases).items())
        }
        entry["per_source"] = {
            src: {"max": score_rule([c for c in cases if c["source"] == src], max_rule),
                  **({"count": score_rule([c for c in cases if c["source"] == src],
                                          _rule_decide(chosen))} if chosen else {})}
            for src in sorted({c["source"] for c in cases})
        }
        volume = [c for c in held_by_split.get(split, []) if not c["variant"].startswith(PROCESSED_PREFIX)]
        processed = [c for c in held_by_split.get(split, []) if c["variant"].startswith(PROCESSED_PREFIX)]
        if volume:
            entry["held_out"] = held_out_summary(volume, cases, rules)
        if processed:
            entry["processed"] = processed_summary(processed, cases, rules)
        out["splits"][split] = entry
    return out


def _slice_tamper_share(cases: list[dict]) -> tuple[int, int]:
    """(tampered slices the slice verdict calls tampered, tampered slices) over ``cases``."""
    verdicts = [max(VERDICTS, key=lambda v: c["scores"][i][v]) for c in cases for i in c["tampered"]]
    return sum(v in TAMPERED for v in verdicts), len(verdicts)


def held_out_summary(held: list[dict], cases: list[dict], rules: dict[str, Callable]) -> dict:
    """The held-out variants (never used to choose the rule), each beside ``added_3`` on the same series: the
    share of series each rule calls tampered and gives the true verdict, and the share of tampered slices the
    slice verdict alone calls tampered."""
    out = {}
    for variant in sorted({c["variant"] for c in held}):
        members = [c for c in held if c["variant"] == variant]
        series = {c["series"] for c in members}
        paired = [c for c in cases if c["variant"] == "added_3" and c["series"] in series]
        methods = _count("+".join(c["methods"]) for c in members)
        entry: dict = {"n": len(members), "methods": dict(sorted(methods.items()))}
        for name, group in ((variant, members), ("added_3 on the same series", paired)):
            flagged, n_slices = _slice_tamper_share(group)
            entry[name] = {"n": len(group), "slices": n_slices,
                           "slices_called_tampered": flagged / n_slices if n_slices else None}
            for rule, decide in rules.items():
                if group:
                    said = [decide(c["scores"]) for c in group]
                    entry[name][rule] = {"called_tampered": sum(v in TAMPERED for v in said) / len(group),
                                         "correct": sum(v == c["truth"] for v, c in zip(said, group)) / len(group)}
        out[variant] = entry
    return out


def processed_summary(processed: list[dict], cases: list[dict], rules: dict[str, Callable]) -> dict:
    """Authentic series passed whole through one processing each (held out): per processing and rule, how many
    the rule calls tampered (false alarms) and how many it gives their true verdict, and how many the input check
    warns on (its warning is what tells a doctor not to trust the verdict), beside the same series as read."""
    out = {}
    groups = [("as read", [c for c in cases if c["variant"] == "authentic"])]
    groups += [(v[len(PROCESSED_PREFIX):], [c for c in processed if c["variant"] == v])
               for v in PROCESSED_VARIANTS if any(c["variant"] == v for c in processed)]
    for name, group in groups:
        if not group:
            continue
        warned = [c.get("input_check_within") is False for c in group]
        entry: dict = {"n": len(group), "input_check_warned": sum(warned)}
        for rule, decide in rules.items():
            said = [decide(c["scores"]) for c in group]
            alarms = [v in TAMPERED for v in said]
            entry[rule] = {"false_alarms": sum(alarms),
                           "correct": sum(v == c["truth"] for v, c in zip(said, group)),
                           "false_alarms_unwarned": sum(a and not w for a, w in zip(alarms, warned))}
        out[name] = entry
    return out


def _count(items: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item] += 1
    return counts


def _by_method(cases: list[dict]) -> dict:
    groups = defaultdict(list)
    for c in cases:
        if c["variant"] != "authentic":
            groups[("added" if c["variant"].startswith("added") else "removed", "+".join(c["methods"]))].append(c)
    return groups


def _slice_flags(cases: list[dict]) -> dict:
    """How many authentic slices the slice verdict alone calls tampered, and how many authentic series have one."""
    authentic = [c for c in cases if c["variant"] == "authentic"]
    flags = [sum(1 for p in c["scores"] if max(VERDICTS, key=lambda v: p[v]) in TAMPERED) for c in authentic]
    n = sum(len(c["scores"]) for c in authentic)
    return {"slices": n, "flagged": int(sum(flags)), "rate": (sum(flags) / n) if n else None,
            "series_with_a_flag": sum(f > 0 for f in flags), "series": len(authentic)}


def rule_document(result: dict, *, written: str) -> dict:
    """What `evaluate_series --save-rule` writes beside the weights (`predictor.load_scan_rule` reads it)."""
    chosen = result.get("chosen_on_val")
    if not chosen:
        raise ValueError("No rule was chosen: a rule is chosen on the validation split's series; include --split val.")
    val = result["splits"]["val"]
    measured = {}
    for split, entry in result["splits"].items():
        measured[split] = {rule: {k: entry[rule].get(k) for k in ("n_cases", "n_authentic", "n_tampered",
                                                                    "accuracy", "false_alarm_rate", "detection_rate")}
                           for rule in ("max", "count") if rule in entry}
    return {
        "model": f"{result['model'].get('name')} {result['model'].get('version')}",
        "model_sha256": result["model"]["sha256"],
        "rule": dict(chosen),
        "chosen_on": (f"{val['n_series']} validation series of the build with seed {result['seed']} (authentic, "
                      f"one or three slices injected, the tumour erased), false alarms at most "
                      f"{_pct(result['max_false_alarm'])}"),
        "written": written,
        "measured": measured,
        "by": "python manage.py evaluate_series --save-rule",
    }


def write_report(doc: dict, result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "slices.json").write_text(json.dumps(doc), encoding="utf-8")
    (out / "series_metrics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / "series_report.md").write_text(report_markdown(result), encoding="utf-8")


def _ordinal(n: int) -> str:
    return "highest" if n == 1 else f"{n}th-highest" if n > 3 else ("2nd-highest" if n == 2 else "3rd-highest")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _rate(r: dict, key: str, n_key: str) -> str:
    x, n = r.get(key), r.get(n_key) or 0
    if x is None:
        return "n/a"
    ci = wilson(round(x * n), n)
    return f"{_pct(x)} ({100 * ci[0]:.0f}-{100 * ci[1]:.0f})" if ci else _pct(x)


def report_markdown(result: dict) -> str:
    m = result["model"]
    lines = [f"# Scan-level verdicts on whole series: {m.get('name')} {m.get('version')}", "",
             f"Model sha256 {m.get('sha256', '')[:12]}…, dataset seed {result['seed']}. Written by "
             "`python manage.py evaluate_series` (inference/ml/series_eval.py, which says how the series are made).",
             ""]
    chosen = result.get("chosen_on_val")
    if chosen:
        lines += [f"`count` rule chosen on the validation series (false alarms at most "
                  f"{_pct(result['max_false_alarm'])}): the scan's probability of being tampered is 50 % when its "
                  f"{_ordinal(chosen['min_slices'])} slice tamper score is {chosen['threshold']} (slope "
                  f"{chosen['slope']:.2f} in log-odds, fitted there too); its verdict is the most probable.", ""]
    for split, e in result["splits"].items():
        f = e["authentic_slices_flagged"]
        lines += [f"## {split}: {e['n_series']} series, {e['n_slices']} authentic slices", "",
                  f"Authentic slices the slice verdict calls tampered: {f['flagged']} of {f['slices']} "
                  f"({_pct(f['rate'])}); authentic series with at least one: {f['series_with_a_flag']} of "
                  f"{f['series']}.", "",
                  f"Tamper AUC of the series' highest slice tamper score (tampered against authentic series): "
                  f"{'n/a' if e.get('max_tamper_auc') is None else format(e['max_tamper_auc'], '.3f')}.", "",
                  "| rule | accuracy | false alarms (authentic series called tampered) | tampered series caught |"
                  " authentic | added_1 | added_3 | removed_all |", "|---|---|---|---|---|---|---|---|"]
        for rule in ("max", "count"):
            r = e.get(rule)
            if not r:
                continue
            pv = r.get("per_variant", {})
            cells = [f"{_pct(pv[v]['correct'])} (n={pv[v]['n']})" if v in pv else "" for v in VARIANTS]
            lines.append(f"| {rule} | {_pct(r.get('accuracy'))} | {_rate(r, 'false_alarm_rate', 'n_authentic')} | "
                         f"{_rate(r, 'detection_rate', 'n_tampered')} | " + " | ".join(cells) + " |")
        tp = e.get("tamper_probability")
        if tp:
            lines += ["", f"The scan rule's probability of being tampered: Brier score {tp['brier_balanced']:.3f} "
                          "(tampered and authentic series weighted half each; 0.25 is a coin toss). Series by that "
                          "probability: " + ", ".join(f"{b['low']:.1f}-{b['high']:.1f}: {b['tampered']} of "
                                                     f"{b['series']} tampered" for b in tp["bins"]) + "."]
        lines += ["", "Tampered series given their true verdict, by tampering method:", ""]
        lines.append("- " + " · ".join(
            f"{name} (n={m['n']}): " + ", ".join(f"{rule} {_pct(m[rule])}" for rule in ("max", "count") if rule in m)
            for name, m in e["per_method"].items()))
        lines += ["", "Per corpus (accuracy; false alarms; caught):", ""]
        for src, rules in e["per_source"].items():
            parts = [f"{rule} {_pct(r.get('accuracy'))}; {_pct(r.get('false_alarm_rate'))}; "
                     f"{_pct(r.get('detection_rate'))}" for rule, r in rules.items()]
            lines.append(f"- {src}: " + " · ".join(parts))
        if e.get("processed"):
            lines += ["", "Held out: authentic series passed whole through one processing each (false alarms: "
                          "series called tampered; unwarned: without the input check's warning):", "",
                      "| processing | series | input check warned | max rule: false alarms (unwarned) |"
                      " scan rule: false alarms (unwarned) | scan rule: right verdict |", "|---|---|---|---|---|---|"]
            for name, g in e["processed"].items():
                cells = [f"{g[rule]['false_alarms']} ({g[rule]['false_alarms_unwarned']})" if rule in g else ""
                         for rule in ("max", "count")]
                right = f"{g['count']['correct']} of {g['n']}" if "count" in g else ""
                lines.append(f"| {name} | {g['n']} | {g['input_check_warned']} | " + " | ".join(cells)
                             + f" | {right} |")
        for variant, h in (e.get("held_out") or {}).items():
            lines += ["", f"Held out (never used to choose the rule): `{variant}`, {h['n']} series "
                          f"({', '.join(f'{k} {n}' for k, n in h['methods'].items())}), beside `added_3` on the same "
                          "series:", "",
                      "| series | n | tampered slices the slice verdict calls tampered | max rule: called tampered |"
                      " scan rule: called tampered |", "|---|---|---|---|---|"]
            for name in (variant, "added_3 on the same series"):
                g = h[name]
                cells = [_pct((g.get(rule) or {}).get("called_tampered")) for rule in ("max", "count")]
                lines.append(f"| {name} | {g['n']} | {_pct(g['slices_called_tampered'])} (of {g['slices']}) | "
                             + " | ".join(cells) + " |")
        lines.append("")
    lines += ["False alarms and tampered series caught with their 95 % Wilson intervals (series of one patient "
              "are not independent: read them as a lower bound on the uncertainty).",
              "Per-variant cells are the share of series given their true verdict (authentic: real_tumor or "
              "no_tumor as the truth says; added: fake_added; removed_all: fake_removed).", ""]
    return "\n".join(lines)
