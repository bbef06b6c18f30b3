"""The learned verdict (inference.ml.verdict_model): its features on hand-made outputs, its probabilities, its fit
and cross-validation, and that the predictor and the calibration score a slice alike with it."""
import numpy as np
import pytest

from inference.ml.labels import VERDICTS
from inference.ml.verdict_model import (
    FEATURES_VERSION, N_FEATURES, fit_verdict_model, grouped_folds, verdict_features, verdict_probs,
)


def test_features_of_hand_made_outputs():
    logits = np.array([2.0, 0.0, 0.0, 0.0])
    f = verdict_features(logits, ["fake_added", "real_tumor", "fake_added"], [0.4, 0.7, 0.9],
                         [(0, 0, 10, 20), (5, 5, 6, 6), (10, 10, 14, 13)])
    assert f.shape == (N_FEATURES,)
    log_p = logits - np.log(np.exp(logits).sum())
    assert f[:4] == pytest.approx(log_p)
    assert f[4:7] == pytest.approx([0.7, 0.0, np.log1p(1.0)])  # real_tumor: one detection, 1 x 1 box
    assert f[7:10] == pytest.approx([0.9, 0.4, np.log1p(12.0)])  # fake_added: best first, its 4 x 3 box
    assert f[10:13] == pytest.approx([0.0, 0.0, 0.0])  # no fake_removed detection
    none = verdict_features(None, [], [], [])
    assert not none.any()


def _model(coef_for: str, feature: int) -> dict:
    coef = np.zeros((4, N_FEATURES))
    coef[VERDICTS.index(coef_for), feature] = 5.0
    return {"features_version": FEATURES_VERSION, "mean": [0.0] * N_FEATURES, "scale": [1.0] * N_FEATURES,
            "coef": coef.tolist(), "intercept": [0.0] * 4}


def test_probabilities_follow_the_weights_and_refuse_other_feature_versions():
    model = _model("fake_removed", 10)  # fake_removed's best score drives its logit
    strong = verdict_features(None, ["fake_removed"], [0.95], [(0, 0, 4, 4)])
    weak = verdict_features(None, [], [], [])
    p, q = verdict_probs(model, strong), verdict_probs(model, weak)
    assert p.sum() == pytest.approx(1.0) and q.sum() == pytest.approx(1.0)
    assert int(np.argmax(p)) == VERDICTS.index("fake_removed") and q == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError, match="Recalibrate"):
        verdict_probs({**model, "features_version": FEATURES_VERSION + 1}, strong)


def test_fit_learns_a_rule_and_cross_validates_by_patient():
    """Verdicts told by which class's detection scores highest, with noise: the fitted model recovers them, its
    cross-validated figures are reported, and no patient is on both sides of a fold."""
    rng = np.random.default_rng(0)
    x, y, groups = [], [], []
    for i in range(240):
        verdict = VERDICTS[i % 4]
        scores = rng.uniform(0.0, 0.3, 3)
        if verdict != "no_tumor":
            scores[("real_tumor", "fake_added", "fake_removed").index(verdict)] = rng.uniform(0.6, 1.0)
        labels = ["real_tumor", "fake_added", "fake_removed"]
        x.append(verdict_features(rng.normal(0, 1, 4), labels, scores, [(0, 0, 8, 8)] * 3))
        y.append(verdict)
        groups.append(f"P{i // 6}")
    model, cv = fit_verdict_model(np.stack(x), y, groups)
    assert cv["folds"] == 5 and cv["accuracy"] > 0.9 and cv["macro_f1"] > 0.9
    pred = [VERDICTS[int(np.argmax(verdict_probs(model, f)))] for f in x]
    assert np.mean(np.array(pred) == np.array(y)) > 0.9
    for train, test in grouped_folds(groups):
        assert not {groups[i] for i in train} & {groups[i] for i in test}
    with pytest.raises(ValueError, match="two patients"):
        grouped_folds(["P0"] * 10)


def test_a_verdict_never_seen_is_never_predicted():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (40, N_FEATURES))
    y = ["real_tumor" if v > 0 else "no_tumor" for v in x[:, 4]]
    from inference.ml.verdict_model import _fit

    model = _fit(x, np.array([VERDICTS.index(v) for v in y]), 1.0)
    probs = np.stack([verdict_probs(model, f) for f in x])
    assert probs[:, [2, 3]].max() < 1e-6
    acc = np.mean([VERDICTS[int(np.argmax(p))] == v for p, v in zip(probs, y)])
    assert acc > 0.9


def test_predictor_and_calibration_score_alike_with_a_verdict_model(random_bundle, tiny_dataset):
    """The predictor (portal, detect, evaluate) and the calibration's items compute the same features from the same
    outputs, so a verdict model fitted on the items gives the predictor the same probabilities."""
    from inference.ml.coco import load_dataset
    from inference.ml.imaging import to_uint8
    from inference.ml.predictor import Predictor
    from inference.ml.train import collect_views, item_features, item_verdict

    predictor = Predictor.load(random_bundle, device="cpu")
    records = list(load_dataset(tiny_dataset))
    items = collect_views(predictor, records, flip=False)[0]
    x = np.stack([item_features(it, predictor.has_image_head) for it in items])
    assert x[:, 4:].any()  # the random model makes detections
    model, _ = fit_verdict_model(x, [it.verdict for it in items], [r.patient_id for r in records])
    calibration = {**predictor.calibration, "verdict_model": model}
    predictor.calibration = calibration
    preds = predictor.predict_batch([to_uint8(r.pixels()) for r in records])
    for it, pred in zip(items, preds):
        verdict, scores = item_verdict(it, calibration, predictor.has_image_head)
        assert pred.verdict == verdict
        assert [pred.scores[v] for v in VERDICTS] == pytest.approx([scores[v] for v in VERDICTS], abs=1e-6)
        assert pred.tamper_score == pytest.approx(scores["fake_added"] + scores["fake_removed"], abs=1e-6)
