"""The confidence temperature: it reshapes the verdict probabilities, never the verdict, and is fitted so that
the confidence shown means what it says."""
import numpy as np
import pytest

from inference.ml.confidence import fit_confidence_temperature, temper_scores, tempered_nll
from inference.ml.labels import VERDICTS
from inference.ml.metrics import probability_quality


def _scores(p):
    return dict(zip(VERDICTS, p))


def test_temper_scores_keeps_the_order_and_sums_to_one():
    s = _scores([0.5, 0.3, 0.15, 0.05])
    assert temper_scores(s, 1.0) == s
    soft, sharp = temper_scores(s, 2.0), temper_scores(s, 0.5)
    for t in (soft, sharp):
        assert sum(t.values()) == pytest.approx(1.0)
        assert sorted(VERDICTS, key=t.get) == sorted(VERDICTS, key=s.get)
    assert soft["real_tumor"] < 0.5 < sharp["real_tumor"]
    # p ** (1/T) renormalised, by hand for T = 0.5: squares
    squares = np.array([0.5, 0.3, 0.15, 0.05]) ** 2
    assert sharp["no_tumor"] == pytest.approx(0.09 / squares.sum())
    # an impossible verdict stays impossible
    assert temper_scores(_scores([0.0, 1.0, 0.0, 0.0]), 3.0)["real_tumor"] == 0.0
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            temper_scores(s, bad)


def _overconfident(n=400, seed=0):
    """Always 0.97 for its pick, right 70 % of the time."""
    rng = np.random.default_rng(seed)
    scores, truth = [], []
    for _ in range(n):
        pick = int(rng.integers(4))
        p = np.full(4, 0.01)
        p[pick] = 0.97
        scores.append(_scores(p))
        truth.append(VERDICTS[pick] if rng.random() < 0.7 else VERDICTS[(pick + 1 + int(rng.integers(3))) % 4])
    return scores, truth


def test_fit_softens_an_overconfident_model_and_lowers_its_calibration_error():
    scores, truth = _overconfident()
    t, fit = fit_confidence_temperature(scores, truth)
    assert t > 1.5
    assert fit["nll_after"] < fit["nll_before"] and fit["n_images"] == 400
    assert fit["nll_after"] == pytest.approx(tempered_nll(scores, truth, t))
    tempered = [temper_scores(s, t) for s in scores]
    before, after = probability_quality(truth, scores), probability_quality(truth, tempered)
    assert before["ece"] > 0.2 and after["ece"] < 0.05
    assert after["accuracy"] == before["accuracy"]  # no verdict moved


def test_fit_sharpens_a_timid_model_and_keeps_one_when_already_right():
    # says 0.4 for its pick and is always right
    timid = [_scores(np.roll([0.4, 0.2, 0.2, 0.2], k)) for k in range(4)] * 25
    truth = [VERDICTS[k] for k in range(4)] * 25
    t, fit = fit_confidence_temperature(timid, truth)
    assert t < 1.0 and fit["nll_after"] < fit["nll_before"]
    # right exactly as often as it says (0.7 for its pick, right 7 times in 10): T stays near 1
    honest, truth = [], []
    for k in range(10):
        honest.append(_scores([0.7, 0.1, 0.1, 0.1]))
        truth.append("real_tumor" if k < 7 else VERDICTS[1 + k % 3])
    t, _ = fit_confidence_temperature(honest * 10, truth * 10)
    assert 0.85 < t < 1.2


def test_fit_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="at least one"):
        fit_confidence_temperature([], [])
    with pytest.raises(ValueError, match="differ in length"):
        fit_confidence_temperature([_scores([1, 0, 0, 0])], [])
    with pytest.raises(ValueError, match="Unknown verdict"):
        fit_confidence_temperature([_scores([1, 0, 0, 0])], ["tumour"])
