"""The Predictor contract (docs/architecture.md) on real slices, with a random tiny bundle."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.ml.coco import read_png
from inference.ml.labels import VERDICTS
from inference.ml.model import ModelConfig, build_model, save_random_bundle
from inference.ml.predictor import (
    Instance,
    ModelNotInstalled,
    Predictor,
    SlicePrediction,
    flip_output,
    fuse_scores,
    fuse_views,
    DEFAULT_WEIGHTS,
    select_instances,
    volume_verdict,
)
from inference.ml.scan_rule import ScanRuleError, check_scan_rule, load_scan_rule, scan_rule_path

DATA = Path(__file__).resolve().parents[1] / "data" / "ml_model"


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return save_random_bundle(tmp_path_factory.mktemp("weights") / "detector.pt", backbone="tiny", seed=0)


@pytest.fixture(scope="module")
def predictor(bundle_path):
    return Predictor.load(bundle_path, device="cpu")


@pytest.fixture(scope="module")
def tumour_slice():
    return read_png(DATA / "lgg_TCGA_CS_4941_14.png")


def _check(pred: SlicePrediction, shape):
    assert pred.verdict in VERDICTS
    assert set(pred.scores) == set(VERDICTS)
    assert sum(pred.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert all(0.0 <= p <= 1.0 for p in pred.scores.values())
    assert pred.verdict == max(pred.scores, key=pred.scores.get)
    assert pred.tamper_score == pytest.approx(pred.scores["fake_added"] + pred.scores["fake_removed"])
    for inst in pred.instances:
        assert inst.label == pred.verdict
        assert inst.mask.shape == shape and inst.mask.dtype == bool
        x0, y0, x1, y1 = inst.box
        assert 0 <= x0 <= x1 <= shape[1] and 0 <= y0 <= y1 <= shape[0]
    if pred.verdict == "no_tumor":
        assert pred.instances == []


def test_load_reports_identity(bundle_path, predictor):
    assert predictor.sha256 == hashlib.sha256(Path(bundle_path).read_bytes()).hexdigest()
    assert predictor.name == "random-tiny"
    assert predictor.version.startswith("0.0.0+random")
    assert predictor.device == "cpu"


def test_random_bundle_is_deterministic_by_seed(tmp_path):
    a = save_random_bundle(tmp_path / "a.pt", seed=3)
    b = save_random_bundle(tmp_path / "b.pt", seed=3)
    c = save_random_bundle(tmp_path / "c.pt", seed=4)
    sa, sb, sc = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b, c))
    key = next(k for k in sa if k.endswith("weight") and sa[k].numel() > 10)
    assert torch.equal(sa[key], sb[key])
    assert not torch.equal(sa[key], sc[key])


def test_predict_real_slice(predictor, tumour_slice):
    pred = predictor.predict(tumour_slice)
    _check(pred, tumour_slice.shape)


def test_predict_batch_matches_single(predictor, tumour_slice):
    other = read_png(DATA / "lgg_TCGA_CS_4941_10.png")
    batch = predictor.predict_batch([tumour_slice, other])
    single = [predictor.predict(tumour_slice), predictor.predict(other)]
    for b, s in zip(batch, single):
        assert b.verdict == s.verdict
        for v in VERDICTS:
            assert b.scores[v] == pytest.approx(s.scores[v], abs=1e-4)


def test_predict_non_uint8_and_other_sizes(predictor, tumour_slice):
    as16 = tumour_slice.astype(np.uint16) * 200 + 7  # a 16-bit slice: windowed by to_uint8
    _check(predictor.predict(as16), as16.shape)
    wide = np.pad(tumour_slice, ((0, 0), (40, 60)))  # 256 x 356: resized inside, masks back to input size
    _check(predictor.predict(wide), wide.shape)


def test_predict_rejects_non_2d(predictor):
    with pytest.raises(ValueError, match="2-D"):
        predictor.predict(np.zeros((2, 3, 64, 64), dtype=np.uint8))


def test_missing_weights_raise_model_not_installed(tmp_path):
    missing = tmp_path / "none" / "detector.pt"
    with pytest.raises(ModelNotInstalled, match=str(missing)) as err:
        Predictor.load(missing)
    assert "train_detector" in str(err.value)


def test_garbage_weights_raise_model_not_installed(tmp_path):
    bad = tmp_path / "detector.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelNotInstalled, match="not a usable detector bundle"):
        Predictor.load(bad)


def test_instances_follow_the_verdict(bundle_path, tumour_slice):
    """A detection of fake_added with high score plus an image head that agrees: instances are fake_added only."""
    predictor = Predictor.load(bundle_path)
    h, w = tumour_slice.shape
    mask = torch.zeros(3, 1, h, w)
    mask[0, 0, 10:20, 10:30] = 0.9
    mask[1, 0, 50:60, 50:60] = 0.9
    mask[2, 0, 100:110, 100:120] = 0.9
    out = {
        "boxes": torch.tensor([[10.0, 10, 30, 20], [50.0, 50, 60, 60], [100.0, 100, 120, 110]]),
        "labels": torch.tensor([2, 1, 2]),
        "scores": torch.tensor([0.95, 0.4, 0.05]),
        "masks": mask,
        "image_logits": torch.tensor([0.0, 0.0, 3.0, 0.0]),
    }
    pred = predictor._postprocess(out, tumour_slice)
    assert pred.verdict == "fake_added"
    # 0.05 is under the detection threshold: only the first is shown
    assert [i.label for i in pred.instances] == ["fake_added"]
    assert pred.instances[0].mask.sum() == 200
    assert pred.instances[0].box == (10.0, 10.0, 30.0, 20.0)


def test_fuse_scores_hand_computed():
    # detections: real 0.8, nothing else -> det = [0.8, 0.2, 0, 0]; image probs uniform; weight 0.5
    scores = fuse_scores(np.full(4, 0.25), {"real_tumor": 0.8}, 0.5)
    assert scores["real_tumor"] == pytest.approx(0.5 * 0.25 + 0.5 * 0.8)
    assert scores["no_tumor"] == pytest.approx(0.5 * 0.25 + 0.5 * 0.2)
    assert scores["fake_added"] == pytest.approx(0.125)
    assert sum(scores.values()) == pytest.approx(1.0)


def _slice(**scores):
    full = {v: scores.get(v, 0.0) for v in VERDICTS}
    return SlicePrediction(verdict=max(full, key=full.get), scores=full,
                           tamper_score=full["fake_added"] + full["fake_removed"], instances=[])


def test_volume_verdict_one_tampered_slice_marks_the_scan():
    preds = [_slice(no_tumor=0.95, real_tumor=0.05)] * 5 + [_slice(no_tumor=0.2, fake_added=0.7, real_tumor=0.1)]
    vol = volume_verdict(preds)
    # raw: real 0.1, no_tumor 0.2, fake_added 0.7, fake_removed 0 -> sum 1.0
    assert vol.verdict == "fake_added"
    assert vol.scores["fake_added"] == pytest.approx(0.7)
    assert vol.tamper_score == pytest.approx(0.7)
    assert vol.instances == []


def test_volume_verdict_all_clean():
    vol = volume_verdict([_slice(no_tumor=0.9, real_tumor=0.1), _slice(no_tumor=0.8, fake_removed=0.2)])
    assert vol.verdict == "no_tumor"
    with pytest.raises(ValueError):
        volume_verdict([])


RULE = {"threshold": 0.97, "min_slices": 1, "slope": 1.0}


def _logistic(e, t=0.97, slope=1.0):
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    return 1 / (1 + math.exp(-slope * (logit(e) - logit(t))))


def test_the_scan_rule_calls_a_confident_tampered_slice_under_a_real_tumour():
    tumour = [_slice(real_tumor=0.99, no_tumor=0.01)] * 4
    injected = tumour + [_slice(real_tumor=0.004, fake_added=0.99, fake_removed=0.006)]
    # the max rule: real 0.99 against fake added 0.99, a coin toss the tumour wins by order
    assert volume_verdict(injected).verdict == "real_tumor"
    vol = volume_verdict(injected, RULE)
    assert vol.verdict == "fake_added"
    # the scan's probability of being tampered: the logistic in the highest slice tamper score (0.996), 0.5 at 0.97;
    # shared between the tampered verdicts as their highest slice probabilities (0.99, 0.006), the rest between
    # real tumor (highest 0.99) and no tumor (lowest 0.0)
    q = _logistic(0.996)
    assert vol.tamper_score == pytest.approx(q)
    assert vol.scores == pytest.approx({"fake_added": q * 0.99 / 0.996, "fake_removed": q * 0.006 / 0.996,
                                        "real_tumor": (1 - q), "no_tumor": 0.0})
    assert sum(vol.scores.values()) == pytest.approx(1.0)
    # with min_slices 2 the second most suspicious slice decides: here the tumour's (tamper 0): authentic
    assert volume_verdict(injected, {**RULE, "min_slices": 2}).verdict == "real_tumor"
    two = tumour + [_slice(fake_removed=0.985, no_tumor=0.015)] * 2
    vol = volume_verdict(two, {**RULE, "min_slices": 2, "slope": 2.0})
    assert vol.verdict == "fake_removed" and vol.tamper_score == pytest.approx(_logistic(0.985, slope=2.0))


def test_under_the_rule_a_false_alarm_below_it_gives_a_small_tamper_probability():
    tumour = [_slice(real_tumor=0.9, no_tumor=0.1)] * 4
    alarm = tumour + [_slice(real_tumor=0.05, fake_added=0.886, no_tumor=0.064)]
    assert volume_verdict(alarm).verdict == "real_tumor"
    assert volume_verdict(alarm).scores["fake_added"] > 0.45  # the max rule: nearly a coin toss on the page
    vol = volume_verdict(alarm, RULE)
    assert vol.verdict == "real_tumor"
    q = _logistic(0.886)
    assert q == pytest.approx(0.193, abs=0.001)
    # real tumor's highest 0.9 against no tumor's lowest 0.064 share the rest
    assert vol.scores["fake_added"] == pytest.approx(q) and vol.scores["real_tumor"] == pytest.approx((1 - q) * 0.9 / 0.964)
    assert max(vol.scores, key=vol.scores.get) == vol.verdict
    # a tumour-free series with a weak false alarm: no tumor
    clean = [_slice(no_tumor=0.9, real_tumor=0.1), _slice(no_tumor=0.4, fake_removed=0.6)]
    vol = volume_verdict(clean, RULE)
    # authentic share: real tumor's highest 0.1 against no tumor's lowest 0.4
    assert vol.verdict == "no_tumor" and vol.scores["no_tumor"] == pytest.approx((1 - _logistic(0.6)) * 0.8)
    # a steeper slope: the same evidence below the threshold weighs less
    assert volume_verdict(alarm, {**RULE, "slope": 3.0}).tamper_score < volume_verdict(alarm, RULE).tamper_score
    with pytest.raises(ValueError):
        volume_verdict([], RULE)


@pytest.mark.parametrize("rule, message", [
    ({"threshold": 0.3, "min_slices": 1}, "between 0.5 and 0.9999"),
    ({"threshold": 1.0, "min_slices": 1}, "between 0.5 and 0.9999"),
    ({"threshold": 0.9, "min_slices": 0}, "at least 1"),
    ({"threshold": 0.9, "min_slices": 1.5}, "whole number"),
    ({"threshold": 0.9, "min_slices": 1, "slope": 0}, "slope must be above 0"),
    ({"threshold": 0.9, "min_slices": 1, "slope": "steep"}, "numeric threshold"),
    ({"threshold": "high", "min_slices": 1}, "numeric threshold"),
    ({"min_slices": 1}, "numeric threshold"),
    ([0.9, 1], "an object"),
])
def test_a_bad_scan_rule_is_refused_with_what_is_wrong(rule, message):
    with pytest.raises(ScanRuleError, match=message):
        check_scan_rule(rule)
    assert check_scan_rule({"threshold": 0.9, "min_slices": 1}) == {"threshold": 0.9, "min_slices": 1, "slope": 1.0}


def test_the_scan_rule_beside_the_weights_applies_only_to_its_model(bundle_path, tmp_path, caplog):
    import json
    import shutil

    weights = shutil.copy(bundle_path, tmp_path / "detector.pt")
    assert scan_rule_path(weights) == tmp_path / "detector.scan_rule.json"
    assert Predictor.load(weights, device="cpu").scan_rule is None  # none beside it: the max rule
    sha = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    rule_file = scan_rule_path(weights)
    rule_file.write_text(json.dumps({"model_sha256": sha, "rule": RULE, "chosen_on": "25 validation series"}))
    loaded = Predictor.load(weights, device="cpu")
    assert loaded.scan_rule == {**RULE, "chosen_on": "25 validation series"}
    preds = [_slice(real_tumor=0.99, no_tumor=0.01), _slice(fake_added=0.98, no_tumor=0.02)]
    assert loaded.volume_verdict(preds).verdict == "fake_added"
    # chosen for another model (a retrained bundle copied over): ignored, with a warning
    rule_file.write_text(json.dumps({"model_sha256": "0" * 64, "rule": RULE}))
    assert load_scan_rule(weights, sha) is None
    assert "not this one" in caplog.text
    # unusable: the model does not load, and says why
    rule_file.write_text("{not json")
    with pytest.raises(ModelNotInstalled, match="not readable JSON"):
        Predictor.load(weights, device="cpu")
    rule_file.write_text(json.dumps({"model_sha256": sha, "rule": {"threshold": 0.3, "min_slices": 1}}))
    with pytest.raises(ModelNotInstalled, match="detector.scan_rule.json: The scan rule's threshold"):
        Predictor.load(weights, device="cpu")


def test_the_shipped_model_has_its_scan_rule():
    """models/detector.scan_rule.json was chosen for models/detector.pt: a new model needs its own
    (`evaluate_series --save-rule`), else the worker silently falls back to the max rule."""
    import json

    doc = json.loads(scan_rule_path(DEFAULT_WEIGHTS).read_text())
    assert doc["model_sha256"] == hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()
    assert load_scan_rule(DEFAULT_WEIGHTS, doc["model_sha256"]) == {**check_scan_rule(doc["rule"]),
                                                                    "chosen_on": doc["chosen_on"]}
    # measured on the test split's series, and no worse there than the max rule it replaces
    test = doc["measured"]["test"]
    assert test["count"]["accuracy"] >= test["max"]["accuracy"]


@pytest.mark.parametrize("backbone", ["tiny", "mobilenet_v3", "resnet18"])
def test_backbones_build_and_run(backbone):
    model = build_model(ModelConfig(backbone=backbone)).eval()
    with torch.inference_mode():
        out = model([torch.rand(1, 128, 128)])[0]
    assert out["image_logits"].shape == (4,)
    assert out["masks"].shape[1:] == (1, 128, 128)
    # from scratch: BatchNorm is trainable, not frozen
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    assert all(p.requires_grad for p in model.parameters())


def _inst(label, score, y0, x0, y1, x1, shape=(32, 32)):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return Instance(label, score, (float(x0), float(y0), float(x1), float(y1)), mask)


def test_overlapping_detections_of_a_class_are_shown_as_one_region():
    a = _inst("fake_added", 0.9, 4, 4, 12, 12)
    b = _inst("fake_added", 0.3, 8, 8, 16, 16)  # overlaps a: 16 px of its 64 (25 %)
    c = _inst("fake_added", 0.2, 12, 12, 20, 20)  # overlaps b only (16 px): merged through the a+b group
    far = _inst("fake_added", 0.6, 26, 26, 30, 30)  # separate region
    other = _inst("real_tumor", 0.8, 4, 4, 12, 12)  # another class is never merged in
    shown = select_instances("fake_added", [b, far, a, c, other], detection_threshold=0.1)
    assert len(shown) == 2
    merged = max(shown, key=lambda d: d.mask.sum())
    assert merged.score == 0.9 and merged.box == (4.0, 4.0, 20.0, 20.0)
    assert np.array_equal(merged.mask, a.mask | b.mask | c.mask)
    assert shown[1].score == 0.6 and np.array_equal(shown[1].mask, far.mask)
    # the inputs are not modified
    assert a.mask.sum() == 64
    # a touch is not an overlap
    edge = _inst("fake_added", 0.5, 12, 4, 20, 12)  # shares no pixel with a
    assert len(select_instances("fake_added", [a, edge], detection_threshold=0.1)) == 2


def test_show_thresholds_keep_the_best_detection_and_drop_weak_extras():
    best = _inst("fake_added", 0.9, 4, 4, 12, 12)
    weaker = _inst("fake_added", 0.6, 20, 20, 28, 28)
    weak = _inst("fake_added", 0.35, 0, 20, 6, 28)
    dets = [weak, best, weaker]
    # defaults: everything above the detection threshold
    assert {d.score for d in select_instances("fake_added", dets, 0.3)} == {0.9, 0.6, 0.35}
    assert {d.score for d in select_instances("fake_added", dets, 0.3, show_threshold=0.5)} == {0.9, 0.6}
    assert {d.score for d in select_instances("fake_added", dets, 0.3, show_relative=0.8)} == {0.9}
    # the best detection is shown even below every threshold (a verdict always has a place to look at)
    lone = _inst("real_tumor", 0.1, 4, 4, 12, 12)
    assert [d.score for d in select_instances("real_tumor", [lone], 0.3, show_threshold=0.7)] == [0.1]
    assert select_instances("fake_removed", dets, 0.3) == []
    assert select_instances("no_tumor", dets, 0.0) == []


def _output(boxes, labels, scores, masks, logits):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
            "scores": torch.tensor(scores), "masks": masks, "image_logits": torch.tensor(logits)}


def test_flip_output_mirrors_boxes_and_masks():
    masks = torch.zeros(1, 1, 8, 10)
    masks[0, 0, 2:4, 1:3] = 0.8  # columns 1-2 -> 7-8 in a 10-wide slice
    out = flip_output(_output([[1.0, 2, 3, 4]], [2], [0.9], masks, [0.0] * 4), width=10)
    assert out["boxes"].tolist() == [[7.0, 2.0, 9.0, 4.0]]
    assert torch.nonzero(out["masks"][0, 0] > 0)[:, 1].unique().tolist() == [7, 8]
    assert out["labels"].tolist() == [2] and out["scores"].tolist() == pytest.approx([0.9])


def test_fuse_views_averages_matched_detections_and_halves_the_rest():
    a_masks, b_masks = torch.zeros(2, 1, 20, 20), torch.zeros(2, 1, 20, 20)
    a_masks[0, 0, 2:8, 2:8] = 0.9  # fake_added, overlaps b's fake_added (IoU 25/47)
    a_masks[1, 0, 12:16, 12:16] = 0.7  # real_tumor: b has no real_tumor there
    b_masks[0, 0, 3:9, 3:9] = 0.6  # fake_added
    b_masks[1, 0, 12:16, 12:16] = 0.8  # same place as a's real_tumor but another class: no match
    first = _output([[2.0, 2, 8, 8], [12.0, 12, 16, 16]], [2, 1], [0.8, 0.5], a_masks, [1.0, 0.0, 2.0, 0.0])
    second = _output([[3.0, 3, 9, 9], [12.0, 12, 16, 16]], [2, 3], [0.6, 0.4], b_masks, [3.0, 0.0, 0.0, 0.0])
    fused = fuse_views(first, second)
    assert fused["image_logits"].tolist() == pytest.approx([2.0, 0.0, 1.0, 0.0])
    assert fused["labels"].tolist() == [2, 1, 3]  # by fused score: 0.7, 0.25, 0.2
    assert fused["scores"].tolist() == pytest.approx([0.7, 0.25, 0.2])
    assert fused["boxes"][0].tolist() == pytest.approx([2.5, 2.5, 8.5, 8.5])
    assert float(fused["masks"][0, 0, 4, 4]) == pytest.approx(0.75)  # both views
    assert float(fused["masks"][0, 0, 2, 2]) == pytest.approx(0.45)  # a only
    assert torch.equal(fused["masks"][1], a_masks[1]) and torch.equal(fused["masks"][2], b_masks[1])
    # nothing in either view: nothing out
    empty = _output(np.zeros((0, 4)), [], [], torch.zeros(0, 1, 20, 20), [0.0] * 4)
    none = fuse_views(empty, empty)
    assert len(none["scores"]) == 0 and none["masks"].shape == (0, 1, 20, 20)


def test_test_time_flip_reads_a_slice_and_its_mirror_alike(bundle_path, tumour_slice):
    """With the flip on, a slice and its mirror are two orders of the same two views: the same scores, mirrored
    regions; without it they differ (the model is not mirror-symmetric by itself)."""
    flipped = Predictor.load(bundle_path, device="cpu")
    # verdict from the image head, every detection counted: the random model then shows regions
    flipped.calibration = {**flipped.calibration, "test_time_flip": True, "temperature": 1e-3, "image_weight": 1.0,
                           "detection_threshold": 0.0}
    assert flipped.test_time_flip
    mirror = np.ascontiguousarray(tumour_slice[:, ::-1])
    a, b = flipped.predict_batch([tumour_slice, mirror])
    _check(a, tumour_slice.shape)
    assert a.verdict == b.verdict
    assert [a.scores[v] for v in VERDICTS] == pytest.approx([b.scores[v] for v in VERDICTS], abs=1e-4)
    assert a.instances and b.instances
    a_union, b_union = np.any([i.mask for i in a.instances], axis=0), np.any([i.mask for i in b.instances], axis=0)
    assert a_union.any() and np.array_equal(a_union, b_union[:, ::-1])
    plain = Predictor.load(bundle_path, device="cpu")
    assert not plain.test_time_flip
    p, q = plain.predict_batch([tumour_slice, mirror])
    assert [p.scores[v] for v in VERDICTS] != pytest.approx([q.scores[v] for v in VERDICTS], abs=1e-4)


def test_read_only_pixels_are_read_without_a_warning_and_left_as_they_were(predictor, tumour_slice):
    import warnings

    frozen = np.frombuffer(np.ascontiguousarray(tumour_slice).tobytes(), dtype=np.uint8).reshape(tumour_slice.shape)
    assert not frozen.flags.writeable  # as pixels decoded from a buffer are
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it is handed memory it may not write
        read = predictor.predict(frozen)
    assert read.scores == predictor.predict(tumour_slice.copy()).scores
    np.testing.assert_array_equal(frozen, tumour_slice)
