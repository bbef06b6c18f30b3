import json

import pytest

from audit import actions
from audit.models import AuditEvent
from reports.models import EvaluationRun
from reports.services import InvalidMetrics, evaluation_run_record


def test_record_stores_model_dataset_split_and_the_whole_metrics(db, metrics, tmp_path):
    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "annotations.json").write_text(json.dumps({"images": []}))

    run = evaluation_run_record(metrics=metrics, dataset_dir=str(dataset), out_dir=str(tmp_path / "out"), split="test")

    run = EvaluationRun.objects.get(pk=run.pk)
    assert (run.model_name, run.model_version, run.model_sha256) == ("maskrcnn-tamper", "1.2.0", "ab" * 32)
    assert (run.dataset_dir, run.split, run.out_dir) == (str(dataset), "test", str(tmp_path / "out"))
    assert len(run.dataset_sha256) == 64
    assert run.metrics == metrics
    assert run.n_images == metrics["n_images"]
    assert run.accuracy == pytest.approx(metrics["accuracy"])
    assert run.macro_f1 == pytest.approx(metrics["macro_f1"])
    assert run.created_at is not None

    event = AuditEvent.objects.get(action=actions.EVALUATION_RECORDED)
    assert (event.object_type, event.object_id) == ("reports.evaluationrun", str(run.pk))


def test_no_split_and_unreadable_dataset_are_fine(db, metrics, tmp_path):
    run = evaluation_run_record(metrics=metrics, dataset_dir=str(tmp_path / "absent"), out_dir="o", split=None)
    assert (run.split, run.dataset_sha256) == ("", "")


@pytest.mark.parametrize("breakage", ["no_model", "bad_matrix", "unknown_class", "no_accuracy"])
def test_malformed_metrics_are_refused_with_a_reason(db, metrics, breakage):
    if breakage == "no_model":
        metrics["model"] = {"name": "x"}
    elif breakage == "bad_matrix":
        metrics["confusion_matrix"]["matrix"] = [[1, 2], [3, 4]]
    elif breakage == "unknown_class":
        metrics["per_class"]["maybe_tumor"] = {}
    else:
        del metrics["accuracy"]
    with pytest.raises(InvalidMetrics):
        evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test")
    assert EvaluationRun.objects.count() == 0


BREAKDOWN = {
    "by_method": {"(none)": {"n": 2, "accuracy": 1.0, "flagged_tampered": 0.0, "mean_iou": 0.7},
                  "splice": {"n": 1, "accuracy": 0.0, "flagged_tampered": 0.0, "mean_iou": None}},
    "by_area": {"real_tumor, < 500 px": {"n": 1, "accuracy": 1.0, "flagged_tampered": 0.0, "mean_iou": 0.7},
                "no_tumor": {"n": 1, "accuracy": 1.0, "flagged_tampered": 0.0, "mean_iou": None}},
    "input_range": {"none": {"within": {"n": 3, "share": 1.0, "accuracy": 0.67}}},
}


def test_the_breakdown_is_stored_beside_the_metrics(db, metrics):
    run = evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", breakdown=BREAKDOWN)
    assert EvaluationRun.objects.get(pk=run.pk).breakdown == BREAKDOWN
    # a run recorded without one (older runs, other tools) has an empty breakdown
    assert evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test").breakdown == {}


@pytest.mark.parametrize("breakage, message", [
    ("not_object", "JSON object"),
    ("no_count", "count 'n'"),
    ("ratio", "ratio in"),
    ("groups", "map group names"),
])
def test_a_malformed_breakdown_is_refused_and_nothing_is_stored(db, metrics, breakage, message):
    import copy

    breakdown = copy.deepcopy(BREAKDOWN)
    if breakage == "not_object":
        breakdown = ["by_area"]
    elif breakage == "no_count":
        del breakdown["by_area"]["no_tumor"]["n"]
    elif breakage == "ratio":
        breakdown["by_method"]["splice"]["accuracy"] = 1.5
    else:
        breakdown["by_source"] = [1, 2]
    with pytest.raises(InvalidMetrics, match=message):
        evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", breakdown=breakdown)
    assert EvaluationRun.objects.count() == 0


INTERVALS = {
    "method": "patient-clustered expanded percentile bootstrap", "level": 0.95, "resamples": 2000, "seed": 0,
    "n_images": 3, "n_patients": 2,
    "accuracy": {"estimate": 0.67, "low": 0.5, "high": 1.0},
    "macro_f1": {"estimate": 0.6, "low": 0.4, "high": 1.0},
    "mean_iou": {"estimate": 0.7, "low": 0.7, "high": 0.7},
    "tamper_auc": {"estimate": None, "low": None, "high": None},
    "f1": {"real_tumor": {"estimate": 1.0, "low": 1.0, "high": 1.0}},
    "by_source": {"lgg": {"n": 3, "n_patients": 2, "accuracy": {"estimate": 0.67, "low": 0.5, "high": 1.0}}},
}


@pytest.mark.parametrize("breakage, message", [
    ("not_object", "JSON object"),
    ("ratio", r"\['high'\] must be a ratio"),
    ("order", "low 0.9 is above high 0.5"),
    ("class", r"intervals\['f1'\]\['real_tumor'\] must be an object"),
    ("source", r"by_source.*must be an object"),
])
def test_intervals_are_stored_and_malformed_ones_refused(db, metrics, breakage, message):
    import copy

    run = evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", intervals=INTERVALS)
    assert EvaluationRun.objects.get(pk=run.pk).intervals == INTERVALS
    assert evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test").intervals == {}
    intervals = copy.deepcopy(INTERVALS)
    if breakage == "not_object":
        intervals = [0.5, 1.0]
    elif breakage == "ratio":
        intervals["accuracy"]["high"] = 1.2
    elif breakage == "order":
        intervals["macro_f1"] = {"estimate": 0.6, "low": 0.9, "high": 0.5}
    elif breakage == "class":
        intervals["f1"]["real_tumor"] = 0.9
    else:
        intervals["by_source"]["lgg"] = {"n": 3}
    with pytest.raises(InvalidMetrics, match=message):
        evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", intervals=intervals)
    assert EvaluationRun.objects.count() == 2  # the two good runs above, nothing of the refused one


def _confidence():
    from inference.ml.metrics import probability_quality

    truth = ["real_tumor", "no_tumor", "fake_added", "fake_removed"]
    scores = [{"real_tumor": 0.9, "no_tumor": 0.1, "fake_added": 0.0, "fake_removed": 0.0},
              {"real_tumor": 0.9, "no_tumor": 0.1, "fake_added": 0.0, "fake_removed": 0.0},
              {"real_tumor": 0.0, "no_tumor": 0.0, "fake_added": 0.6, "fake_removed": 0.4},
              {"real_tumor": 0.0, "no_tumor": 0.0, "fake_added": 0.4, "fake_removed": 0.6}]
    return probability_quality(truth, scores)


@pytest.mark.parametrize("breakage, message", [
    ("not_object", "JSON object"),
    ("ece", r"confidence\['ece'\] must be a ratio"),
    ("bins", "must be a list of bins"),
    ("count", r"\['reliability'\]\[0\] must be an object with a count"),
    ("bin_ratio", r"\['reliability'\]\[9\]\['accuracy'\] must be a ratio"),
    ("threshold", r"\['by_threshold'\]\[1\]\['share'\] must be a ratio"),
])
def test_the_confidence_figures_are_stored_and_malformed_ones_refused(db, metrics, breakage, message):
    confidence = _confidence()
    run = evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", confidence=confidence)
    stored = EvaluationRun.objects.get(pk=run.pk).confidence
    assert stored == json.loads(json.dumps(confidence)) and stored["ece"] == pytest.approx(0.4)
    assert evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test").confidence == {}
    if breakage == "not_object":
        confidence = [0.4]
    elif breakage == "ece":
        confidence["ece"] = -0.1
    elif breakage == "bins":
        confidence["reliability"] = {"0.9": 2}
    elif breakage == "count":
        confidence["reliability"][0]["count"] = "two"
    elif breakage == "bin_ratio":
        confidence["reliability"][9]["accuracy"] = 1.5
    else:
        confidence["by_threshold"][1]["share"] = 4
    with pytest.raises(InvalidMetrics, match=message):
        evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", confidence=confidence)
    assert EvaluationRun.objects.count() == 2
