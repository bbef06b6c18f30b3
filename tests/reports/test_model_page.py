import base64
import re
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse

from reports.services import evaluation_run_record
from tests.reports.conftest import metrics_from_confusion, report_pdf_text, series_metrics_doc


def _svgs(html: str) -> list[str]:
    return [base64.b64decode(b).decode() for b in re.findall(r'data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)', html)]


def test_no_evaluation_yet(client_a, settings, tmp_path):
    settings.DETECTOR_WEIGHTS = str(tmp_path / "absent.pt")
    response = client_a.get(reverse("reports:model"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "No evaluation recorded yet" in html
    assert "No detector weights at" in html
    assert "table-per-class" not in html


def test_anonymous_is_sent_to_log_in(client):
    assert client.get(reverse("reports:model")).status_code == 302


def test_tables_and_charts_come_from_the_stored_metrics(client_a, settings, tmp_path):
    settings.DETECTOR_WEIGHTS = str(tmp_path / "absent.pt")
    rng = np.random.default_rng(11)
    matrix = rng.integers(0, 9, size=(4, 4)) + np.diag(rng.integers(20, 60, size=4))
    metrics = metrics_from_confusion(matrix)
    evaluation_run_record(metrics=metrics, dataset_dir="/data/test-set", out_dir="/runs/e1", split="test")

    response = client_a.get(reverse("reports:model"))
    html = response.content.decode()
    tables = response.context["tables"]

    # Table 1: stored precision/recall/F1, and one-vs-rest accuracy from the matrix.
    total = matrix.sum()
    for i, row in enumerate(tables.rows):
        stored = metrics["per_class"][row.label]
        assert (row.precision, row.recall, row.f1) == (stored["precision"], stored["recall"], stored["f1"])
        fp, fn = matrix[:, i].sum() - matrix[i, i], matrix[i, :].sum() - matrix[i, i]
        assert row.accuracy == pytest.approx((total - fp - fn) / total)
        assert f"{stored['f1']:.3f}" in html
    # Table 2: every cell and the total.
    for value in matrix.flatten():
        assert f'<td class="num">{value}</td>' in html
    assert f'<td class="num">{total}</td>' in html
    assert f"{metrics['accuracy']:.3f}" in html

    # a run recorded without a breakdown shows no breakdown table
    assert "table-by_area" not in html and "Table 3" not in html

    svgs = _svgs(html)
    assert len(svgs) == 3
    f1_svg, pie_svg, heat_svg = svgs
    for row in tables.rows:
        assert f"{row.f1:.3f}" in f1_svg
    assert f"n = {total}" in pie_svg
    for value in matrix.flatten():
        assert f">{value}<" in heat_svg


def test_installed_model_card_and_mismatch_warning(client_admin, settings, tmp_path, metrics):
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=3)
    (tmp_path / "MODEL_CARD.md").write_text("# Card\nTrained on nothing at all.\n")
    settings.DETECTOR_WEIGHTS = str(weights)
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test")  # another model's sha

    html = client_admin.get(reverse("reports:model")).content.decode()
    assert "random-tiny" in html and "0.0.0+random.seed3" in html
    assert file_sha256(weights) in html
    assert "not for patients" in html
    assert "Trained on nothing at all." in html
    assert "not of the installed model" in html

    metrics["model"]["sha256"] = file_sha256(weights)
    metrics["model"]["version"] = "0.0.0+random.seed3"
    evaluation_run_record(metrics=metrics, dataset_dir="d2", out_dir="o2", split="test")
    html = client_admin.get(reverse("reports:model")).content.decode()
    assert "not of the installed model" not in html


def test_the_breakdown_tables_come_from_the_stored_breakdown(client_a, settings, tmp_path, metrics):
    settings.DETECTOR_WEIGHTS = str(tmp_path / "absent.pt")
    breakdown = {
        "by_method": {"(none)": {"n": 40, "accuracy": 0.9, "flagged_tampered": 0.025, "mean_iou": 0.6125},
                      "splice": {"n": 20, "accuracy": 0.85, "flagged_tampered": 0.9, "mean_iou": 0.7625}},
        "by_area": {"real_tumor, < 500 px": {"n": 8, "accuracy": 0.375, "flagged_tampered": 0.0, "mean_iou": 0.25},
                    "real_tumor, >= 3000 px": {"n": 6, "accuracy": 1.0, "flagged_tampered": 0.0, "mean_iou": 0.8},
                    "no_tumor": {"n": 10, "accuracy": 0.9, "flagged_tampered": 0.1, "mean_iou": None}},
        "input_range": {"none": {"within": {"n": 60, "share": 1.0, "accuracy": 0.9}}},
    }
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", breakdown=breakdown)
    response = client_a.get(reverse("reports:model"))
    html = response.content.decode()
    tables = response.context["breakdown_tables"]
    # region size first, then method; a kind the run lacks (by_source) is left out, input_range is not a table
    assert [t.key for t in tables] == ["by_area", "by_method"]
    # in evaluate_detector's order, whatever order the database gives the stored object back in
    assert [r.group for r in tables[0].rows] == ["real_tumor, < 500 px", "real_tumor, >= 3000 px", "no_tumor"]
    assert [r.group for r in tables[1].rows] == ["(none)", "splice"]
    assert "Table 3. Accuracy by verdict and region size" in html and "Table 4. Accuracy by tampering method" in html
    area = html[html.index('id="table-by_area"'):html.index('id="table-by_method"')]
    assert '<th scope="row">real_tumor, &lt; 500 px</th><td class="num">8</td>' in area
    assert '<td class="num">0.375</td>' in area and '<td class="num">0.250</td>' in area
    assert "—" in area  # no_tumor has no region: no IoU


def test_the_headline_figures_show_their_intervals(client_a, settings, tmp_path, metrics):
    from tests.reports.test_evaluation import INTERVALS

    settings.DETECTOR_WEIGHTS = str(tmp_path / "absent.pt")
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test")
    html = client_a.get(reverse("reports:model")).content.decode()
    evaluation = html[html.index('id="eval-title"'):]  # (the model card text above may quote intervals)
    assert "95 % CI" not in evaluation and 'id="interval-note"' not in html  # a run without intervals shows none

    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", intervals=INTERVALS)
    html = client_a.get(reverse("reports:model")).content.decode()
    accuracy = html[html.index('id="headline-accuracy"'):html.index('id="headline-macro-f1"')]
    assert "95 % CI 0.500–1.000" in accuracy
    iou = html[html.index('id="headline-mean-iou"'):html.index('id="headline-tamper-auc"')]
    assert "95 % CI 0.700–0.700" in iou
    auc = html[html.index('id="headline-tamper-auc"'):]
    assert "95 % CI" not in auc[:auc.index("</div></div>") + 12]  # no interval to show: nothing invented
    assert "the 2 patients behind these images resampled 2000 times" in html
    assert 'id="interval-caveat"' not in html

    # too few patients: evaluate_detector gives the estimates without ranges, and the page says why
    from inference.ml.intervals import bootstrap_intervals

    rows = [{"verdict": v, "predicted": v, "tamper_score": 0.5, "iou": None} for v in ("real_tumor", "no_tumor")]
    few = bootstrap_intervals(rows, ["p1", "p2"])
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", intervals=few)
    html = client_a.get(reverse("reports:model")).content.decode()
    evaluation = html[html.index('id="eval-title"'):]
    assert "95 % CI" not in evaluation and 'id="interval-note"' not in html
    assert ('<p class="small" id="interval-caveat" role="note">2 patients behind these images: too few to resample '
            "for a confidence interval (at least 3 needed), so none is given.</p>") in html


def test_the_confidence_table_comes_from_the_stored_confidence(client_a, settings, tmp_path, metrics):
    from tests.reports.test_evaluation import _confidence

    settings.DETECTOR_WEIGHTS = str(tmp_path / "absent.pt")
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test")
    html = client_a.get(reverse("reports:model")).content.decode()
    assert 'id="table-confidence"' not in html  # a run without it shows none: nothing invented

    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", confidence=_confidence())
    html = client_a.get(reverse("reports:model")).content.decode()
    assert 'id="confidence"' in html and '<strong id="confidence-ece">0.400</strong>' in html
    table = html[html.index('id="table-confidence"'):]
    table = table[:table.index("</table>")]
    # only the two filled bins, with their counts, mean confidence and share right
    assert table.count('<th scope="row">') == 2
    assert '<th scope="row">0.6–0.7</th><td class="num">2</td>' in table
    assert '<th scope="row">0.9–1.0</th><td class="num">2</td>' in table
    assert '<td class="num">0.500</td>' in table and '<td class="num">1.000</td>' in table
    # and how right the confident verdicts are: at 0.7 or more, half the images, half of them right
    cover = html[html.index('id="table-confidence-threshold"'):]
    cover = cover[:cover.index("</table>")]
    assert '<th scope="row">0.7</th><td class="num">0.500</td><td class="num">2</td>' in cover
    assert '<th scope="row">0.95</th><td class="num">0.000</td><td class="num">0</td>' in cover and "—" in cover


def _ship_evaluation(folder, metrics, *, intervals=None, about=None, confidence=None):
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if about is not None:
        (folder / "run.json").write_text(json.dumps(about))
    if intervals is not None:
        (folder / "intervals.json").write_text(json.dumps(intervals))
    if confidence is not None:
        (folder / "confidence.json").write_text(json.dumps(confidence))


def test_a_fresh_installation_shows_the_evaluation_shipped_with_the_weights(client_a, settings, tmp_path, metrics):
    """models/evaluation/ beside models/detector.pt: shown, marked as the release's, until one is recorded here."""
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from reports.models import EvaluationRun
    from tests.reports.test_evaluation import INTERVALS, _confidence

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=4)
    settings.DETECTOR_WEIGHTS = str(weights)
    metrics["model"]["sha256"] = file_sha256(weights)
    _ship_evaluation(tmp_path / "evaluation", metrics, intervals=INTERVALS, confidence=_confidence(),
                     about={"dataset_dir": "/data/release-set", "dataset_sha256": "ab" * 32, "split": "test",
                            "n_images": metrics["n_images"], "evaluated_at": "2026-12-04T18:30:00+00:00"})

    response = client_a.get(reverse("reports:model"))
    html = response.content.decode()
    assert "No evaluation recorded yet" not in html
    assert 'id="shipped-evaluation"' in html and "Measured when this model was released" in html
    assert "/data/release-set" in html and "2026-12-04T18:30:00+00:00" in html
    assert f"{metrics['accuracy']:.3f}" in html and "95 % CI 0.500–1.000" in html  # its figures and intervals
    assert '<strong id="confidence-ece">0.400</strong>' in html  # and how far its confidence can be trusted
    assert "not of the installed model" not in html
    assert response.context["run"].pk is None and EvaluationRun.objects.count() == 0  # read, not stored

    # a run on another split, or on a site's folder without splits, does not stand in for the test evaluation:
    # the page and the scan pages' figures keep the shipped test split's (the run is listed, and can be opened)
    released = metrics["accuracy"]
    for split in ("val", "train", None):
        metrics["accuracy"] = 0.99
        other = evaluation_run_record(metrics=metrics, dataset_dir="/data/elsewhere", out_dir="o", split=split)
        response = client_a.get(reverse("reports:model"))
        assert response.context["run"].pk is None and response.context["run"].accuracy == released
        assert 'id="shipped-evaluation"' in response.content.decode()
    opened = client_a.get(reverse("reports:model") + f"?run={other.pk}")
    assert opened.context["run"].pk == other.pk
    assert ("This evaluation is not on a test split (a dataset without splits): its images may include ones the "
            "model was trained or calibrated on") in opened.content.decode()
    assert 'id="not-a-test-split"' not in client_a.get(reverse("reports:model")).content.decode()

    # once a test evaluation of these weights is recorded here, that one is shown
    metrics["accuracy"] = 0.25
    evaluation_run_record(metrics=metrics, dataset_dir="/data/here", out_dir="o", split="test")
    html = client_a.get(reverse("reports:model")).content.decode()
    assert 'id="shipped-evaluation"' not in html and "/data/here" in html and "0.250" in html
    # and a later run on validation does not displace it
    metrics["accuracy"] = 0.99
    evaluation_run_record(metrics=metrics, dataset_dir="/data/here", out_dir="o", split="val")
    assert client_a.get(reverse("reports:model")).context["run"].accuracy == 0.25


def test_a_shipped_evaluation_of_other_weights_or_malformed_is_not_shown(client_a, settings, tmp_path, metrics):
    from inference.ml.model import save_random_bundle

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=4)
    settings.DETECTOR_WEIGHTS = str(weights)
    _ship_evaluation(tmp_path / "evaluation", metrics)  # the fixture's sha256 is not these weights'
    html = client_a.get(reverse("reports:model")).content.decode()
    assert "No evaluation recorded yet" in html and 'id="shipped-evaluation"' not in html
    assert "is of other weights than the installed ones" in html

    (tmp_path / "evaluation" / "metrics.json").write_text('{"accuracy": 0.9')  # cut short
    response = client_a.get(reverse("reports:model"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "No evaluation recorded yet" in html and "cannot be shown" in html


def test_the_model_facts_are_said_in_words():
    from reports.selectors import card_facts

    meta = {
        "dataset_dir": "/tmp/data", "dataset_sha256": "669f6f7d4a9f" + "0" * 52, "train_split": "train",
        "train_methods": ["gan", "splice"], "train_sites": ["TCGA-CS", "tcia"], "steps": 3650,
        "epochs_completed": 10, "train_minutes": 6.51, "device": "NVIDIA H200",
        "init_from": {"name": "m", "version": "0.8.0", "sha256": "7b8ddd06039a" + "1" * 52},
        "averaged_from": [{"weight": 0.5, "version": "d", "sha256": "eb6a1fdf67c3" + "2" * 52},
                          {"weight": 0.5, "file": "/x/E.pt", "sha256": "c4cc2ca5512e" + "3" * 52}],
        "calibrated_on": {"dataset_dir": "/work/data/v12", "split": "val", "n_images": 780,
                          "metrics": {"accuracy": 0.90897, "macro_f1": 0.90895}},
        "shipped": "2026-12-04T18:44:53", "stored_dtype": "float16", "validation": {},
    }
    facts = dict(card_facts(meta))
    assert facts["Trained on"] == "split 'train' of /tmp/data (annotations.json sha256 669f6f7d4a9f...)"
    assert facts["Training"] == "3650 optimiser steps, 10 epochs, 6.51 minutes, on NVIDIA H200"
    assert facts["Continued from"] == "m 0.8.0 (sha256 7b8ddd06039a...)"
    assert facts["Weights averaged from"] == "0.5 x d (sha256 eb6a1fdf67c3...); 0.5 x /x/E.pt (sha256 c4cc2ca5512e...)"
    assert facts["Calibrated on"] == "split 'val' of /work/data/v12, 780 images: accuracy 0.909, macro F1 0.909"
    assert facts["Sites and corpora seen"] == "TCGA-CS, tcia" and facts["Weights stored as"] == "float16"
    assert card_facts({}) == []  # a bundle that says nothing gets no invented rows


def test_the_model_page_shows_the_facts_and_the_whole_metadata(client_a, settings, tmp_path):
    from inference.ml.model import load_bundle, save_bundle, save_random_bundle

    bundle = load_bundle(save_random_bundle(tmp_path / "r.pt", backbone="tiny", seed=4))
    bundle["meta"].update(train_split="train", dataset_dir="/data/d", steps=12, device="cpu",
                          calibrated_on={"dataset_dir": "/data/d", "split": "val", "n_images": 8})
    settings.DETECTOR_WEIGHTS = str(save_bundle(bundle, tmp_path / "w.pt"))
    response = client_a.get(reverse("reports:model"))
    html = response.content.decode()
    card = response.context["card"]
    assert [label for label, _ in card.facts] == ["Trained on", "Training", "Calibrated on"]
    for label, value in card.facts:
        assert f'<th scope="row">{label}</th>' in html
    assert 'id="model-metadata"' in html
    assert all(f'&quot;{key}&quot;' in html for key in card.meta)  # every key in the JSON record (escaped)
    assert "{&#x27;" not in html  # no Python dict dumped into a cell


def test_the_confidence_guide_quotes_the_installed_models_evaluation(db, settings, tmp_path, metrics):
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from reports.selectors import confidence_guide, model_card_current
    from tests.reports.test_evaluation import _confidence

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=6)
    settings.DETECTOR_WEIGHTS = str(weights)
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", confidence=_confidence())
    assert confidence_guide(model_card_current()) is None  # an evaluation of other weights says nothing of these

    metrics["model"]["sha256"] = file_sha256(weights)
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="val", confidence=_confidence())
    guide = confidence_guide(model_card_current())
    # the most confident group holding a quarter of the slices or more: >= 0.9 (two of four, one right)
    assert (guide.high_threshold, guide.high_n, guide.high_share, guide.high_accuracy) == (0.9, 2, 0.5, 0.5)
    # under 0.7: the two said at 0.6, both right
    assert (guide.low_threshold, guide.low_n, guide.low_accuracy) == (0.7, 2, 1.0)
    assert guide.split == "val" and guide.n_images == 4 and guide.model_sha256 == metrics["model"]["sha256"]

    settings.DETECTOR_WEIGHTS = str(tmp_path / "absent.pt")
    assert confidence_guide(model_card_current()) is None


def test_verdict_guides_read_each_verdict_off_the_installed_models_confusion_matrix(db, settings, tmp_path):
    """Per verdict the model gave: of those slices, how many truly were it, and what the others were (the
    matrix's column); a verdict it never gave is left out; another model's evaluation says nothing."""
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from reports.selectors import model_card_current, verdict_guide_text, verdict_guides, verdict_guides_for

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=8)
    settings.DETECTOR_WEIGHTS = str(weights)
    sha = file_sha256(weights)
    # rows: the truth, columns: the verdict given (real, no, added, removed)
    matrix = np.array([[8, 1, 1, 0], [3, 20, 0, 0], [0, 2, 9, 0], [0, 0, 0, 0]])
    evaluation_run_record(metrics=metrics_from_confusion(matrix, version="3.1.0", sha="cd" * 32),
                          dataset_dir="d", out_dir="o", split="test")
    assert verdict_guides(model_card_current()) == {}

    evaluation_run_record(metrics=metrics_from_confusion(matrix, version="3.1.0", sha=sha),
                          dataset_dir="d", out_dir="o", split="test")
    guides = verdict_guides(model_card_current())
    assert sorted(guides) == ["fake_added", "no_tumor", "real_tumor"]  # never said fake_removed: nothing measured
    no = guides["no_tumor"]
    assert (no.said, no.right, no.others) == (23, 20, [("fake_added", 2), ("real_tumor", 1)])
    assert verdict_guide_text(no) == ("When model 3.1.0 read a slice as No tumor in its test evaluation (23 slices), "
                                      "it was right 20 times (87 %); the other 3 were Fake added (2), Real tumor (1).")
    assert (guides["real_tumor"].said, guides["real_tumor"].right) == (11, 8)
    assert verdict_guide_text(guides["fake_added"]) == (
        "When model 3.1.0 read a slice as Fake added in its test evaluation (10 slices), it was right 9 times "
        "(90 %); the other 1 was Real tumor (1).")

    class Job:
        model_sha256 = sha
    assert sorted(verdict_guides_for(Job())) == sorted(guides)
    Job.model_sha256 = "ef" * 32  # a verdict given by other weights
    assert verdict_guides_for(Job()) == {}
    assert verdict_guides_for(None) == {}


def test_the_model_page_says_how_slices_become_a_scan_verdict(client_a, settings, tmp_path):
    """The scan rule beside the weights: its words and its series figures; the max rule, and why, without one."""
    import json

    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from inference.ml.scan_rule import scan_rule_path

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=5)
    settings.DETECTOR_WEIGHTS = str(weights)
    html = client_a.get(reverse("reports:model")).content.decode()
    assert "From slices to a scan verdict" in html
    assert "each verdict&#x27;s highest probability on any slice" in html
    assert "No scan rule was chosen for this model (w.scan_rule.json is missing)" in html

    figures = {"n_cases": 104, "n_authentic": 26, "n_tampered": 78}
    scan_rule_path(weights).write_text(json.dumps({
        "model_sha256": file_sha256(weights), "rule": {"threshold": 0.97, "min_slices": 1},
        "chosen_on": "25 validation series", "written": "2026-12-07",
        "measured": {"test": {"count": {**figures, "accuracy": 0.827, "false_alarm_rate": 0.0, "detection_rate": 0.808},
                              "max": {**figures, "accuracy": 0.721, "false_alarm_rate": 0.115,
                                      "detection_rate": 0.718}}}}))
    response = client_a.get(reverse("reports:model"))
    html = response.content.decode()
    assert "tampered and authentic scans equally common) rises with its highest slice tamper score, passing 50% at 97%" \
        in html and "chosen on 25 validation series" in html
    assert "data-scan-rule-problem" not in html
    rows = re.findall(r"<tr><th scope=\"row\">test</th><td>([^<]+)</td><td class=\"num\">(\d+)</td>"
                      r"<td class=\"num\">([\d.]+)</td><td class=\"num\">([\d.]+)</td><td class=\"num\">([\d.]+)</td>",
                      html)
    assert rows == [("this rule", "104", "0.827", "0.000", "0.808"), ("max rule", "104", "0.721", "0.115", "0.718")]
    # 0 of 26: the Wilson interval's upper end
    assert "this rule called 0 tampered, which is compatible (95 % Wilson interval) with a true false-alarm rate " \
           "up to 13 %" in html
    # where tampering is rare: of the flagged scans, the share tampered (63 of 78 caught, 0 of 26 false alarms;
    # the low end takes 70.7 % caught and 12.9 % false alarms, the Wilson ends: at 1 in 10,
    # 0.0707 / (0.0707 + 0.129 x 0.9) = 37.9 %)
    flagged = re.compile(r"<tr><th scope=\"row\">([^<]+)</th><td class=\"num\">([^<]+)</td>"
                         r"<td class=\"num\">([^<]+)</td></tr>")
    table = html.split('id="table-flagged"')[1].split("</table>")[0]
    assert flagged.findall(table) == [("1 in 10", "100%", "37.9% to 100%"), ("1 in 100", "100%", "5.3% to 100%"),
                                      ("1 in 1,000", "100%", "0.55% to 100%")]
    settings.TAMPER_PREVALENCE = 0.005
    html = client_a.get(reverse("reports:model")).content.decode()
    table = html.split('id="table-flagged"')[1].split("</table>")[0]
    assert flagged.findall(table)[0] == ("1 in 200 (this site)", "100%", "2.7% to 100%")
    assert len(flagged.findall(table)) == 4 and "the share this site expects" in html

    # a rule chosen for other weights is not in force, and the page says so
    scan_rule_path(weights).write_text(json.dumps({"model_sha256": "f" * 64, "rule": {"threshold": 0.97,
                                                                                      "min_slices": 1}}))
    html = client_a.get(reverse("reports:model")).content.decode()
    assert "was chosen for another model (ffffffffffff)" in html and "table-scan-rule" not in html


def test_the_model_page_shows_the_held_out_series_of_the_rule_in_force(client_a, settings, tmp_path):
    """3-D volume injections and processed authentic series, from the series evaluation beside the weights, only
    when it measured these weights and the rule in force; a file that does not fit says why it is not shown."""
    import json

    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from inference.ml.scan_rule import scan_rule_path

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=5)
    settings.DETECTOR_WEIGHTS = str(weights)
    sha, rule = file_sha256(weights), {"threshold": 0.96, "min_slices": 1, "slope": 1.04}
    scan_rule_path(weights).write_text(json.dumps({"model_sha256": sha, "rule": rule}))
    folder = tmp_path / "evaluation" / "series"
    folder.mkdir(parents=True)
    html = client_a.get(reverse("reports:model")).content.decode()
    assert "Cases the rule was never chosen on" not in html  # no series evaluation beside the weights

    (folder / "series_metrics.json").write_text(json.dumps(series_metrics_doc(sha, rule)))
    html = client_a.get(reverse("reports:model")).content.decode()
    volumes = html.split('id="table-held-out-volumes"')[1].split("</table>")[0]
    assert re.findall(r"<tr><th scope=\"row\">(\w+)</th><td>([^<]+)</td>((?:<td class=\"num\">[^<]+</td>)+)</tr>",
                      volumes) == [
        ("test", "a tumour volume (5 slices)", '<td class="num">4</td><td class="num">19 of 20</td>'
                                               '<td class="num">2</td><td class="num">4</td>'),
        ("test", "one slice pasted 3 times", '<td class="num">4</td><td class="num">9 of 12</td>'
                                             '<td class="num">1</td><td class="num">3</td>')]
    processed = html.split('id="table-held-out-processed"')[1].split("</table>")[0]
    # summed over the splits: 10 test + 8 val series
    assert re.findall(r"<tr><th scope=\"row\">([^<]+)</th>((?:<td class=\"num\">[^<]+</td>)+)</tr>", processed) == [
        ("as read", '<td class="num">18</td><td class="num">0</td><td class="num">3 (3)</td><td class="num">1 (1)</td>'),
        ("gaussian noise sigma 3", '<td class="num">18</td><td class="num">17</td><td class="num">17 (1)</td>'
                                   '<td class="num">5 (2)</td>')]
    assert "10 test and 8 val series" in html and "data-held-out-problem" not in html
    assert "after <strong>gaussian noise sigma 3</strong>\n    this rule called 2 of 18 authentic series tampered" in html

    # measured with another rule, or other weights, or unreadable: not shown, and why
    for doc, words in ((series_metrics_doc(sha, {**rule, "threshold": 0.9}), "measured another scan rule than the one"),
                       (series_metrics_doc("e" * 64, rule), "is of other weights than the installed ones"),
                       ({"model": {"sha256": sha}, "chosen_on_val": rule, "splits": {"test": {"processed": {
                           "as read": {"n": 3}}}}}, "cannot be shown: ")):
        (folder / "series_metrics.json").write_text(json.dumps(doc))
        html = client_a.get(reverse("reports:model")).content.decode()
        assert "data-held-out-problem" in html and words in html, words
        assert "table-held-out-processed" not in html and "table-held-out-volumes" not in html
    (folder / "series_metrics.json").write_text("{not json")
    html = client_a.get(reverse("reports:model")).content.decode()
    assert "series_metrics.json cannot be shown" in html


def test_the_shipped_series_evaluation_is_of_the_shipped_weights_and_rule():
    """models/evaluation/series/series_metrics.json reads as the model page shows it, for the shipped rule: every
    processing of the slice evaluation, both splits, the 3-D volumes (the figures the README quotes)."""
    import json

    from inference.ml.evaluate import PERTURBATIONS
    from reports.selectors import ModelCard, held_out_series

    models = Path(__file__).resolve().parents[2] / "models"
    rule_doc = json.loads((models / "detector.scan_rule.json").read_text())
    card = ModelCard(weights_path=str(models / "detector.pt"), available=True, sha256=rule_doc["model_sha256"])
    held = held_out_series(card, rule_doc["rule"])
    assert held is not None and held.problem == ""
    assert [name for name, *_ in held.processed] == ["as read", *PERTURBATIONS]
    assert dict(held.processed_splits) == {"test": 26, "val": 25}
    rows = {name: rest for name, *rest in held.processed}
    assert rows["as read"] == [51, 0, 4, 4, 1, 1] and rows["gaussian noise sigma 1"][4] == 8
    assert held.worst_unwarned == ("gaussian noise sigma 1", 8, 51)
    assert [(split, case, n, by_rule) for split, case, n, _, _, _, by_rule in held.volumes] == [
        ("test", "added_volume", 19, 19), ("test", "added_3 on the same series", 19, 17),
        ("val", "added_volume", 22, 22), ("val", "added_3 on the same series", 22, 20)]


def test_a_tampered_scan_verdict_says_how_often_processed_authentic_series_were_flagged(client_a, analysed_scan,
                                                                                       settings, tmp_path):
    """Beside a verdict of tampering, from the same weights and rule: the false alarms on authentic series as read
    and after the processing the input check misses most (page, PDF, API); nothing under other verdicts, for other
    weights, another rule, or an evaluation where no processing beats reading as is."""
    import json

    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from inference.ml.scan_rule import scan_rule_path

    scan, job = analysed_scan.scan, analysed_scan.job  # scan verdict fake_added, by weights "ef" * 32
    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=5)
    settings.DETECTOR_WEIGHTS = str(weights)
    sha, rule = file_sha256(weights), {"threshold": 0.96, "min_slices": 1, "slope": 1.04}
    scan_rule_path(weights).write_text(json.dumps({"model_sha256": sha, "rule": rule}))
    series_file = tmp_path / "evaluation" / "series" / "series_metrics.json"
    series_file.parent.mkdir(parents=True)
    series_file.write_text(json.dumps(series_metrics_doc(sha, rule)))
    words = ("Authentic scans are flagged too: of 18 authentic test and validation series, this model and scan rule "
             "flagged 1 of 18 as they were read, and 2 of 18 after one processing (gaussian noise sigma 3) without a "
             "warning from the input check.")

    def shown() -> str | None:
        """The note as the page renders it (None: hidden; the element is always there for the live page)."""
        html = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
        found = re.search(r'<p class="alert alert-info small( hidden)?" role="note" data-scan-processed-caveat>'
                          r'<span data-scan-processed-caveat-text>([^<]*)</span>', html)
        assert found, "the note's element is missing"
        assert bool(found.group(1)) == (found.group(2) == "")
        return None if found.group(1) else " ".join(found.group(2).split())

    def api() -> str | None:
        return client_a.get(reverse("api-job-detail", args=[job.pk])).json()["false_alarm_note"]

    job.scan_rule = rule
    job.save(update_fields=["scan_rule"])
    assert shown() is None and api() is None  # other weights gave the verdict

    job.model_sha256 = sha
    job.save(update_fields=["model_sha256"])
    assert words in shown() and words in api()
    assert words in report_pdf_text(client_a, scan.pk)  # and the report that is filed

    job.verdict = "real_tumor"
    job.save(update_fields=["verdict"])
    assert shown() is None and api() is None
    assert "Authentic scans are flagged too" not in report_pdf_text(client_a, scan.pk)

    job.verdict, job.scan_rule = "fake_removed", {**rule, "threshold": 0.9}
    job.save(update_fields=["verdict", "scan_rule"])
    assert shown() is None and api() is None  # the evaluation measured another rule

    job.scan_rule = rule
    job.save(update_fields=["scan_rule"])
    assert words in shown()
    doc = series_metrics_doc(sha, rule)
    doc["splits"]["val"]["processed"]["gaussian noise sigma 3"]["count"]["false_alarms_unwarned"] = 0
    series_file.write_text(json.dumps(doc))
    assert shown() is None  # 1 unwarned after processing: no more than as read


def test_a_model_evaluated_only_off_a_test_split_is_shown_with_a_warning(client_a, settings, tmp_path, metrics):
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=9)
    settings.DETECTOR_WEIGHTS = str(weights)
    metrics["model"]["sha256"] = file_sha256(weights)
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="val")
    html = client_a.get(reverse("reports:model")).content.decode()
    assert ("This evaluation is not on a test split (split val): its images may include ones the model was trained "
            "or calibrated on, so its figures may be better than the model does on new patients. It is shown "
            "because no test-split evaluation of this model is recorded or shipped.") in html
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test")
    assert 'id="not-a-test-split"' not in client_a.get(reverse("reports:model")).content.decode()
