"""Confidence intervals by resampling patients: the estimates are the contract's figures, the resampling is by
patient, and the intervals have the width statistics expects."""
import numpy as np
import pytest

from inference.ml.intervals import MIN_PATIENTS, bootstrap_intervals, weighted_roc_auc
from inference.ml.labels import VERDICTS
from inference.ml.metrics import classification_metrics, roc_auc


def _rows(n, accuracy, rng):
    rows = []
    for i in range(n):
        truth = VERDICTS[i % 4]
        predicted = truth if rng.random() < accuracy else VERDICTS[(i + 1) % 4]
        tampered = truth in ("fake_added", "fake_removed")
        rows.append({"verdict": truth, "predicted": predicted,
                     "tamper_score": float(np.clip(rng.normal(0.65 if tampered else 0.35, 0.2), 0, 1)),
                     "iou": None if truth == "no_tumor" else float(rng.random())})
    return rows


def _outcome_rows(outcomes):
    """One real_tumor row per outcome: called right, or called no_tumor (the tamper score plays no part here)."""
    rows = []
    for right in outcomes:
        rows.append({"verdict": "real_tumor", "predicted": "real_tumor" if right else "no_tumor",
                     "tamper_score": 0.1, "iou": 0.5})
    return rows


def test_the_estimates_are_the_contracts_figures():
    rows = _rows(200, 0.8, np.random.default_rng(0))
    out = bootstrap_intervals(rows, [f"p{i // 5}" for i in range(200)], resamples=200)
    metrics = classification_metrics([r["verdict"] for r in rows], [r["predicted"] for r in rows],
                                      [r["tamper_score"] for r in rows], [r["iou"] for r in rows])
    for key in ("accuracy", "macro_f1", "mean_iou", "tamper_auc"):
        assert out[key]["estimate"] == pytest.approx(metrics[key])
        assert out[key]["low"] <= metrics[key] <= out[key]["high"]
    for v in VERDICTS:
        assert out["f1"][v]["estimate"] == pytest.approx(metrics["per_class"][v]["f1"])
    assert (out["n_images"], out["n_patients"], out["resamples"]) == (200, 40, 200)


def test_weighted_auc_is_the_auc_of_the_repeated_data():
    y = [True, False, True, False, True, False]
    s = [0.3, 0.3, 0.9, 0.1, 0.2, 0.6]  # a tie between a positive and a negative counts one half
    counts = np.array([[2, 1, 0, 3, 1, 1], [1, 1, 1, 1, 1, 1], [0, 2, 0, 1, 0, 1]])
    got = weighted_roc_auc(y, s, counts)
    for row, value in zip(counts[:2], got[:2]):
        repeated_y = [a for a, c in zip(y, row) for _ in range(c)]
        repeated_s = [a for a, c in zip(s, row) for _ in range(c)]
        assert value == pytest.approx(roc_auc(repeated_y, repeated_s))
    assert got[1] == pytest.approx(roc_auc(y, s))
    assert np.isnan(got[2])  # no positive drawn: no AUC


def test_all_right_gives_a_point_and_one_patient_gives_its_own_figures():
    rows = _rows(40, 1.0, np.random.default_rng(1))
    out = bootstrap_intervals(rows, [f"p{i % 8}" for i in range(40)], resamples=300)
    assert (out["accuracy"]["low"], out["accuracy"]["high"]) == (1.0, 1.0)
    assert (out["macro_f1"]["low"], out["macro_f1"]["high"]) == (1.0, 1.0)
    # one patient: every resample would be that patient, an "interval" without width; none is given, and why
    rows = _rows(40, 0.7, np.random.default_rng(2))
    for n in (1, MIN_PATIENTS - 1):
        out = bootstrap_intervals(rows, [f"p{i % n}" for i in range(40)], resamples=50)
        assert out["accuracy"]["estimate"] == pytest.approx(np.mean([r["verdict"] == r["predicted"] for r in rows]))
        assert all(out[k]["low"] is None and out[k]["high"] is None for k in ("accuracy", "macro_f1", "mean_iou"))
        assert all(out["f1"][v]["low"] is None for v in VERDICTS) and out["resamples"] == 0
        assert out["note"].startswith(f"{n} patient{'s' if n > 1 else ''} behind these images: too few to resample")
    out = bootstrap_intervals(rows, [f"p{i % MIN_PATIENTS}" for i in range(40)], resamples=50)
    assert out["accuracy"]["low"] < out["accuracy"]["high"] and "note" not in out


def test_images_without_a_patient_id_are_resampled_one_by_one_and_the_run_says_so():
    from types import SimpleNamespace

    from inference.ml.evaluate import patient_intervals

    rows = _rows(40, 0.7, np.random.default_rng(5))
    records = [SimpleNamespace(id=i, patient_id="" if i < 30 else f"p{i % 2}", source="elsewhere")
               for i in range(40)]
    for i, row in enumerate(rows):
        row["image_id"] = i
    out = patient_intervals(rows, records, resamples=100)
    assert out["n_patients"] == 32 and out["images_without_patient_id"] == 30  # 30 images on their own, 2 patients
    assert "30 of the 40 images name no patient" in out["note"] and "narrower than they should be" in out["note"]
    assert out["accuracy"]["low"] < out["accuracy"]["high"]


def test_patients_not_slices_are_resampled():
    # 400 slices at accuracy 0.5. (a) 400 patients of one slice: the interval is the binomial one,
    # +-1.96 sqrt(.25 / 400) ~ +-0.049. (b) 40 patients of 10 slices, each patient all right or all wrong: the
    # slices say no more than 40 independent answers, +-1.96 sqrt(.25 / 40) ~ +-0.155.
    outcomes = [i % 2 == 0 for i in range(400)]
    rows = _outcome_rows(outcomes)
    single = bootstrap_intervals(rows, [f"p{i}" for i in range(400)], resamples=2000, seed=3)["accuracy"]
    clustered = bootstrap_intervals(rows, [f"p{i % 40}" for i in range(400)], resamples=2000, seed=3)["accuracy"]
    assert single["estimate"] == clustered["estimate"] == 0.5
    assert single["high"] - single["low"] == pytest.approx(2 * 0.049, abs=0.015)
    assert clustered["high"] - clustered["low"] == pytest.approx(2 * 0.155, abs=0.04)


def test_seeded_and_refusing_bad_input():
    rows = _rows(60, 0.8, np.random.default_rng(4))
    patients = [f"p{i // 3}" for i in range(60)]
    a = bootstrap_intervals(rows, patients, resamples=300, seed=7)
    assert a == bootstrap_intervals(rows, patients, resamples=300, seed=7)
    assert a != bootstrap_intervals(rows, patients, resamples=300, seed=8)
    with pytest.raises(ValueError, match="60 prediction rows but 59 patient IDs"):
        bootstrap_intervals(rows, patients[:-1])
    with pytest.raises(ValueError, match="No predictions"):
        bootstrap_intervals([], [])
    with pytest.raises(ValueError, match="Unknown verdict 'banana'"):
        bootstrap_intervals([{**rows[0], "predicted": "banana"}], ["p"])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_intervals(rows, patients, resamples=0)


def test_the_expanded_percentile_interval_widens_most_behind_few_patients():
    from scipy import stats

    from inference.ml.intervals import expanded_tail

    # Phi(-sqrt(n / (n - 1)) t_{n-1}(0.975)): 23 patients, t_22 = 2.0739, x 1.0225 = 2.1205 -> 0.0170
    assert expanded_tail(23, 0.95) == pytest.approx(stats.norm.cdf(-np.sqrt(23 / 22) * 2.073873), abs=1e-6)
    assert expanded_tail(23, 0.95) == pytest.approx(0.0170, abs=2e-4)
    assert expanded_tail(5, 0.95) < expanded_tail(8, 0.95) < expanded_tail(23, 0.95) < 0.025
    assert expanded_tail(100000, 0.95) == pytest.approx(0.025, abs=1e-4)  # many patients: the plain interval
    with pytest.raises(ValueError):
        expanded_tail(1, 0.95)
    rng = np.random.default_rng(4)
    rows = _rows(200, 0.8, rng)
    patients = [f"p{i % 8}" for i in range(200)]
    out = bootstrap_intervals(rows, patients, resamples=2000, seed=1)
    tail = expanded_tail(8, 0.95)
    assert out["percentiles"] == [round(100 * tail, 3), round(100 * (1 - tail), 3)]
    assert out["method"] == "patient-clustered expanded percentile bootstrap"
