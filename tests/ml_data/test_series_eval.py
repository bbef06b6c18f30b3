"""The series-level evaluation: real series, the build's patient split, tampered variants, scan-level rules."""
from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from inference.ml import series_eval
from inference.ml.dataset.builder import BuildConfig, plan_dataset
from inference.ml.labels import VERDICTS


@pytest.fixture(scope="module")
def series(small_slices):
    found = series_eval.group_series(small_slices)
    series_eval.assign_splits(found, seed=0)
    return found


def test_series_are_volumes_or_patient_folders_in_stack_order(series, small_slices):
    # 8 LGG cases (one folder each), 7 TCIA patients with a Pre and a Post volume each
    lgg = [s for s in series if s.source == "lgg-flair"]
    tcia = [s for s in series if s.source == "tcia-progression-t1ce"]
    assert len(lgg) == 8 and len(tcia) == 14
    assert sum(len(s.slices) for s in series) == len(small_slices)
    for s in lgg:
        numbers = [x.meta["slice"] for x in s.slices]
        assert numbers == sorted(numbers) and len({x.patient_id for x in s.slices}) == 1
    for s in tcia:
        assert len({x.file for x in s.slices}) == 1
        assert [x.index for x in s.slices] == sorted(x.index for x in s.slices)
    # a series is real_tumor when a slice shows a tumour of at least MIN_TUMOUR_AREA pixels
    for s in series:
        assert s.truth == ("real_tumor" if max(x.tumour_area for x in s.slices) >= 100 else "no_tumor")
    assert sum(s.truth == "real_tumor" for s in series) >= 18


def test_the_patient_split_is_the_builds(series, small_slices):
    _, builds = plan_dataset(small_slices, BuildConfig(sources=[], out=None, seed=0))
    ours = series_eval.assign_splits(series, seed=0)
    assert ours == builds
    for s in series:
        assert s.split == builds[s.source][s.patient_id]


def test_tampered_variants_change_only_what_they_say(series):
    test = [s for s in series if s.split == "test"]
    pool = [s for s in series if s.split == "test"]
    cases, pixels, skipped = series_eval.make_cases(test, seed=0, donor_pool=pool)
    assert not skipped
    by_key = {x.key: x for s in test for x in s.slices}
    for case in cases:
        original = next(s for s in test if s.key == case.series)
        keys = [x.key for x in original.slices]
        assert len(case.slice_keys) == len(keys)
        changed = [i for i, (a, b) in enumerate(zip(case.slice_keys, keys)) if a != b]
        assert changed == case.tampered
        for i in changed:
            assert not np.array_equal(pixels[case.slice_keys[i]], by_key[keys[i]].image)
        if case.variant == "authentic":
            assert case.truth == original.truth and not changed
        elif case.variant.startswith("added_"):
            n = int(case.variant.split("_")[1])
            assert case.truth == "fake_added" and len(changed) == n
            assert changed == list(range(changed[0], changed[0] + n))  # neighbouring slices
            assert not any(original.slices[i].mask.any() for i in changed)  # into tumour-free slices
        else:
            assert case.truth == "fake_removed"
            assert changed == [i for i, x in enumerate(original.slices) if x.mask.any()]  # every tumour slice
    assert {c.variant for c in cases} == set(series_eval.VARIANTS)
    # seeded: the same series and seed give the same pixels, evaluated alone or among others
    again, pixels2, _ = series_eval.make_cases(test[:1], seed=0, donor_pool=pool)
    for case in again:
        for key in case.slice_keys:
            if key in pixels2:
                assert np.array_equal(pixels2[key], pixels[key])


def _p(**scores):
    out = {v: 0.0 for v in VERDICTS}
    out.update(scores)
    return out


def test_rules_on_hand_made_scores():
    authentic = [_p(real_tumor=0.99, no_tumor=0.01)] * 5 + [_p(no_tumor=0.1, fake_added=0.9)]
    # the shipped max rule: the real tumour outweighs a 0.9 false alarm, and a 0.985 injection too
    assert series_eval.max_rule(authentic) == "real_tumor"
    injected = authentic[:-1] + [_p(real_tumor=0.015, fake_added=0.985)]
    assert series_eval.max_rule(injected) == "real_tumor"
    assert series_eval.series_rule_verdict(injected, 0.95, 1) == "fake_added"
    assert series_eval.series_rule_verdict(authentic, 0.95, 1) == "real_tumor"
    assert series_eval.series_rule_verdict(authentic, 0.8, 1) == "fake_added"
    assert series_eval.series_rule_verdict(authentic, 0.8, 2) == "real_tumor"
    # which tampering: the larger sum over the flagged slices
    mixed = [_p(fake_added=0.6, fake_removed=0.39), _p(fake_removed=0.98), _p(no_tumor=1.0)]
    assert series_eval.series_rule_verdict(mixed, 0.9, 2) == "fake_removed"
    assert series_eval.series_rule_verdict([_p(no_tumor=0.9, real_tumor=0.1)], 0.5, 1) == "no_tumor"


def test_the_rule_is_chosen_under_the_false_alarm_limit():
    def case(variant, truth, scores):
        return {"variant": variant, "truth": truth, "scores": scores}

    clean = [_p(real_tumor=0.99, no_tumor=0.01)] * 4
    cases = [case("authentic", "real_tumor", clean + [_p(real_tumor=0.1, fake_added=0.9)]),
             case("authentic", "real_tumor", clean),
             case("added_1", "fake_added", clean + [_p(fake_added=0.97)]),
             case("removed_all", "fake_removed", [_p(fake_removed=0.96), _p(fake_removed=0.93), _p(no_tumor=1)])]
    result = series_eval.choose_rule(cases, max_false_alarm=0.0)
    # the highest threshold that catches both with no false alarm; these four series are separated perfectly, so
    # the fitted slope is the steepest the fit tries
    assert result["chosen"] == {"threshold": 0.96, "min_slices": 1, "slope": 10.0}
    chosen = series_eval.score_rule(cases, lambda s: series_eval.series_rule_verdict(s, 0.96, 1, 10.0))
    assert chosen["false_alarm_rate"] == 0.0 and chosen["detection_rate"] == 1.0 and chosen["accuracy"] == 1.0
    shipped = series_eval.score_rule(cases, series_eval.max_rule)
    assert shipped["per_variant"]["added_1"]["correct"] == 0.0
    # with room for one false alarm in two, a lower threshold ties on balanced accuracy: the higher one stays
    assert series_eval.choose_rule(cases, max_false_alarm=0.5)["chosen"]["threshold"] == 0.96


def test_command_reanalyses_slices_and_refuses_bad_input(tmp_path):
    doc = {"model": {"name": "m", "version": "1", "sha256": "0" * 64}, "seed": 0, "cases": [
        {"series": f"s{i}", "variant": v, "truth": t, "split": split, "source": "x", "patient_id": f"p{i}",
         "tampered": [], "methods": [], "scores": sc}
        for split in ("val", "test")
        for i, (v, t, sc) in enumerate([
            ("authentic", "real_tumor", [_p(real_tumor=0.99, no_tumor=0.01), _p(no_tumor=1.0)]),
            ("added_1", "fake_added", [_p(real_tumor=0.99, no_tumor=0.01), _p(fake_added=0.99)]),
        ])]}
    src = tmp_path / "slices.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "out"
    call_command("evaluate_series", "--out", str(out), "--from-slices", str(src), verbosity=0)
    metrics = json.loads((out / "series_metrics.json").read_text())
    assert metrics["chosen_on_val"]["min_slices"] == 1
    assert metrics["splits"]["test"]["count"]["accuracy"] == 1.0
    assert metrics["splits"]["test"]["max_tamper_auc"] == 1.0  # 0.99 on the injected slice, 0 on the authentic
    assert metrics["splits"]["test"]["max"]["per_variant"]["added_1"]["correct"] == 0.0
    assert "| count | 100.0 %" in (out / "series_report.md").read_text()
    with pytest.raises(CommandError, match="not a slices.json"):
        call_command("evaluate_series", "--out", str(out), "--from-slices", str(tmp_path / "missing.json"))
    with pytest.raises(CommandError, match="between 0 and 1"):
        call_command("evaluate_series", "--out", str(out), "--from-slices", str(src), "--max-false-alarm", "2")


def test_collect_predicts_each_distinct_slice_once(small_corpora, tmp_path):
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import Predictor

    predictor = Predictor.load(save_random_bundle(tmp_path / "tiny.pt", backbone="tiny", seed=0), device="cpu")
    calls = []
    predict = predictor.predict_batch
    predictor.predict_batch = lambda images: calls.append(len(images)) or predict(images)
    doc = series_eval.collect(predictor, [str(p) for p in small_corpora], splits=("test",), max_series=2,
                              progress=False)
    sources = {c["source"] for c in doc["cases"]}
    assert sources == {"lgg-flair", "tcia-progression-t1ce"}  # a short run still sees every corpus
    assert len({c["series"] for c in doc["cases"]}) == 2
    assert {c["variant"] for c in doc["cases"]} == set(series_eval.VARIANTS)
    authentic = {c["series"]: c for c in doc["cases"] if c["variant"] == "authentic"}
    tampered_slices = sum(len(c["tampered"]) for c in doc["cases"])
    n_authentic = sum(len(c["scores"]) for c in authentic.values())
    assert sum(calls) == doc["n_slices_predicted"] == n_authentic + tampered_slices
    for c in doc["cases"]:
        base = authentic[c["series"]]["scores"]
        assert len(c["scores"]) == len(base)
        # an untouched slice has its authentic scores: it is the same pixels
        assert all(c["scores"][i] == base[i] for i in range(len(base)) if i not in c["tampered"])
        assert all(abs(sum(p.values()) - 1.0) < 1e-4 for p in c["scores"])
    with pytest.raises(ValueError, match="Unknown split"):
        series_eval.collect(predictor, [str(p) for p in small_corpora], splits=("holdout",), progress=False)

    # processed: every slice of the authentic series through one perturbation; the input check measured on each
    calls.clear()
    jpeg = "processed JPEG quality 75"
    doc = series_eval.collect(predictor, [str(p) for p in small_corpora], splits=("test",), max_series=1,
                              progress=False, variants=("authentic", jpeg))
    (authentic,), (processed,) = ([c for c in doc["cases"] if c["variant"] == v] for v in ("authentic", jpeg))
    assert processed["truth"] == authentic["truth"] and processed["tampered"] == []
    assert processed["methods"] == ["JPEG quality 75"] and len(processed["scores"]) == len(authentic["scores"])
    assert sum(calls) == 2 * len(authentic["scores"])  # every processed slice is new pixels
    assert authentic["input_check_within"] is True and processed["input_check_within"] is False  # JPEG's blocks


def test_the_slope_is_fitted_where_the_series_overlap():
    """fit_slope: the maximum of the even-odds likelihood; a shallow slope where tampered and authentic series
    overlap, a steep one where they do not; the probability's Brier score says how well it fits."""
    from inference.ml.scan_rule import fit_slope, tamper_probability

    overlapping = [(0.99, True), (0.9, True), (0.5, True), (0.95, False), (0.6, False), (0.3, False)]
    separated = [(0.999, True), (0.995, True), (0.5, False), (0.3, False)]
    shallow, steep = fit_slope(overlapping, 0.9), fit_slope(separated, 0.9)
    assert 0 < shallow < 1.0 and steep > 5 * shallow
    assert fit_slope([(0.99, True)], 0.9) == 1.0  # nothing to fit against
    assert tamper_probability(0.9, 0.9, shallow) == pytest.approx(0.5)
    cases = [{"variant": "added_1" if y else "authentic", "scores": [_p(fake_added=e, no_tumor=1 - e)]}
             for e, y in overlapping]
    quality = series_eval.probability_quality(cases, {"threshold": 0.9, "min_slices": 1, "slope": shallow})
    assert 0.1 < quality["brier_balanced"] < 0.25
    assert sum(b["series"] for b in quality["bins"]) == 6 and sum(b["tampered"] for b in quality["bins"]) == 3


def test_a_tumour_volume_is_injected_with_one_geometry(series):
    """``added_volume``: five neighbouring donor tumour slices into five neighbouring tumour-free slices, placed as
    one object (the regions overlap from slice to slice, where fresh draws scatter them)."""
    from scipy import ndimage as ndi

    hosts = [s for s in series if s.split == "train"]
    cases, pixels, skipped = series_eval.make_cases(hosts, seed=0, variants=("added_volume",), donor_pool=series)
    assert cases, skipped
    by_key = {x.key: x for s in hosts for x in s.slices}
    for case in cases:
        original = next(s for s in hosts if s.key == case.series)
        n = series_eval.VOLUME_SLICES
        assert case.variant == "added_volume" and case.truth == "fake_added" and len(case.tampered) == n
        assert case.tampered == list(range(case.tampered[0], case.tampered[0] + n))
        assert not any(original.slices[i].mask.any() for i in case.tampered)
        changed = [np.abs(pixels[case.slice_keys[i]].astype(int) - by_key[original.slices[i].key].image) > 0
                   for i in case.tampered]
        centres = [np.array(ndi.center_of_mass(c)) for c in changed]
        for a, b, ca, cb in zip(changed, changed[1:], centres, centres[1:]):
            assert (a & b).sum() > 0.3 * min(a.sum(), b.sum())  # one object through the slices
            assert np.hypot(*(ca - cb)) < 15
    # the rule is never chosen on it: analyse keeps it apart
    more, _, _ = series_eval.make_cases(hosts, seed=0, variants=("authentic", "added_3"), donor_pool=series)

    def doc(cases):
        return {"model": {"sha256": "0" * 64}, "seed": 0, "cases": [
            {"series": c.series, "variant": c.variant, "truth": c.truth, "split": "val", "source": c.source,
             "patient_id": c.patient_id, "tampered": c.tampered, "methods": c.methods,
             # injected slices read at 0.97, the volume's at 0.75 (a rule chosen on them would go lower)
             "scores": [(_p(fake_added=0.75, no_tumor=0.25) if c.variant == "added_volume" else
                         _p(fake_added=0.97, no_tumor=0.03)) if i in c.tampered else _p(no_tumor=1.0)
                        for i in range(len(c.slice_keys))]} for c in cases]}

    result = series_eval.analyse(doc(more + cases))
    assert result["chosen_on_val"] == series_eval.analyse(doc(more))["chosen_on_val"]
    assert result["chosen_on_val"]["threshold"] > 0.75
    val = result["splits"]["val"]
    assert val["count"]["n_cases"] == len(more)
    held = val["held_out"]["added_volume"]
    assert held["n"] == len(cases) and held["added_volume"]["slices_called_tampered"] == 1.0
    assert held["added_volume"]["count"]["called_tampered"] == 0.0  # 0.75 is under the rule's threshold
    assert held["added_3 on the same series"]["count"]["called_tampered"] == 1.0
    assert "Held out (never used to choose the rule): `added_volume`" in series_eval.report_markdown(result)
    with pytest.raises(ValueError, match="Unknown variant"):
        series_eval.collect(None, [], variants=("authentic", "added_7"))


def test_a_given_placement_is_kept_and_its_offsets_carried():
    from inference.ml.tamper import NotApplicable, TamperRequest
    from inference.ml.tamper.splice import Splice, carry_offset, crop_centre

    # offsets: mirrored, then rotated (cv2's convention: +90 degrees turns +x into -y on the image), then scaled
    assert carry_offset((0.0, 4.0), scale=1.0, angle=0.0, flip=True) == pytest.approx((0.0, -4.0))
    assert carry_offset((0.0, 4.0), scale=2.0, angle=90.0, flip=False) == pytest.approx((-8.0, 0.0), abs=1e-9)
    assert carry_offset((3.0, 0.0), scale=1.0, angle=90.0, flip=False) == pytest.approx((0.0, 3.0), abs=1e-9)
    mask = np.zeros((64, 64), bool)
    mask[20:31, 10:15] = True
    assert crop_centre(mask) == (25.5, 12.5)  # the padded box: rows 12-38, columns 2-22
    with pytest.raises(NotApplicable):
        crop_centre(np.zeros((8, 8), bool))

    from tests.ml_model.conftest import sample_slices

    tumour, tumour_mask, healthy = sample_slices()
    rng = np.random.default_rng(0)
    free = Splice().apply(TamperRequest(healthy, donor_image=tumour, donor_mask=tumour_mask), rng)
    geometry = {k: free.params[k] for k in ("scale", "angle", "flip", "band")}
    again = Splice().apply(TamperRequest(healthy, donor_image=tumour, donor_mask=tumour_mask,
                                         placement={**geometry, "centre": free.params["position"]}),
                           np.random.default_rng(1))
    assert again.params["given_placement"] and "given_placement" not in free.params
    assert [again.params[k] for k in ("scale", "angle", "flip", "band", "position")] == \
        [free.params[k] for k in ("scale", "angle", "flip", "band", "position")]
    # the same region, whatever the generator draws (but for the rounding of the recorded scale and angle)
    assert (again.mask & free.mask).sum() > 0.99 * (again.mask | free.mask).sum()
    with pytest.raises(NotApplicable, match="off the slice|outside the brain"):
        Splice().apply(TamperRequest(healthy, donor_image=tumour, donor_mask=tumour_mask,
                                     placement={**geometry, "centre": (3, 3)}), rng)


def test_processed_authentic_series_are_counted_as_false_alarms_apart():
    """Processed authentic series never choose the rule; per processing: false alarms, and those the input
    check did not warn on."""
    def case(series, variant, scores, within=True, split="val"):
        truth = "fake_added" if variant == "added_1" else "no_tumor"
        return {"series": series, "variant": variant, "truth": truth, "split": split, "source": "x",
                "patient_id": series, "tampered": [1] if variant == "added_1" else [], "methods": [],
                "scores": scores, "input_check_within": within}

    clean, flagged = [_p(no_tumor=1.0)] * 3, [_p(no_tumor=1.0), _p(fake_added=0.999, no_tumor=0.001), _p(no_tumor=1.0)]
    cases = [case("a", "authentic", clean), case("b", "authentic", clean), case("a", "added_1", flagged),
             case("b", "added_1", flagged),
             case("a", "processed JPEG quality 95", flagged, within=True),  # a false alarm, unwarned
             case("b", "processed JPEG quality 95", clean, within=True),
             case("a", "processed gaussian noise sigma 3", flagged, within=False),  # a false alarm, warned
             case("b", "processed gaussian noise sigma 3", flagged, within=False)]
    result = series_eval.analyse({"model": {"sha256": "0" * 64}, "seed": 0, "cases": cases})
    val = result["splits"]["val"]
    assert val["count"]["n_cases"] == 4 and val["count"]["false_alarm_rate"] == 0.0
    processed = val["processed"]
    assert list(processed) == ["as read", "gaussian noise sigma 3", "JPEG quality 95"]
    assert processed["as read"]["count"] == {"false_alarms": 0, "correct": 2, "false_alarms_unwarned": 0}
    assert processed["JPEG quality 95"]["count"] == {"false_alarms": 1, "correct": 1, "false_alarms_unwarned": 1}
    assert processed["gaussian noise sigma 3"]["input_check_warned"] == 2
    assert processed["gaussian noise sigma 3"]["count"]["false_alarms_unwarned"] == 0
    assert "| JPEG quality 95 | 2 | 0 | 1 (1) | 1 (1) | 1 of 2 |" in series_eval.report_markdown(result)
