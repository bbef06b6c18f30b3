"""compare_evaluations: two runs of the same images compared image by image, on hand-computed cases and end to end."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from inference.ml.compare import ComparisonError, Run, compare_runs, load_run, mcnemar_exact
from inference.ml.intervals import paired_differences


def _row(i, verdict, predicted, score=None, iou=None):
    tampered = verdict in ("fake_added", "fake_removed")
    return {"image_id": i, "file_name": f"images/{i:03d}.png", "verdict": verdict, "predicted": predicted,
            "tamper_score": score if score is not None else (0.9 if predicted in ("fake_added", "fake_removed") else 0.1),
            "iou": iou if iou is not None else (None if verdict == "no_tumor" else (0.8 if tampered else 0.7))}


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(2, 2) == pytest.approx(1.0)
    assert mcnemar_exact(5, 0) == pytest.approx(2 * 0.5 ** 5)  # 0.0625
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 1024)  # P(X <= 1 | n = 10), both tails
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)


def test_paired_differences_by_hand():
    truth = ["real_tumor", "no_tumor", "fake_added", "fake_removed"] * 3
    patients = [f"P{i // 4}" for i in range(12)]
    a = [_row(i, v, v if i % 4 != 3 else "real_tumor") for i, v in enumerate(truth)]  # wrong on every removal
    same = paired_differences(a, [dict(r) for r in a], patients, resamples=200)
    assert same["accuracy"] == {"a": 0.75, "b": 0.75, "difference": 0.0, "low": 0.0, "high": 0.0}
    b = [_row(i, v, v) for i, v in enumerate(truth)]  # B right everywhere: better in every resample
    better = paired_differences(a, b, patients, resamples=200)
    assert better["accuracy"]["difference"] == pytest.approx(0.25)
    assert better["accuracy"]["low"] == pytest.approx(0.25) and better["accuracy"]["high"] == pytest.approx(0.25)
    assert better["f1"]["fake_removed"]["a"] == 0.0 and better["f1"]["fake_removed"]["b"] == 1.0
    assert better["n_patients"] == 3 and "note" not in better
    two = paired_differences(a[:8], b[:8], patients[:8], resamples=200)  # 2 patients: no interval
    assert two["accuracy"]["low"] is None and two["accuracy"]["difference"] == pytest.approx(0.25)
    assert "too few to resample" in two["note"]
    with pytest.raises(ValueError, match="different true verdicts"):
        paired_differences(a, [dict(r, verdict="no_tumor") for r in b], patients)


def _run(tmp_path, name, rows, **about):
    return Run(tmp_path / name, {"model": {"name": name, "version": "1", "sha256": "0" * 64},
                                 "latency_s": {"p50": 0.1, "p95": 0.2, "device": "cpu", "threads": 2}}, rows,
               {"dataset_sha256": "a" * 64, "split": "test", **about})


def test_runs_of_different_images_are_refused(tmp_path):
    rows = [_row(i, "no_tumor", "no_tumor") for i in range(6)]
    a = _run(tmp_path, "a", rows)
    with pytest.raises(ComparisonError, match=r"different images: 2 only in .*a \(ids \[4, 5\]\).*--limit"):
        compare_runs(a, _run(tmp_path, "b", rows[:4]))
    with pytest.raises(ComparisonError, match="different datasets"):
        compare_runs(a, _run(tmp_path, "b", rows, dataset_sha256="b" * 64))
    with pytest.raises(ComparisonError, match=r"different splits \('test' and 'val'\)"):
        compare_runs(a, _run(tmp_path, "b", rows, split="val"))
    moved = [dict(r, file_name="images/other.png") if r["image_id"] == 2 else r for r in rows]
    with pytest.raises(ComparisonError, match="Image 2 is images/002.png .* but images/other.png"):
        compare_runs(a, _run(tmp_path, "b", moved))


def test_without_the_dataset_images_are_resampled_alone_and_said_so(tmp_path):
    truth = ["real_tumor", "no_tumor", "fake_added", "fake_removed"] * 5
    a = _run(tmp_path, "a", [_row(i, v, "no_tumor") for i, v in enumerate(truth)])
    b = _run(tmp_path, "b", [_row(i, v, v) for i, v in enumerate(truth)])
    result = compare_runs(a, b, resamples=100)
    assert result["paired"] == {"fixed": 15, "broken": 0, "both_right": 5, "both_wrong": 0,
                                "mcnemar_p": pytest.approx(2 * 0.5 ** 15)}
    assert result["groups"] is None and "too narrow" in result["notes"][0]
    assert result["summary"].startswith("B is more accurate than A: +0.750")


def test_load_run_names_what_is_missing(tmp_path):
    with pytest.raises(ComparisonError, match="no such folder"):
        load_run(tmp_path / "nope")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(ComparisonError, match="no predictions.jsonl"):
        load_run(tmp_path / "run")
    (tmp_path / "run" / "predictions.jsonl").write_text('{"image_id": 1}\n')
    with pytest.raises(ComparisonError, match="line 1: no file_name, verdict, predicted, tamper_score, iou"):
        load_run(tmp_path / "run")


def test_compare_evaluations_end_to_end(tiny_dataset, random_bundle, tmp_path):
    from django.conf import settings

    for name, weights in (("a", random_bundle), ("b", settings.DETECTOR_WEIGHTS)):
        call_command("evaluate_detector", str(tiny_dataset), "--out", str(tmp_path / name), "--weights",
                     str(weights), "--no-record", "--no-coco-ap", "--bootstrap", "0", stdout=StringIO(), verbosity=0)
    out = StringIO()
    call_command("compare_evaluations", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp"),
                 "--bootstrap", "200", stdout=out)
    text = out.getvalue()
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    rows = {k: [json.loads(x) for x in (tmp_path / k / "predictions.jsonl").read_text().splitlines()] for k in "ab"}
    right = {k: [r["verdict"] == r["predicted"] for r in rows[k]] for k in "ab"}
    assert result["n_images"] == 8 and result["figures"]["n_patients"] == 2  # patients read from the dataset
    assert result["paired"]["fixed"] == sum(b and not a for a, b in zip(right["a"], right["b"]))
    assert result["paired"]["broken"] == sum(a and not b for a, b in zip(right["a"], right["b"]))
    metrics = {k: json.loads((tmp_path / k / "metrics.json").read_text()) for k in "ab"}
    assert result["figures"]["accuracy"]["a"] == pytest.approx(metrics["a"]["accuracy"])
    assert result["figures"]["accuracy"]["b"] == pytest.approx(metrics["b"]["accuracy"])
    assert result["figures"]["mean_iou"]["b"] == pytest.approx(metrics["b"]["mean_iou"], abs=1e-5)
    assert {g["name"]: g["n_images"] for g in result["groups"]["method"]} == {
        "real_tumor": 2, "no_tumor": 2, "fake_added paste": 2, "fake_removed fill": 2}
    assert "too few to resample" in " ".join(result["notes"])  # 2 patients: no interval, and said so
    assert "| accuracy |" in text and "## By verdict and tampering method" in text
    assert "no interval: 2 patients are too few to resample" in text
    assert (tmp_path / "cmp" / "comparison.md").read_text() in text  # the file is what the command printed
    with pytest.raises(CommandError, match="not the one the runs read"):
        call_command("compare_evaluations", str(tmp_path / "a"), str(tmp_path / "b"), "--dataset",
                     str(_other_dataset(tmp_path)), stdout=StringIO())


def _other_dataset(tmp_path):
    from .conftest import build_tiny_dataset

    return build_tiny_dataset(tmp_path / "other", size=96)
