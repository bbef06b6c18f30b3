"""The builder and the build_dataset command on a small real corpus: the output validates, splits are by
patient, verdicts balanced, every method in every split, the same seed gives the same bytes."""
import os
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from inference.ml.coco import load_dataset, validate_dataset
from inference.ml.dataset.builder import BuildConfig, build_dataset
from inference.ml.dataset.readers import SourceError, SourceWarning
from inference.ml.dataset.splits import split_patients
from inference.ml.tamper import INJECT, REMOVE, methods

MAX_IMAGES = 72


@pytest.fixture(scope="module")
def built(small_corpora, small_slices, tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "a"
    config = BuildConfig(sources=[str(p) for p in small_corpora], out=out, seed=3, max_images=MAX_IMAGES,
                         progress=False)
    report = build_dataset(config, slices=small_slices)
    return out, report


def test_output_validates_and_is_balanced(built):
    out, report = built
    assert validate_dataset(out, require_patient_disjoint=True) == []
    ds = load_dataset(out)
    assert len(ds) == report.n_images >= MAX_IMAGES * 0.8
    per_source = defaultdict(Counter)
    for rec in ds:
        per_source[rec.source][rec.verdict] += 1
    assert set(per_source) == {"lgg-flair", "tcia-progression-t1ce"}
    for source, counts in per_source.items():
        assert len(counts) == 4 and max(counts.values()) - min(counts.values()) <= 3, (source, counts)


def test_patients_split_and_methods_everywhere(built):
    out, _ = built
    ds = load_dataset(out)
    splits_of = defaultdict(set)
    methods_in = defaultdict(set)
    for rec in ds:
        splits_of[(rec.source, rec.patient_id)].add(rec.split)
        if rec.method:
            methods_in[(rec.split, rec.verdict)].add(rec.method)
    assert all(len(s) == 1 for s in splits_of.values())
    injections = {m.name for m in methods(INJECT)}
    removals = {m.name for m in methods(REMOVE)}
    for split in ("train", "val", "test"):
        assert methods_in[(split, "fake_added")] == injections
        assert methods_in[(split, "fake_removed")] == removals


def test_provenance_and_masks(built):
    out, _ = built
    for rec in load_dataset(out):
        prov = rec.extra["provenance"]
        assert prov["source_file"] and isinstance(prov["seed"], int)
        mask = rec.mask()
        assert rec.extra["mask_area"] == int(mask.sum())
        if rec.verdict == "fake_added":
            assert prov["params"]["donor"]["patient_id"] != rec.patient_id
        if rec.verdict in ("fake_added", "fake_removed"):
            assert prov["params"]["method"] == rec.method and mask.any()
        if rec.verdict == "no_tumor":
            assert not mask.any() and rec.method is None


def test_same_seed_same_bytes(built, small_corpora, small_slices, tmp_path):
    out, _ = built
    again = tmp_path / "b"
    build_dataset(BuildConfig(sources=[str(p) for p in small_corpora], out=again, seed=3, max_images=MAX_IMAGES,
                              progress=False), slices=small_slices)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_split_patients_is_seeded_and_disjoint():
    counts = {f"p{i}": (i * 7) % 13 + 1 for i in range(30)}
    a = split_patients(counts, seed=1)
    assert a == split_patients(counts, seed=1) and set(a) == set(counts)
    share = Counter()
    for p, s in a.items():
        share[s] += counts[p]
    total = sum(counts.values())
    assert abs(share["train"] / total - 0.7) < 0.05 and abs(share["test"] / total - 0.15) < 0.05
    assert split_patients(counts, seed=2) != a


def test_command_builds_and_refuses_bad_input(small_corpora, tmp_path):
    lgg, tcia = small_corpora
    out = tmp_path / "cmd"
    call_command("build_dataset", "--source", str(lgg), "--source", str(tcia), "--out", str(out),
                 "--max-images", "40", "--methods", "splice,inpaint", "--seed", "1", "--no-card", verbosity=0)
    ds = load_dataset(out)
    assert {r.method for r in ds if r.method} == {"splice", "inpaint"}
    with pytest.raises(CommandError, match="no image with a mask"), pytest.warns(SourceWarning, match="no mask found"):
        call_command("build_dataset", "--source", str(tmp_path / "cmd" / "images"), "--out", str(tmp_path / "x"),
                     verbosity=0)
    with pytest.raises(CommandError, match="Unknown tampering method"):
        call_command("build_dataset", "--source", str(lgg), "--out", str(tmp_path / "y"), "--methods", "gan2",
                     verbosity=0)
    with pytest.raises(CommandError, match="not empty"):
        call_command("build_dataset", "--source", str(lgg), "--out", str(out), verbosity=0)


def test_an_interrupted_build_leaves_nothing_behind(small_slices, tmp_path):
    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    config = BuildConfig(sources=[], out=out, seed=1, max_images=40, progress=False)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(config, slices=small_slices, on_progress=stop)
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor its hidden staging folder
    out.mkdir()  # an empty folder made for the build stays, empty, when the build fails
    with pytest.raises(KeyboardInterrupt):
        build_dataset(config, slices=small_slices, on_progress=stop)
    assert list(tmp_path.iterdir()) == [out] and list(out.iterdir()) == []
    report = build_dataset(config, slices=small_slices)
    assert report.out == out and validate_dataset(out, require_patient_disjoint=True) == []
    umask = os.umask(0)
    os.umask(umask)
    assert list(tmp_path.iterdir()) == [out] and (out.stat().st_mode & 0o777) == 0o777 & ~umask


def test_a_corpus_without_healthy_slices_is_refused(small_slices, tmp_path):
    only_tumours = [s for s in small_slices if s.mask.any()]
    with pytest.raises(SourceError, match="a corpus needs both"):
        build_dataset(BuildConfig(sources=[], out=tmp_path / "o", progress=False), slices=only_tumours)


def test_a_corpus_whose_healthy_slices_lie_elsewhere_in_the_head_says_so(small_slices, tmp_path):
    from dataclasses import replace

    corpus = [s for s in small_slices if s.source == small_slices[0].source]
    tumours = [replace(s, position=0.4 + 0.01 * (i % 20)) for i, s in enumerate(corpus) if s.tumour_area >= 100]
    healthy = [replace(s, position=0.05) for s in corpus if not s.mask.any()]  # all at the skull base
    with pytest.raises(SourceError, match=rf"none of its {len(healthy)} tumour-free slices lies at their brain "
                                          r"levels \(between 0.40 and 0.59 of the stack"):
        build_dataset(BuildConfig(sources=[], out=tmp_path / "o", progress=False), slices=tumours + healthy)
    assert not (tmp_path / "o").exists()


def test_default_sources_are_the_two_shared_corpora():
    from inference.ml.dataset.builder import default_sources

    sources = [Path(p) for p in default_sources()]
    assert [p.name for p in sources] == ["lgg-flair", "tcia-progression-t1ce"]
    assert all(p.is_dir() for p in sources)


def _synthetic_corpus(n_patients=20):
    """Tumour slices in the middle of the stack, healthy slices crowding both ends of the tumours' range (as in
    TCGA-LGG), plus a few healthy ones in the middle; more tumour slices than healthy ones."""
    import numpy as np

    from inference.ml.dataset.readers import SourceSlice

    rng = np.random.default_rng(1)
    image = np.full((16, 16), 80, np.uint8)
    full, empty = np.ones((16, 16), bool), np.zeros((16, 16), bool)
    slices = []
    for p in range(n_patients):
        positions = [("t", x) for x in rng.normal(0.55, 0.12, 14).clip(0.1, 0.95)]
        positions += [("h", x) for x in np.r_[rng.uniform(0.25, 0.35, 4), rng.uniform(0.75, 0.85, 4),
                                              rng.uniform(0.45, 0.65, 3)]]
        for i, (kind, pos) in enumerate(positions):
            slices.append(SourceSlice(image, full if kind == "t" else empty, f"P{p:02d}", "synthetic",
                                      f"P{p:02d}.tif", i, position=float(pos)))
    return slices


def test_every_class_is_drawn_at_the_same_brain_levels():
    import numpy as np

    from inference.ml.dataset.builder import plan_dataset

    items, _ = plan_dataset(_synthetic_corpus(), BuildConfig(sources=[], out=Path("unused"), seed=0))
    extremeness = defaultdict(list)  # how far from mid-stack each class's slices lie
    for item in items:
        extremeness[item.verdict].append(abs(item.candidates[0][0].position - 0.55))
    mean = {v: float(np.mean(x)) for v, x in extremeness.items()}
    # injections use healthy slices drawn like the no_tumor ones (not the worst-matched leftovers) ...
    assert abs(mean["fake_added"] - mean["no_tumor"]) < 0.03
    # ... removals tumour slices drawn like the real_tumor ones ...
    assert abs(mean["fake_removed"] - mean["real_tumor"]) < 0.03
    # ... and each side is pulled toward the other: the healthy classes lie nearer mid-stack than the healthy
    # slices at large, the tumour classes farther out than the tumour slices at large
    healthy = [abs(s.position - 0.55) for s in _synthetic_corpus() if not s.mask.any()]
    tumour = [abs(s.position - 0.55) for s in _synthetic_corpus() if s.mask.any()]
    assert mean["no_tumor"] < np.mean(healthy) - 0.02
    assert mean["real_tumor"] > np.mean(tumour) + 0.005
