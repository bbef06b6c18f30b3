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
