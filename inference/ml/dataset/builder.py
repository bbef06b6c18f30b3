"""Build the four-class tampering dataset from real slices with tumour masks.

Recipe (per corpus, per split; a corpus never lends slices or tumours to another):

1. Slices are read (``readers``), 8-bit under the one windowing rule. Tumour slices: mask area >= ``min_area``;
   healthy slices: empty mask; slices with a tiny mask are left out (neither clearly tumour nor clearly not).
   Healthy slices are eligible when they lie in the part of the stack where this corpus's tumours lie
   (between the 0.5th and 99.5th percentile of the tumour slices' relative positions), and are drawn with
   weights that give them the tumour slices' distribution over the stack, so that no class is told apart by
   anatomy (skull base, vertex) rather than by tampering.
2. Patients are split (``splits.split_patients``), per corpus, so every corpus is in every split.
3. With ``n`` = the split's tumour slices (scaled down by ``max_images``, capped by its healthy slices):
   ``real_tumor``: n tumour slices; ``fake_removed``: n removals from tumour slices (removal methods in turn);
   ``no_tumor``: n healthy slices; ``fake_added``: n injections into healthy slices (injection methods in
   turn), the donor tumour from another patient of the same split and corpus (of ``splice.DONOR_OPTIONS``
   drawn, the one whose brain tissue is spread most like the target's). Every one of these four draws
   is position-matched: healthy slices toward the tumour slices' distribution over the stack and tumour slices
   toward the healthy ones', so the slices each side leaves out are those that match worst (with these corpora
   a perfect match would leave too few slices: healthy slices crowd the skull base and the vertex). A slice may
   appear once authentic and once tampered (never twice in one class); that pairs are in the same split is
   harmless and makes the detector look at traces, not anatomy.
4. Every image has its own seed (from ``seed`` and its place in the plan), so the output is byte-identical
   for the same inputs and seed; the writing order is a seeded shuffle and file names are neutral numbers.
5. The dataset is written into a hidden folder beside ``out`` and renamed to ``out`` only once it is complete
   and valid: a build that fails or is interrupted leaves no half-written dataset (``out`` stays as it was).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..coco import SPLITS, DatasetError, DatasetWriter, check_dataset
from ..tamper import INJECT, REMOVE, NotApplicable, TamperRequest, methods as registered_methods, splice
from .readers import SourceError, SourceSlice, read_source
from .splits import DEFAULT_FRACTIONS, split_patients
from ..paths import shared_datasets_dir

log = logging.getLogger(__name__)

VERDICT_ORDER = ("real_tumor", "no_tumor", "fake_added", "fake_removed")
MIN_TUMOUR_AREA = 100
MIN_DONOR_AREA = 150
# healthy slices are eligible between these percentiles of the tumour slices' positions in the stack
ELIGIBLE_POSITION_PERCENTILES = (0.5, 99.5)
DEFAULT_SOURCES = ("lgg-flair", "tcia-progression-t1ce")  # under ../shared/datasets of the project root


def default_sources() -> list[str]:
    return [str(shared_datasets_dir() / name) for name in DEFAULT_SOURCES]


@dataclass
class BuildConfig:
    sources: Sequence[str]
    out: Path
    seed: int = 0
    max_images: int | None = None
    methods: Sequence[str] | None = None  # tampering method names; None: every registered method
    min_area: int = MIN_TUMOUR_AREA
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    touch_ups: bool = True
    mask_pattern: str = "{stem}_mask"
    sequences: Sequence[str] | None = None  # only these sequences of NIfTI / DICOM corpora (readers.read_nifti)
    progress: bool = True


@dataclass
class PlanItem:
    verdict: str
    source: str
    split: str
    seed: int
    candidates: list[tuple]  # (slice, method or None, donor(s) or None), tried in order; an injection is offered
    # splice.DONOR_OPTIONS donors (a tuple when more than one) and takes the one `splice.choose_donor` picks


@dataclass
class BuildReport:
    out: Path
    n_images: int
    counts: dict
    seconds: float
    skipped: Counter = field(default_factory=Counter)


def _item_seed(seed: int, *key: int) -> int:
    return int(np.random.SeedSequence([seed, *key]).generate_state(1)[0])


def _eligible_healthy(tumour: list[SourceSlice], healthy: list[SourceSlice]) -> list[SourceSlice]:
    positions = [s.position for s in tumour if s.position is not None]
    if len(positions) < 5:
        return healthy
    lo, hi = np.percentile(positions, ELIGIBLE_POSITION_PERCENTILES)
    return [s for s in healthy if s.position is None or lo <= s.position <= hi]


def _position_matched_order(tumour: list[SourceSlice], healthy: list[SourceSlice],
                            rng: np.random.Generator, bins: int = 10) -> np.ndarray:
    """A seeded order of ``healthy`` in which the first slices follow the tumour slices' distribution over
    the stack (weighted sampling without replacement), so healthy and tumour classes show the same anatomy."""
    if any(s.position is None for s in tumour + healthy) or not tumour:
        return rng.permutation(len(healthy))
    t_hist = np.histogram([s.position for s in tumour], bins=bins, range=(0, 1))[0].astype(float)
    h_bin = np.clip((np.array([s.position for s in healthy]) * bins).astype(int), 0, bins - 1)
    h_hist = np.bincount(h_bin, minlength=bins).astype(float)
    weight = (t_hist[h_bin] + 0.05 * t_hist.mean()) / np.maximum(h_hist[h_bin], 1.0)
    # Efraimidis-Spirakis: sort by u ** (1 / w), a weighted permutation without replacement
    keys = rng.random(len(healthy)) ** (1.0 / weight)
    return np.argsort(-keys, kind="stable")


def plan_dataset(slices: list[SourceSlice], config: BuildConfig) -> tuple[list[PlanItem], dict]:
    """What to build: one PlanItem per output image (deterministic for the same slices and config)."""
    inject = registered_methods(INJECT, list(config.methods) if config.methods else None)
    remove = registered_methods(REMOVE, list(config.methods) if config.methods else None)
    if not inject or not remove:
        raise ValueError(
            f"The build needs at least one injection and one removal method; got {[m.name for m in inject]} "
            f"and {[m.name for m in remove]} from --methods {config.methods}."
        )
    by_source: dict[str, list[SourceSlice]] = defaultdict(list)
    for s in slices:
        by_source[s.source].append(s)
    tumour_total = sum(1 for s in slices if s.tumour_area >= config.min_area)
    scale = 1.0
    if config.max_images:
        scale = min(1.0, config.max_images / (4.0 * max(tumour_total, 1)))
    items: list[PlanItem] = []
    splits_info: dict = {}
    for ci, source in enumerate(sorted(by_source)):
        corpus = by_source[source]
        tumour = [s for s in corpus if s.tumour_area >= config.min_area]
        tumour_free = [s for s in corpus if not s.mask.any()]
        healthy = _eligible_healthy(tumour, tumour_free)
        if not tumour or not healthy:
            counts = (f"{source}: {len(tumour)} slices with a tumour of at least {config.min_area} pixels and "
                      f"{len(healthy)} tumour-free slices")
            if tumour and tumour_free:
                lo, hi = np.percentile([s.position for s in tumour if s.position is not None],
                                       ELIGIBLE_POSITION_PERCENTILES)
                counts = (f"{source}: {len(tumour)} slices with a tumour of at least {config.min_area} pixels, but "
                          f"none of its {len(tumour_free)} tumour-free slices lies at their brain levels (between "
                          f"{lo:.2f} and {hi:.2f} of the stack; the classes must share them, or the model would "
                          "learn anatomy)")
            raise SourceError(f"{counts}; a corpus needs both (authentic classes come from one corpus).")
        t_counts = Counter(s.patient_id for s in tumour)
        h_counts = Counter(s.patient_id for s in healthy)
        assignment = split_patients(dict(t_counts), dict(h_counts), fractions=config.fractions,
                                    seed=_item_seed(config.seed, ci, 999))
        splits_info[source] = assignment
        for si, split in enumerate(SPLITS):
            t_split = [s for s in tumour if assignment[s.patient_id] == split]
            h_split = [s for s in healthy if assignment[s.patient_id] == split]
            if not t_split or not h_split:
                continue
            n = min(len(t_split), len(h_split))
            n = max(min(n, max(len(inject), len(remove))), int(round(n * scale)))
            rng = np.random.default_rng(_item_seed(config.seed, ci, si))
            # both sides are drawn toward the other's distribution over the stack: healthy slices lie mostly
            # near the skull base and the vertex, tumour slices in the middle; each side leaves out the
            # slices that match worst (the tumour side can spare some: n is capped by the healthy slices)
            t_perm = [t_split[i] for i in _position_matched_order(h_split, t_split, rng)]
            h_perm = [h_split[i] for i in _position_matched_order(t_split, h_split, rng)]
            t_perm2 = [t_split[i] for i in _position_matched_order(h_split, t_split, rng)][:n]
            no_tumor = h_perm[:n]
            # injection bases: an independent draw of the same kind (not the leftovers of the no_tumor draw,
            # which are the worst-matched slices); a slice may so be both a no_tumor image and an injection base
            added_bases = [h_split[i] for i in _position_matched_order(t_split, h_split, rng)][:n]
            donors = [s for s in t_split if s.tumour_area >= MIN_DONOR_AREA] or t_split

            def key(vi: int, k: int) -> int:
                return _item_seed(config.seed, ci, si, vi, k)

            for k in range(n):
                items.append(PlanItem("real_tumor", source, split, key(0, k), [(t_perm[k], None, None)]))
                items.append(PlanItem("no_tumor", source, split, key(1, k), [(no_tumor[k], None, None)]))
                # the method whose turn it is, on this base and then on 5 other bases; only then other methods
                # (keeps the methods balanced: a method that cannot work on one slice works on the next)
                item_rng = np.random.default_rng(key(2, k))
                cands = []
                for mi in range(len(inject)):
                    method = inject[(k + mi) % len(inject)]
                    for j in range(6):
                        base = added_bases[(k + j * 7919) % len(added_bases)]
                        others = [d for d in donors if d.patient_id != base.patient_id]
                        if others:
                            cands.append((base, method, _offer_donors(others, item_rng)))
                items.append(PlanItem("fake_added", source, split, key(2, k), cands))
                cands = []
                for mi in range(len(remove)):
                    for j in range(6):
                        cands.append((t_perm2[(k + j * 7919) % len(t_perm2)], remove[(k + mi) % len(remove)], None))
                items.append(PlanItem("fake_removed", source, split, key(3, k), cands))
    order = np.random.default_rng(_item_seed(config.seed, 4242)).permutation(len(items))
    return [items[i] for i in order], splits_info


def realise(item: PlanItem, *, touch_ups: bool = True) -> tuple[np.ndarray, np.ndarray | None, dict, SourceSlice]:
    """Make one planned image: (uint8 slice, region mask or None, provenance parameters, base slice)."""
    rng = np.random.default_rng(item.seed)
    failures = []
    for base, method, donor in item.candidates:
        if method is None:
            return base.image, (base.mask if item.verdict == "real_tumor" else None), {}, base
        offered = 1
        if isinstance(donor, tuple):
            offered = len(donor)
            donor = donor[splice.choose_donor(base.image, [_tissue_spread(d) for d in donor])]
        if method.kind == INJECT:
            request = TamperRequest(base.image, donor_image=donor.image, donor_mask=donor.mask)
        else:
            request = TamperRequest(base.image, tumour=base.mask)
        try:
            result = method.apply(request, rng, touch_ups=touch_ups)
        except NotApplicable as exc:
            failures.append(f"{method.name} on {base.key}: {exc}")
            continue
        params = dict(result.params)
        if donor is not None:
            params["donor"] = {"patient_id": donor.patient_id, "file": donor.file, "index": donor.index,
                               "offered": offered}
        if failures:
            params["fallbacks"] = failures
        return result.image, result.mask, params, base
    raise NotApplicable(f"{item.verdict} in {item.source}/{item.split}: every candidate failed: {failures[:3]}")


def _offer_donors(others: list[SourceSlice], rng: np.random.Generator):
    """``splice.DONOR_OPTIONS`` donors drawn from ``others`` (one: the very draw of the builds before it)."""
    k = min(splice.DONOR_OPTIONS, len(others))
    if k == 1:
        return others[int(rng.integers(len(others)))]
    return tuple(others[int(i)] for i in rng.choice(len(others), k, replace=False))


_SPREADS: dict[str, float | None] = {}


def _tissue_spread(donor: SourceSlice) -> float | None:
    if donor.key not in _SPREADS:
        _SPREADS[donor.key] = splice.tissue_spread(donor.image, donor.mask)
    return _SPREADS[donor.key]


def _instances(verdict: str, mask: np.ndarray | None) -> list[np.ndarray]:
    """Ground-truth regions: a real tumour's connected components; a tampered region as one instance."""
    if mask is None:
        return []
    if verdict == "real_tumor":
        from scipy import ndimage as ndi

        labels, n = ndi.label(mask, structure=np.ones((3, 3)))
        return [labels == i for i in range(1, n + 1)]
    return [mask]


def build_dataset(
    config: BuildConfig, *, slices: list[SourceSlice] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Read the sources, plan, tamper and write the dataset to ``config.out``; validate it. Returns counts."""
    start = time.monotonic()
    out = Path(config.out)
    _check_out(out)
    if slices is None:
        if not config.sources:
            raise SourceError("No source was given.")
        slices = []
        for spec in config.sources:
            slices.extend(read_source(spec, mask_pattern=config.mask_pattern, sequences=config.sequences))
    if not slices:
        raise SourceError("The sources hold no slices.")
    items, splits_info = plan_dataset(slices, config)
    info = {
        "description": "MRI tampering dataset (real_tumor, no_tumor, fake_added, fake_removed)",
        "builder": "inference.ml.dataset.builder",
        "seed": config.seed,
        "sources": sorted({s.source for s in slices}),
        "methods": sorted({m.name for item in items for _, m, _ in item.candidates if m is not None}),
        "min_tumour_area": config.min_area,
        "windowing": "imaging.to_uint8: 8-bit kept; other data linear between the 0.5th and 99.5th percentile per volume",
        "splits": {src: dict(sorted(a.items())) for src, a in splits_info.items()},
    }
    bar = None
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="img", desc="building", mininterval=1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        counts, skipped = _write(items, info, staging, config, bar, on_progress)
        check_dataset(staging, require_patient_disjoint=True)
        _check_out(out)  # still new or empty: nothing was written there while the build ran
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(out, 0o777 & ~umask)  # mkdtemp's folder is private; the dataset gets an ordinary one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return BuildReport(out=out, n_images=sum(counts.values()), counts=dict(counts),
                       seconds=time.monotonic() - start, skipped=skipped)


def _check_out(out: Path) -> None:
    """``out`` must be a new or empty folder (a build never mixes with or replaces earlier files)."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} is a file; the output must be a new or empty folder.")
    if out.is_dir() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty; choose a new output directory.")


def _write(items: list[PlanItem], info: dict, root: Path, config: BuildConfig, bar,
           on_progress: Callable[[int, int], None] | None) -> tuple[Counter, Counter]:
    """Realise and write every planned image into ``root``; returns (counts, skipped)."""
    counts: Counter = Counter()
    skipped: Counter = Counter()
    with DatasetWriter(root, info=info) as writer:
        for i, item in enumerate(items):
            try:
                image, mask, params, base = realise(item, touch_ups=config.touch_ups)
            except NotApplicable as exc:
                log.warning("%s", exc)
                skipped[(item.source, item.split, item.verdict)] += 1
                if bar is not None:
                    bar.update(1)
                continue
            method = params.get("method") if item.verdict in ("fake_added", "fake_removed") else None
            provenance = {
                "source_file": base.file, "slice_index": base.index, "seed": item.seed,
                "position": None if base.position is None else round(base.position, 3),
            }
            if base.meta.get("sequence"):
                provenance["sequence"] = base.meta["sequence"]
            if params:
                provenance["params"] = params
            regions = _instances(item.verdict, mask)
            writer.add_image(
                image, name=f"{i:06d}", verdict=item.verdict, patient_id=base.patient_id, source=item.source,
                method=method, split=item.split, masks=regions,
                extra={"provenance": provenance, "mask_area": int(sum(r.sum() for r in regions))},
            )
            counts[(item.source, item.split, item.verdict, method)] += 1
            if bar is not None:
                bar.update(1)
            if on_progress is not None:
                on_progress(i + 1, len(items))
    return counts, skipped
