"""The dataset card and the realism measurement."""
import json

import numpy as np
import pytest

from inference.ml.coco import DatasetWriter, load_dataset
from inference.ml.dataset.builder import BuildConfig, build_dataset
from inference.ml.dataset.card import write_card
from inference.ml.dataset.realism import measure_realism


@pytest.fixture(scope="module")
def small_build(small_corpora, small_slices, tmp_path_factory):
    out = tmp_path_factory.mktemp("cardbuild") / "ds"
    build_dataset(BuildConfig(sources=[], out=out, seed=5, max_images=96, progress=False), slices=small_slices)
    return out


def test_card_counts_contact_sheet_and_realism(small_build):
    card = write_card(small_build, build_seconds=12.0, cnn_seconds=2.0)
    ds = load_dataset(small_build)
    assert card["n_images"] == len(ds) and sum(card["counts"]["verdict"].values()) == len(ds)
    methods = {f"{r.verdict}/{r.method or '-'}" for r in ds}
    assert set(card["counts"]["method"]) == methods
    for key in ("fake_added/splice", "fake_removed/inpaint", "real_tumor"):
        assert 0 < card["tamper_area_fraction"][key]["median"] < 0.5
    for detector in ("histogram_logreg", "border_noise_logreg", "texture_logreg", "small_cnn", "surroundings_logreg",
                     "location_logreg", "brain_level_logreg"):
        aucs = [v for v in card["realism"][detector].values() if v is not None]
        assert aucs and all(0.0 <= v <= 1.0 for v in aucs)
    saved = json.loads((small_build / "card" / "dataset_card.json").read_text())
    assert saved["counts"] == card["counts"]
    md = (small_build / "card" / "DATASET_CARD.md").read_text()
    assert "## Realism" in md and "fake_added/splice vs real_tumor" in md and "`location_logreg` is an audit" in md
    assert "### Beyond the surroundings" in md and "texture_logreg - surroundings" in md
    assert set(card["realism"]["beyond_surroundings"]) == {"histogram_logreg", "border_noise_logreg", "texture_logreg"}
    import cv2

    sheet = cv2.imread(str(small_build / "card" / "contact_sheet.png"))
    n_rows = len(methods)
    assert sheet is not None and sheet.shape[0] >= n_rows * 160 and sheet.shape[1] > 8 * 160


def test_realism_catches_a_careless_method(small_slices, tmp_path):
    """Flat-filled 'removals' without touch-ups are easy to catch: the border noise detector must see it. The
    surroundings control must not: both classes are healthy slices and only the inside of the region changed."""
    lgg = [s for s in small_slices if s.source == "lgg-flair" and 0.3 < (s.position or 0) < 0.8]
    healthy = [s for s in lgg if not s.mask.any()][:120]
    regions = [s.mask for s in lgg if s.tumour_area > 300]
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "careless") as w:
        for i, s in enumerate(healthy):
            split = "train" if i % 3 else "test"
            region = regions[i % len(regions)]
            if i % 2:
                w.add_image(s.image, name=f"a{i}", verdict="no_tumor", patient_id=s.patient_id, source="x",
                            split=split)
            else:
                fake = s.image.copy()
                fake[region] = int(np.median(s.image[region]))
                w.add_image(fake, name=f"f{i}", verdict="fake_removed", patient_id=s.patient_id, source="x",
                            method="flat", split=split, masks=[region])
    result = measure_realism(load_dataset(tmp_path / "careless"), cnn_seconds=0, seed=int(rng.integers(10)))
    assert result["border_noise_logreg"]["all tampered vs authentic"] > 0.9
    assert result["surroundings_logreg"]["all tampered vs authentic"] < 0.75
    assert "brain_level_logreg" not in result  # these images record no stack position
    # every AUC has its interval (test patients resampled): the careless method is told apart beyond doubt
    ci = result["intervals"]
    low, high = ci["border_noise_logreg"]["all tampered vs authentic"]
    assert 0.5 < low <= result["border_noise_logreg"]["all tampered vs authentic"] <= high <= 1.0
    for detector, comparisons in ci.items():
        assert set(comparisons) == set(result[detector]), detector
    from inference.ml.dataset.card import _realism_table

    table = _realism_table(result)
    assert f"{result['border_noise_logreg']['all tampered vs authentic']} ({low:.2f}-{high:.2f})" in table
    # the flat fill is read beyond what its surroundings tell: the paired difference is above 0 beyond doubt
    beyond = result["beyond_surroundings"]["border_noise_logreg"]["all tampered vs authentic"]
    expected = (result["border_noise_logreg"]["all tampered vs authentic"]
                - result["surroundings_logreg"]["all tampered vs authentic"])
    assert beyond["difference"] == pytest.approx(expected, abs=0.002)  # the reported AUCs are rounded
    assert 0.0 < beyond["interval"][0] <= beyond["difference"] <= beyond["interval"][1]
    from inference.ml.dataset.card import _beyond_table

    assert f"{beyond['difference']:+.3f} ({beyond['interval'][0]:+.2f} to" in _beyond_table(
        result["beyond_surroundings"])


def test_auc_interval_resamples_patients():
    from inference.ml.dataset.realism import auc_interval

    rng = np.random.default_rng(5)
    y = np.array([i % 2 for i in range(200)], dtype=bool)
    score = np.where(y, rng.normal(0.6, 0.3, 200), rng.normal(0.4, 0.3, 200))
    many = auc_interval(y, score, [f"p{i}" for i in range(200)], seed=1)
    few = auc_interval(y, score, [f"p{i % 10}" for i in range(200)], seed=1)
    from inference.ml.metrics import roc_auc

    auc = roc_auc(y, score)
    assert many[0] < auc < many[1] and few[0] < auc < few[1]
    assert 0.05 < many[1] - many[0] < 0.2  # 100 against 100 independent slices: about +-0.07
    assert auc_interval(np.ones(5, bool), np.arange(5.0), list("abcde")) is None  # one class: no AUC


def test_auc_difference_pairs_the_resamples():
    """Two detectors' AUCs on the same slices: the paired interval of their difference is narrower than either
    AUC's own interval when the two share most of their signal, and centred on the difference of the AUCs."""
    from inference.ml.dataset.realism import auc_difference, auc_interval
    from inference.ml.metrics import roc_auc

    rng = np.random.default_rng(7)
    y = np.array([i % 2 for i in range(240)], dtype=bool)
    shared = np.where(y, rng.normal(0.7, 0.5, 240), rng.normal(0.3, 0.5, 240))
    a = shared + np.where(y, 0.25, 0.0) + rng.normal(0, 0.05, 240)  # a: the shared signal and a little more
    b = shared + rng.normal(0, 0.05, 240)
    patients = [f"p{i % 24}" for i in range(240)]
    d = auc_difference(y, a, b, patients, seed=3)
    assert d["difference"] == pytest.approx(roc_auc(y, a) - roc_auc(y, b), abs=1e-3)
    low, high = d["interval"]
    assert 0.0 < low < d["difference"] < high  # a reads more than b, beyond doubt
    own = auc_interval(y, a, patients, seed=3)
    assert high - low < own[1] - own[0]  # what the two share cancels in the pairing
    same = auc_difference(y, b, b, patients)
    assert same == {"difference": 0.0, "interval": [0.0, 0.0]}
    assert auc_difference(np.zeros(4, bool), np.arange(4.0), np.arange(4.0), list("abcd")) is None


def test_surroundings_features_read_only_the_ring_outside_the_region():
    """The control sees the ring 2-8 px outside the region (and, through its blurs, a few sigma around that ring),
    nothing inside the region."""
    from inference.ml.dataset.realism import surroundings_features, texture_features

    rng = np.random.default_rng(3)
    image = rng.normal(100, 5, (96, 96)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:96, :96]
    region = (yy - 48) ** 2 + (xx - 48) ** 2 < 12 ** 2
    base = surroundings_features(image, region)
    inside_changed = image.copy()
    inside_changed[region] = 30
    far_changed = image.copy()
    far_changed[(yy - 48) ** 2 + (xx - 48) ** 2 > 45 ** 2] = 200  # beyond the ring (20 px) + 4 sigma (24)
    ring_changed = image.copy()
    ring_changed[((yy - 48) ** 2 + (xx - 48) ** 2 > 15 ** 2) & ((yy - 48) ** 2 + (xx - 48) ** 2 < 18 ** 2)] = 30
    assert np.allclose(surroundings_features(inside_changed, region), base, atol=0.05)
    assert np.allclose(surroundings_features(far_changed, region), base, atol=0.05)
    assert not np.allclose(surroundings_features(ring_changed, region), base, atol=0.05)
    assert not np.allclose(texture_features(inside_changed, region), texture_features(image, region), atol=0.05)
    assert not surroundings_features(image, None).any()


def test_location_features_say_where_the_region_sits_in_the_head():
    """Front to back and distance from the midline in units of the head's spread: a region ahead of the centre
    reads negative, behind positive; left and right of the midline alike; no region, zeros."""
    from inference.ml.dataset.realism import location_features

    yy, xx = np.mgrid[:200, :200]
    image = np.where(((yy - 100) / 80.0) ** 2 + ((xx - 100) / 60.0) ** 2 <= 1, 120, 0).astype(np.uint8)
    sd_y = yy[image > 0].std()

    def disc(cy, cx):
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= 36

    front, back = location_features(image, disc(50, 100)), location_features(image, disc(150, 100))
    assert front[0] == pytest.approx(-50 / sd_y, abs=0.05) and back[0] == pytest.approx(50 / sd_y, abs=0.05)
    assert front[1] == pytest.approx(0.0, abs=0.02)
    left, right = location_features(image, disc(100, 60)), location_features(image, disc(100, 140))
    assert left[1] == pytest.approx(right[1]) and left[1] > 0.5
    assert not location_features(image, None).any()


def test_tumour_free_slices_borrow_a_region_inside_their_own_brain(small_slices):
    """Realism compares a removal with tumour-free slices at a borrowed removal region; a borrowed region that
    spilled onto background or skull would let a detector tell them apart by what is in view, not by traces."""
    from pathlib import Path

    from inference.ml.coco import ImageRecord
    from inference.ml.dataset.realism import BORROW_INSIDE, Sample, _borrow_region
    from inference.ml.tamper.anatomy import analyse

    healthy = next(s for s in small_slices if s.source == "lgg-flair" and not s.mask.any() and 0.4 < s.position < 0.6)
    h, w = healthy.image.shape
    interior = analyse(healthy.image).interior
    yy, xx = np.mgrid[:h, :w]

    def record(verdict):
        return ImageRecord(id=0, file_name="x.png", path=Path("x.png"), width=w, height=h, verdict=verdict,
                           patient_id="p", source="lgg-flair", method="inpaint" if verdict == "fake_removed" else None,
                           split="test")

    ys, xs = np.nonzero(interior)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 < 15 ** 2
    corner = (yy - 12) ** 2 + (xx - 12) ** 2 < 15 ** 2  # on the background
    assert interior[inside].mean() >= BORROW_INSIDE and interior[corner].mean() < 0.5
    removals = [Sample(record("fake_removed"), healthy.image, region) for region in [corner] * 5 + [inside]]
    target = Sample(record("no_tumor"), healthy.image, None)
    for seed in range(6):
        region = _borrow_region(target, removals + [target], np.random.default_rng(seed))
        assert region is inside
    # none fits: the best-placed one rather than none
    half = (yy - cy) ** 2 + (xx - 5) ** 2 < 20 ** 2
    fallback = [Sample(record("fake_removed"), healthy.image, r) for r in (corner, half)]
    best = max((corner, half), key=lambda r: interior[r].mean())
    assert _borrow_region(target, fallback + [target], np.random.default_rng(0)) is best


def test_removal_check_reports_every_method_and_catches_a_flat_fill(small_build):
    """The method-isolated check runs each removal on the dataset's real tumours and compares with its
    tumour-free slices: a flat fill without touch-ups has no noise inside its border and must be caught; the
    real methods get a figure each."""
    from inference.ml.dataset.removal_check import removal_check
    from inference.ml.tamper.base import REMOVE, TamperMethod

    class Flat(TamperMethod):
        name, kind = "flat", REMOVE

        def edit(self, request, anatomy, rng):
            from scipy import ndimage as ndi

            region = ndi.binary_dilation(request.tumour, iterations=4)
            out = request.image.astype(float)
            out[region] = float(np.median(request.image[region]))
            return out, region, {}

        def apply(self, request, rng, **kwargs):
            return super().apply(request, rng, touch_ups=False)

    report = removal_check(load_dataset(small_build), ["inpaint", "patch", Flat()], seed=1)
    ds = load_dataset(small_build)
    n_tumours = sum(r.verdict == "real_tumor" for r in ds)
    assert report["authentic"]["n"] == sum(r.verdict == "no_tumor" for r in ds)
    for name in ("inpaint", "patch", "flat"):
        entry = report["methods"][name]
        assert 0 < entry["n"] <= n_tumours
        assert all(0.0 <= entry[f"{k}_auc"] <= 1.0 for k in ("texture", "border_noise", "surroundings", "location"))
    assert report["methods"]["flat"]["border_noise_auc"] > 0.85
    with pytest.raises(ValueError, match="real_tumor and no_tumor"):
        removal_check([r for r in ds if r.verdict != "real_tumor"])


def test_injection_check_reports_every_method_and_catches_a_flat_disc(small_build):
    """The injection counterpart: each injection method on the dataset's tumour-free slices, with donors from
    real tumours of other patients, against its real tumours. A flat bright disc pasted without touch-ups has no
    texture and no noise inside and must be caught; splice gets a figure for each feature set."""
    from inference.ml.dataset.injection_check import injection_check
    from inference.ml.tamper.base import INJECT, TamperMethod

    class Disc(TamperMethod):
        name, kind = "disc", INJECT

        def edit(self, request, anatomy, rng):
            ys, xs = np.nonzero(anatomy.tissue)
            k = len(ys) // 2
            yy, xx = np.ogrid[: request.image.shape[0], : request.image.shape[1]]
            region = (yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 <= 64
            out = request.image.astype(float)
            out[region] = float(np.percentile(request.image[anatomy.tissue], 95))
            return out, region, {}

        def apply(self, request, rng, **kwargs):
            return super().apply(request, rng, touch_ups=False)

    ds = load_dataset(small_build)
    report = injection_check(ds, ["splice", Disc()], seed=1)
    n_targets = sum(r.verdict == "no_tumor" for r in ds)
    assert report["authentic"]["n"] == sum(r.verdict == "real_tumor" for r in ds)
    for name in ("splice", "disc"):
        entry = report["methods"][name]
        assert 0 < entry["n"] <= n_targets
        assert all(0.0 <= entry[f"{k}_auc"] <= 1.0 for k in ("texture", "border_noise", "surroundings", "location"))
        assert len(entry["texture_mean"]) == len(report["authentic"]["texture_mean"])
    assert report["methods"]["disc"]["texture_auc"] > 0.85
    with pytest.raises(ValueError, match="no_tumor and real_tumor"):
        injection_check([r for r in ds if r.verdict != "no_tumor"])
