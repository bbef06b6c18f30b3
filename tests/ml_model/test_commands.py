"""evaluate_detector and detect, end to end through manage.py's call_command."""
from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from inference.ml.labels import VERDICTS
from inference.ml.predictor import Predictor
from reports.models import EvaluationRun

from .conftest import sample_slices


def _check_ratio(value):
    assert value is None or 0.0 <= value <= 1.0


@pytest.mark.django_db
def test_evaluate_detector_writes_the_contract(tiny_dataset, random_bundle, tmp_path):
    out = tmp_path / "eval"
    call_command("evaluate_detector", str(tiny_dataset), "--out", str(out), "--weights", str(random_bundle),
                 "--split", "test", "--robustness", "--robustness-limit", "2", stdout=StringIO(), verbosity=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 4  # only the test split
    for key in ("accuracy", "macro_f1", "mean_iou", "tamper_auc"):
        _check_ratio(metrics[key])
    assert set(metrics["per_class"]) == set(VERDICTS)
    for cls in metrics["per_class"].values():
        assert set(cls) == {"precision", "recall", "f1", "support"}
        assert cls["support"] == 1
    cm = metrics["confusion_matrix"]
    assert cm["labels"] == list(VERDICTS)
    assert np.asarray(cm["matrix"]).sum() == 4 and np.asarray(cm["matrix"]).sum(axis=1).tolist() == [1, 1, 1, 1]
    assert metrics["latency_s"]["device"] == "cpu" and metrics["latency_s"]["threads"] >= 1
    assert 0 < metrics["latency_s"]["p50"] <= metrics["latency_s"]["p95"]
    assert len(metrics["model"]["sha256"]) == 64

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert set(row) == {"image_id", "file_name", "verdict", "predicted", "scores", "tamper_score", "iou"}
        assert row["file_name"].startswith("images/")
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert row["tamper_score"] == pytest.approx(row["scores"]["fake_added"] + row["scores"]["fake_removed"],
                                                    abs=1e-4)
        assert (row["iou"] is None) == (row["verdict"] == "no_tumor")
    # the accuracy in metrics.json is the one of the rows
    assert metrics["accuracy"] == pytest.approx(sum(r["verdict"] == r["predicted"] for r in rows) / 4)
    for name in ("tables.md", "f1_by_class.png", "test_distribution.png", "confusion_matrix.png", "coco_ap.json",
                 "robustness.json", "confidence.json", "reliability.png"):
        assert (out / name).stat().st_size > 0, name
    assert "Table 1" in (out / "tables.md").read_text()
    # how far the confidence can be trusted, from the rows' own probabilities
    confidence = json.loads((out / "confidence.json").read_text())
    assert confidence["n_images"] == 4 and confidence["accuracy"] == pytest.approx(metrics["accuracy"])
    assert sum(b["count"] for b in confidence["reliability"]) == 4
    assert confidence["mean_confidence"] == pytest.approx(np.mean([max(r["scores"].values()) for r in rows]), abs=1e-6)
    assert 0.0 <= confidence["ece"] <= 1.0 and 0.0 <= confidence["brier"] <= 2.0
    assert "## How far the confidence can be trusted" in (out / "tables.md").read_text()
    from inference.ml.evaluate import PERTURBATIONS

    robustness = json.loads((out / "robustness.json").read_text())
    assert set(robustness) == {"none", *PERTURBATIONS}
    for name, result in robustness.items():
        assert result["n_images"] == 2
        ranges = result["input_range"]
        assert sum(v["n"] for v in ranges.values()) == 2
    # the input check flags the strong noise it was measured against on these real slices, never the clean ones
    assert robustness["none"]["input_range"]["outside"]["n"] == 0
    assert robustness["gaussian noise sigma 3"]["input_range"]["outside"]["n"] == 2
    assert "## Input range check" in (out / "tables.md").read_text()
    breakdown = json.loads((out / "breakdown.json").read_text())
    assert breakdown["input_range"]["none"]["within"]["n"] + breakdown["input_range"]["none"]["not measured"]["n"] == 4
    # the fixture's patients are not TCGA ids: their site is the source corpus
    assert breakdown["by_site"]["lgg"]["n"] == 4
    assert {k: v["n"] for k, v in breakdown["by_method"].items()} == {"(none)": 2, "fill": 1, "paste": 1}
    # one row per verdict and region size; the authentic slice without a region is its own row
    assert sum(g["n"] for g in breakdown["by_area"].values()) == 4
    assert breakdown["by_area"]["no_tumor"]["n"] == 1
    assert all(name == "no_tumor" or name.split(", ")[1].endswith("px") for name in breakdown["by_area"])
    assert "## By verdict and region size" in (out / "tables.md").read_text()

    # confidence intervals: the estimates are metrics.json's figures; the test split is one patient, too few to
    # resample, so no interval is given and the files say why
    intervals = json.loads((out / "intervals.json").read_text())
    assert intervals["n_images"] == 4 and intervals["n_patients"] == 1 and intervals["resamples"] == 0
    assert intervals["note"].startswith("1 patient behind these images: too few to resample")
    assert f"**{intervals['note']}**" in (out / "tables.md").read_text()
    for key in ("accuracy", "macro_f1", "mean_iou", "tamper_auc"):
        entry = intervals[key]
        if metrics[key] is not None:
            assert entry["estimate"] == pytest.approx(metrics[key])
        if entry["low"] is not None:
            assert 0.0 <= entry["low"] <= entry["high"] <= 1.0
    assert sum(g["n"] for g in intervals["by_source"].values()) == 4
    assert "## 95 % confidence intervals (patients resampled)" in (out / "tables.md").read_text()

    # run.json says what was measured, so the folder can travel with the weights
    from inference.ml.predictor import file_sha256

    about = json.loads((out / "run.json").read_text())
    assert about["dataset_dir"] == str(tiny_dataset) and about["split"] == "test" and about["n_images"] == 4
    assert about["dataset_sha256"] == file_sha256(tiny_dataset / "annotations.json")
    assert about["evaluated_at"].endswith("+00:00")
    # and how: the options the figures depend on, and the software and code that computed them
    assert about["options"] == {"robustness": True, "robustness_limit": 2, "coco_ap": True, "bootstrap": 2000,
                                "warmup": 3, "device": "cpu"}
    assert about["software"]["torch"] == torch.__version__ and about["software"]["python"].count(".") == 2
    code = about["software"]["code"]
    assert code is None or re.fullmatch(r"[0-9a-f]{40}(\+changes)?", code)
    assert "n_in_split" not in about  # the whole split

    run = EvaluationRun.objects.get()
    assert run.n_images == 4 and run.split == "test"
    assert run.dataset_sha256 == about["dataset_sha256"]
    assert run.breakdown == breakdown  # breakdown.json as written, for the model page
    assert run.intervals == intervals
    assert run.model_sha256 == metrics["model"]["sha256"]


@pytest.mark.django_db
def test_evaluate_detector_does_not_record_a_run_of_part_of_the_images(tiny_dataset, random_bundle, tmp_path):
    """--limit is a quick check: its figures must not become the model's on the model page and the scan pages."""
    stderr = StringIO()
    call_command("evaluate_detector", str(tiny_dataset), "--out", str(tmp_path / "eval"), "--weights",
                 str(random_bundle), "--split", "test", "--limit", "2", "--no-coco-ap", "--bootstrap", "0",
                 stdout=StringIO(), stderr=stderr, verbosity=0)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n_images"] == 2
    about = json.loads((tmp_path / "eval" / "run.json").read_text())
    assert (about["n_images"], about["n_in_split"]) == (2, 4)
    assert EvaluationRun.objects.count() == 0
    assert ("This run will not be recorded in the database: --limit 2 evaluates part of the images, a quick check"
            in stderr.getvalue())


def test_evaluate_detector_bootstrap_off_and_refused(tiny_dataset, random_bundle, tmp_path):
    out = tmp_path / "eval"
    call_command("evaluate_detector", str(tiny_dataset), "--out", str(out), "--weights", str(random_bundle),
                 "--no-record", "--no-coco-ap", "--bootstrap", "0", stdout=StringIO(), verbosity=0)
    assert (out / "metrics.json").is_file() and not (out / "intervals.json").exists()
    assert "confidence intervals" not in (out / "tables.md").read_text()
    with pytest.raises(CommandError, match="--bootstrap must be 0"):
        call_command("evaluate_detector", str(tiny_dataset), "--out", str(tmp_path / "o2"), "--weights",
                     str(random_bundle), "--no-record", "--bootstrap", "-5")
    assert not (tmp_path / "o2").exists()


def test_evaluate_detector_without_weights_says_what_to_do(tiny_dataset, tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("evaluate_detector", str(tiny_dataset), "--out", str(tmp_path / "o"),
                     "--weights", str(tmp_path / "missing.pt"), "--no-record")


def test_evaluate_detector_unknown_split(tiny_dataset, random_bundle, tmp_path):
    with pytest.raises(CommandError, match="no image has split 'nope'; its images have 'test' \\(4 images\\), "
                                           "'train' \\(4 images\\)."):
        call_command("evaluate_detector", str(tiny_dataset), "--out", str(tmp_path / "o"),
                     "--weights", str(random_bundle), "--split", "nope", "--no-record")


def test_evaluate_detector_names_every_image_it_cannot_evaluate_before_running(tiny_dataset, random_bundle,
                                                                            tmp_path):
    """A dataset written elsewhere: every broken image is named at once, nothing is predicted or written."""
    import shutil

    import cv2

    dataset = tmp_path / "foreign"
    shutil.copytree(tiny_dataset, dataset)
    data = json.loads((dataset / "annotations.json").read_text())
    images = data["images"]
    (dataset / images[0]["file_name"]).unlink()
    images[1]["width"] = 100  # a no_tumor image: no region to decode at that size
    images[2]["verdict"] = "tampered"
    cv2.imwrite(str(dataset / images[3]["file_name"]), np.zeros((10, 10), np.uint8))
    broken = next(a for a in data["annotations"] if a["image_id"] == images[4]["id"])
    broken["segmentation"] = {"size": [3, 3], "counts": "x"}
    images[6]["id"] = images[5]["id"]
    (dataset / "annotations.json").write_text(json.dumps(data))
    out = tmp_path / "eval"
    with pytest.raises(CommandError) as error:
        call_command("evaluate_detector", str(dataset), "--out", str(out), "--weights", str(random_bundle),
                     "--no-record", stdout=StringIO(), verbosity=0)
    message = str(error.value)
    assert "cannot be evaluated (6 problems; nothing was run, nothing written)" in message
    assert (f"image {images[5]['id']} ({images[6]['file_name']}): image id {images[5]['id']} is also "
            f"{images[5]['file_name']}'s; ids must be unique.") in message
    for image, why in ((images[0], "the file does not exist"), (images[2], "verdict 'tampered' is not one of"),
                       (images[1], "the image is 256 x 256 pixels, the annotations say 100 x 256"),
                       (images[3], "The slice is 10 x 10 pixels; the detector needs at least 16 x 16"), (images[4], f"annotation {broken['id']} cannot be decoded (RLE size [3, 3] differs")):
        assert f"image {image['id']} ({image['file_name']}): {why}" in message
    assert not out.exists()


def test_evaluate_detector_replaces_an_earlier_run_whole_and_an_interrupted_one_changes_nothing(
        tiny_dataset, random_bundle, tmp_path, monkeypatch):
    import inference.ml.evaluate as evaluate

    out = tmp_path / "eval"
    out.mkdir()
    (out / "robustness.json").write_text('{"from": "an earlier run with --robustness"}')
    (out / "intervals.json").write_text('{"from": "an earlier run"}')
    (out / "notes.txt").write_text("mine")
    args = ("evaluate_detector", str(tiny_dataset), "--out", str(out), "--weights", str(random_bundle),
            "--no-record", "--no-coco-ap", "--bootstrap", "0")
    call_command(*args, stdout=StringIO(), verbosity=0)
    assert not (out / "robustness.json").exists() and not (out / "intervals.json").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not one of the command's files: kept
    assert not list(out.glob(".partial-*"))
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(written) - {"notes.txt"} <= set(evaluate.OUTPUT_FILES) and "metrics.json" in written

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "write_tables", interrupted)  # after the predictions, before the last files
    with pytest.raises(KeyboardInterrupt):
        call_command(*args, stdout=StringIO(), verbosity=0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    assert not list(out.glob(".partial-*"))


def test_evaluate_detector_reads_a_foreign_dataset_as_it_is(tiny_dataset, random_bundle, tmp_path):
    """Polygons, grey slices stored as RGB, 16-bit, files in a sub-folder, no split, extra keys, regions that
    give only their polygon: all evaluated, COCO AP included."""
    import shutil

    import cv2

    from inference.ml.coco import read_png

    dataset = tmp_path / "foreign"
    shutil.copytree(tiny_dataset, dataset)
    data = json.loads((dataset / "annotations.json").read_text())
    (dataset / "images" / "sub").mkdir()
    for k, image in enumerate(data["images"]):
        image.pop("split")
        image["scanner"] = "elsewhere"
        pixels = read_png(dataset / image["file_name"])
        moved = f"images/sub/{k}.png"
        stored = (np.dstack([pixels] * 3) if k % 2 else pixels.astype(np.uint16) * 257)
        cv2.imwrite(str(dataset / moved), stored)
        (dataset / image["file_name"]).unlink()
        image["file_name"] = moved
    for k, ann in enumerate(data["annotations"]):
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        if k % 2:  # nothing but where the region lies and which image it is on
            for key in ("id", "category_id", "area", "bbox", "iscrowd"):
                del ann[key]
    (dataset / "annotations.json").write_text(json.dumps(data))
    out = tmp_path / "eval"
    call_command("evaluate_detector", str(dataset), "--out", str(out), "--weights", str(random_bundle),
                 "--no-record", "--bootstrap", "0", stdout=StringIO(), verbosity=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == len(data["images"])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == [image["file_name"] for image in data["images"]]
    assert all((r["iou"] is None) == (r["verdict"] == "no_tumor") for r in rows)
    assert json.loads((out / "coco_ap.json").read_text())["n_regions"] == len(data["annotations"])


def _write_dicom(path, pixels: np.ndarray, **attributes):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.save_as(str(path), enforce_file_format=True)


def test_detect_dicom_and_png(random_bundle, tmp_path):
    tumour, _, _ = sample_slices()
    dcm = tmp_path / "slice.dcm"
    _write_dicom(dcm, tumour.astype(np.uint16) * 16 + 100)  # 16-bit, windowed by the one rule
    png = tmp_path / "slice.png"
    from inference.ml.coco import encode_png

    png.write_bytes(encode_png(tumour))
    out = tmp_path / "report.json"
    call_command("detect", str(dcm), str(png), "--weights", str(random_bundle), "--out", str(out),
                 "--masks", str(tmp_path / "masks"), stderr=StringIO())
    report = json.loads(out.read_text())
    assert len(report["model"]["sha256"]) == 64
    kinds = [f["kind"] for f in report["files"]]
    assert kinds == ["dicom", "image"]
    for f in report["files"]:
        assert f["n_slices"] == 1 and f["shape"] == [256, 256]
        assert f["file_verdict"]["verdict"] in VERDICTS
        assert f["file_verdict"]["scan_rule"] == {"rule": "max"}  # this random bundle has no scan rule beside it
        s = f["slices"][0]
        assert sum(s["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        for inst in s["instances"]:
            assert inst["label"] == s["verdict"]
        assert f["sequence"]["sequence"] == "unknown" and f["sequence"]["trained"] is None  # nothing tells
    # the same pixels (16-bit DICOM windowed back to 8 bits is a linear map) give close scores
    a, b = (f["slices"][0]["tamper_score"] for f in report["files"])
    assert abs(a - b) < 0.2
    # a second run into the same masks folder: the folder holds exactly the masks its report names
    masks = tmp_path / "masks"
    masks.mkdir(exist_ok=True)
    (masks / "slice.png.slice0000.region7.png").write_bytes(b"an earlier run's mask")
    (masks / "other.png.slice0000.region0.png").write_bytes(b"another file's mask")
    call_command("detect", str(png), "--weights", str(random_bundle), "--out", str(out), "--masks", str(masks),
                 stderr=StringIO())
    named = {Path(i["mask_png"]).name for s in json.loads(out.read_text())["files"][0]["slices"]
             for i in s["instances"]}
    assert {p.name for p in masks.glob("slice.png.*")} == named
    assert (masks / "other.png.slice0000.region0.png").exists()


def test_detect_restates_the_file_verdict_at_a_share_of_tampered_scans(random_bundle, tmp_path):
    """--prevalence: with a scan rule, each file verdict also gives its tamper probability at that share; without
    one there is no calibrated probability to restate, and the command says so; a share outside (0, 1) is refused
    before the model is loaded."""
    import shutil

    from django.core.management.base import CommandError

    from inference.ml.coco import encode_png
    from inference.ml.predictor import file_sha256
    from inference.ml.scan_rule import at_prevalence, scan_rule_path

    tumour, _, _ = sample_slices()
    png = tmp_path / "slice.png"
    png.write_bytes(encode_png(tumour))
    weights = shutil.copy(random_bundle, tmp_path / "detector.pt")
    out, stderr = tmp_path / "report.json", StringIO()
    call_command("detect", str(png), "--weights", str(weights), "--out", str(out), "--prevalence", "0.01",
                 stderr=stderr)
    verdict = json.loads(out.read_text())["files"][0]["file_verdict"]
    assert "at_prevalence" not in verdict and "these weights have no scan rule" in stderr.getvalue()

    scan_rule_path(weights).write_text(json.dumps({"model_sha256": file_sha256(weights),
                                                   "rule": {"threshold": 0.7, "min_slices": 1}}))
    call_command("detect", str(png), "--weights", str(weights), "--out", str(out), "--prevalence", "0.01",
                 stderr=StringIO())
    verdict = json.loads(out.read_text())["files"][0]["file_verdict"]
    assert verdict["scan_rule"]["rule"] == "count"
    assert verdict["at_prevalence"]["prevalence"] == 0.01
    assert verdict["at_prevalence"]["tamper_probability"] == pytest.approx(
        at_prevalence(verdict["tamper_score"], 0.01), abs=1e-6)
    assert verdict["at_prevalence"]["tamper_probability"] < verdict["tamper_score"]
    for bad in ("2", "0", "rare"):
        with pytest.raises(CommandError, match="--prevalence: The share of tampered scans must"):
            call_command("detect", str(png), "--weights", str(weights), "--prevalence", bad)


def test_detect_warns_on_a_sequence_it_was_not_trained_on(random_bundle):
    from inference.ml.paths import shared_datasets_dir

    t2 = shared_datasets_dir() / "brainix-dicom" / "DICOM" / "T2"
    stdout, stderr = StringIO(), StringIO()
    call_command("detect", str(t2), "--weights", str(random_bundle), stdout=stdout, stderr=stderr)
    entry = json.loads(stdout.getvalue())["files"][0]
    assert entry["n_slices"] == 22
    assert (entry["sequence"]["sequence"], entry["sequence"]["trained"]) == ("t2", False)
    assert "T2: This series looks like T2" in stderr.getvalue()
    assert entry["header_checks"]["status"] == "consistent" and "signs that files were edited" not in stderr.getvalue()


def test_detect_reports_the_dicom_header_checks_and_warns_on_an_edited_series(random_bundle, tmp_path):
    import pydicom

    from inference.ml.paths import shared_datasets_dir

    series = tmp_path / "flair"
    series.mkdir()
    for path in sorted((shared_datasets_dir() / "brainix-dicom" / "DICOM" / "FLAIR").glob("*.dcm"))[:6]:
        (series / path.name).write_bytes(path.read_bytes())
    edited = pydicom.dcmread(series / "IM-0001-0002.dcm")
    edited.file_meta.ImplementationVersionName = "EDITOR 1.0"
    edited.InstanceCreationDate = "20070101"
    edited.save_as(series / "IM-0001-0002.dcm")
    png = tmp_path / "slice.png"
    from inference.ml.coco import encode_png

    png.write_bytes(encode_png(sample_slices()[0]))
    stdout, stderr = StringIO(), StringIO()
    call_command("detect", str(series), str(png), "--weights", str(random_bundle), stdout=stdout, stderr=stderr)
    dicom, image = json.loads(stdout.getvalue())["files"]
    assert "header_checks" not in image
    checks = dicom["header_checks"]
    assert (checks["status"], checks["warnings"]) == ("warnings", 2)
    assert [f["check"] for f in checks["findings"]] == ["writer", "time"]
    assert all(f["slices"] == [4] for f in checks["findings"])  # bottom up: the second file is the fifth slice
    err = stderr.getvalue()
    assert "flair: The headers of 6 files show 2 signs that files were edited" in err
    assert "  1 of 6 files were last written by a different program (EDITOR 1.0) from the rest (OSIRIX, 5 files), " \
           "at slice 5" in err


def test_detect_warns_when_the_noise_is_outside_the_training_range(random_bundle, tmp_path):
    from inference.ml.coco import encode_png

    tumour, _, _ = sample_slices()
    clean, noisy = tmp_path / "clean.png", tmp_path / "noisy.png"
    clean.write_bytes(encode_png(tumour))
    rng = np.random.default_rng(1)
    noisy.write_bytes(encode_png(np.clip(tumour + rng.normal(0, 3, tumour.shape), 0, 255).round().astype(np.uint8)))
    stdout, stderr = StringIO(), StringIO()
    call_command("detect", str(clean), str(noisy), "--weights", str(random_bundle), stdout=stdout, stderr=stderr)
    first, second = json.loads(stdout.getvalue())["files"]
    assert first["input_check"]["within"] is True and second["input_check"]["within"] is False
    assert second["input_check"]["outside"] == ["noise"]
    assert "noisy.png: This scan's noise is outside" in stderr.getvalue()
    assert "clean.png: This scan's noise" not in stderr.getvalue()


def test_detect_flags_a_dicom_whose_header_records_lossy_compression(random_bundle, tmp_path):
    tumour, _, _ = sample_slices()
    plain, lossy = tmp_path / "plain.dcm", tmp_path / "lossy.dcm"
    _write_dicom(plain, tumour.astype(np.uint16) * 16 + 100)
    _write_dicom(lossy, tumour.astype(np.uint16) * 16 + 100, LossyImageCompression="01")
    stdout, stderr = StringIO(), StringIO()
    call_command("detect", str(plain), str(lossy), "--weights", str(random_bundle), stdout=stdout, stderr=stderr)
    first, second = json.loads(stdout.getvalue())["files"]
    assert first["input_check"]["within"] is True
    assert (second["input_check"]["within"], second["input_check"]["outside"]) == (False, ["lossy_compression"])
    assert "lossy.dcm: This scan went through lossy compression (its DICOM header records" in stderr.getvalue()


def test_detect_reports_unreadable_files(random_bundle, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    stdout = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("detect", str(bad), "--weights", str(random_bundle), stdout=stdout)
    assert exit_info.value.code == 1
    report = json.loads(stdout.getvalue())
    assert "not a readable PNG" in report["files"][0]["error"] or "damaged" in report["files"][0]["error"]


def test_detect_names_a_slice_too_small_to_read_and_reads_the_other_files(random_bundle, tmp_path):
    import cv2

    tiny, fine = tmp_path / "line.png", tmp_path / "slice.png"
    cv2.imwrite(str(tiny), np.zeros((1, 256), np.uint8))
    cv2.imwrite(str(fine), sample_slices()[0])
    stdout = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("detect", str(tiny), str(fine), "--weights", str(random_bundle), stdout=stdout)
    assert exit_info.value.code == 1
    first, second = json.loads(stdout.getvalue())["files"]
    assert first["error"] == "The slice is 256 x 1 pixels; the detector needs at least 16 x 16."
    assert "error" not in second and second["file_verdict"]["verdict"] in VERDICTS


def test_ship_compacts_and_the_card_quotes_the_evaluation(tiny_dataset, random_bundle, tmp_path):
    from inference.ml.model_card import ship_bundle, write_model_card
    from inference.ml.predictor import Predictor

    shipped = ship_bundle(random_bundle, tmp_path / "models" / "detector.pt", name="shipped", version="9.9.9")
    assert shipped.stat().st_size < 0.7 * random_bundle.stat().st_size  # float16 storage
    predictor = Predictor.load(shipped)
    assert (predictor.name, predictor.version) == ("shipped", "9.9.9")
    assert all(p.dtype == torch.float32 for p in predictor.model.parameters())
    out = tmp_path / "eval"
    call_command("evaluate_detector", str(tiny_dataset), "--out", str(out), "--weights", str(shipped),
                 "--no-record", "--no-coco-ap", stdout=StringIO(), verbosity=0)
    metrics = json.loads((out / "metrics.json").read_text())
    card = write_model_card(shipped, out, tmp_path / "MODEL_CARD.md", reproduce="python manage.py ...").read_text()
    assert predictor.sha256 in card
    assert "minutes of training on CPU" in card and "fine-tuned from" not in card
    assert "### Input range check" in card and "warns of the strong kinds only" in card
    assert "### By verdict and region size" in card and "Small regions are its weak spot" in card
    from inference.ml.model_card import _augmentation

    assert _augmentation({}) == "flip, contrast, whole slices"
    assert _augmentation({"crop": 160, "noise": True}) == "flip, contrast, noise, crops of 160 px"
    assert f"| >= 0.95 | {metrics['accuracy'] - 0.95:.3f} |" in card
    p50 = metrics["latency_s"]["p50"]  # lower is better: the margin is positive when the target is met
    assert f"| {p50:.3f} | | <= 0.4 | {0.4 - p50:.3f} |" in card
    # two patients: too few to resample; the card says so and gives no range
    intervals = json.loads((out / "intervals.json").read_text())
    assert intervals["note"] in card and f"| accuracy | {metrics['accuracy']:.3f} | n/a | >= 0.95 |" in card
    # the evaluation's intervals stand in their own column, beside the figure they bound (here the 8 images as
    # if each were a patient, written as evaluate_detector writes them)
    from inference.ml.intervals import bootstrap_intervals

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    intervals = {**bootstrap_intervals(rows, [f"p{i}" for i in range(len(rows))], resamples=200), "by_source": {}}
    (out / "intervals.json").write_text(json.dumps(intervals))
    card = write_model_card(shipped, out, tmp_path / "MODEL_CARD.md", reproduce="python manage.py ...").read_text()
    acc = intervals["accuracy"]
    assert (f"| accuracy | {metrics['accuracy']:.3f} | {acc['low']:.3f}-{acc['high']:.3f} | >= 0.95 |" in card)
    assert "95 % CI (patients resampled)" in card and "patient-clustered expanded percentile bootstrap" in card
    # without intervals.json (older evaluations) the card has no such column
    (out / "intervals.json").unlink()
    plain = write_model_card(shipped, out, tmp_path / "PLAIN.md").read_text()
    assert "95 % CI" not in plain
    assert f"| accuracy | {metrics['accuracy']:.3f} | >= 0.95 | {metrics['accuracy'] - 0.95:.3f} |" in plain
    # a card for another file than the one evaluated is refused
    other = ship_bundle(random_bundle, tmp_path / "other.pt", version="1.0.0")
    with pytest.raises(ValueError, match="different file"):
        write_model_card(other, out, tmp_path / "X.md")


def test_calibrate_detector_refits_thresholds_and_keeps_the_weights(tiny_dataset, random_bundle, tmp_path):
    out = tmp_path / "calibrated.pt"
    stdout = StringIO()
    call_command("calibrate_detector", str(tiny_dataset), "--weights", str(random_bundle), "--out", str(out),
                 "--split", "train", stdout=stdout)
    report = json.loads(stdout.getvalue().rsplit("}", 1)[0] + "}")
    before, after = torch.load(random_bundle, weights_only=True), torch.load(out, weights_only=True)
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
    assert {**after["calibration"], "verdict_model": bool(after["calibration"]["verdict_model"])} == report["calibration"]
    assert {"temperature", "image_weight", "detection_threshold", "mask_threshold", "show_threshold",
            "show_relative"} <= set(after["calibration"])
    meta = after["meta"]["calibrated_on"]
    assert meta["split"] == "train" and meta["n_images"] == 4 and len(meta["dataset_sha256"]) == 64
    assert meta["previous_calibration"] == before["calibration"]
    # auto: both readings fitted, the flip kept only if it scored higher
    assert set(meta["views"]) == {"plain", "flip"}
    flip_won = (round(meta["views"]["flip"]["macro_f1"], 6), -round(meta["views"]["flip"]["nll"], 6)) > (
        round(meta["views"]["plain"]["macro_f1"], 6), -round(meta["views"]["plain"]["nll"], 6))
    assert after["calibration"]["test_time_flip"] is flip_won
    # the chosen view's figures; the verdicts and masks stay, the probabilities move with the confidence temperature
    chosen = meta["views"]["flip" if flip_won else "plain"]
    for key in ("accuracy", "macro_f1", "mean_iou"):
        assert meta["metrics"][key] == chosen[key]
    assert meta["metrics"]["nll"] <= chosen["nll"] + 1e-12
    # by default the hand-set verdict rule
    assert meta["verdict"] == {"chosen": "rule"} and after["calibration"]["verdict_model"] is None
    # last, the confidence temperature, fitted by the log likelihood of the true verdicts
    assert meta["confidence"]["confidence_temperature"] == after["calibration"]["confidence_temperature"] > 0
    assert meta["confidence"]["nll_after"] <= meta["confidence"]["nll_before"]
    assert meta["metrics"]["nll"] == pytest.approx(meta["confidence"]["nll_after"])
    # the model card says where the thresholds come from
    from inference.ml.model_card import write_model_card

    call_command("evaluate_detector", str(tiny_dataset), "--out", str(tmp_path / "eval"), "--weights", str(out),
                 "--no-record", "--no-coco-ap", "--split", "test", stdout=StringIO(), verbosity=0)
    card = write_model_card(out, tmp_path / "eval", tmp_path / "CARD.md").read_text()
    assert "`calibrate_detector`: all 4 images of `train`" in card
    assert f"mask probability >= {after['calibration']['mask_threshold']}" in card
    # the confidence temperature, where it was fitted, and how far the test confidence can be trusted
    assert f"T = {after['calibration']['confidence_temperature']:.3g}" in card
    assert "### How far the confidence can be trusted" in card


def test_calibrate_detector_confidence_only_moves_no_verdict(tiny_dataset, random_bundle, tmp_path):
    """--confidence-only fits the temperature and keeps every other setting: the verdicts of an evaluation are
    the same before and after, the probabilities are not, and the log likelihood it was fitted on does not rise."""
    out = tmp_path / "tempered.pt"
    call_command("calibrate_detector", str(tiny_dataset), "--weights", str(random_bundle), "--out", str(out),
                 "--split", "train", "--confidence-only", stdout=StringIO())
    before, after = torch.load(random_bundle, weights_only=True), torch.load(out, weights_only=True)
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
    assert {k: v for k, v in after["calibration"].items() if k != "confidence_temperature"} == {
        k: v for k, v in before["calibration"].items() if k != "confidence_temperature"}
    fitted = after["meta"]["confidence_calibrated_on"]
    assert fitted["split"] == "train" and fitted["n_images"] == 4
    assert fitted["confidence"]["confidence_temperature"] == after["calibration"]["confidence_temperature"]
    assert fitted["confidence"]["nll_after"] <= fitted["confidence"]["nll_before"]
    assert after["meta"].get("calibrated_on") == before["meta"].get("calibrated_on")

    rows = {}
    for name, weights in (("before", random_bundle), ("after", out)):
        call_command("evaluate_detector", str(tiny_dataset), "--out", str(tmp_path / name), "--weights",
                     str(weights), "--no-record", "--no-coco-ap", "--bootstrap", "0", "--split", "train",
                     stdout=StringIO(), verbosity=0)
        rows[name] = [json.loads(line) for line in (tmp_path / name / "predictions.jsonl").read_text().splitlines()]
    assert [r["predicted"] for r in rows["before"]] == [r["predicted"] for r in rows["after"]]
    assert [r["iou"] for r in rows["before"]] == [r["iou"] for r in rows["after"]]
    if after["calibration"]["confidence_temperature"] != 1.0:
        assert [r["scores"] for r in rows["before"]] != [r["scores"] for r in rows["after"]]


def test_calibrate_detector_test_time_flip_on_and_off(tiny_dataset, random_bundle, tmp_path):
    from inference.ml.model_card import write_model_card

    for choice, expected in (("on", True), ("off", False)):
        out = tmp_path / f"{choice}.pt"
        call_command("calibrate_detector", str(tiny_dataset), "--weights", str(random_bundle), "--out", str(out),
                     "--split", "train", "--test-time-flip", choice, stdout=StringIO())
        bundle = torch.load(out, weights_only=True)
        assert bundle["calibration"]["test_time_flip"] is expected
        assert list(bundle["meta"]["calibrated_on"]["views"]) == ["flip" if expected else "plain"]
        assert Predictor.load(out, device="cpu").test_time_flip is expected
        call_command("evaluate_detector", str(tiny_dataset), "--out", str(tmp_path / f"eval-{choice}"), "--weights",
                     str(out), "--no-record", "--no-coco-ap", "--split", "test", stdout=StringIO(), verbosity=0)
        card = write_model_card(out, tmp_path / f"eval-{choice}", tmp_path / f"{choice}.md").read_text()
        assert ("read twice, as is and mirrored" in card) is expected
        assert ("each slice is read once" in card) is not expected
    with pytest.raises(CommandError):
        call_command("calibrate_detector", str(tiny_dataset), "--weights", str(random_bundle),
                     "--out", str(tmp_path / "x.pt"), "--split", "train", "--test-time-flip", "sometimes")


def _dataset_with_a_missing_image(tiny_dataset, root):
    import shutil

    shutil.copytree(tiny_dataset, root)
    data = json.loads((root / "annotations.json").read_text())
    missing = next(image for image in data["images"] if image["split"] == "train")
    (root / missing["file_name"]).unlink()
    return missing


def test_training_and_calibration_name_a_missing_image_before_any_step(tiny_dataset, random_bundle, tmp_path):
    dataset = tmp_path / "ds"
    missing = _dataset_with_a_missing_image(tiny_dataset, dataset)
    expected = f"image {missing['id']} ({missing['file_name']}): the file does not exist."
    with pytest.raises(CommandError, match="cannot be trained on \\(1 problems; no step was run\\)") as error:
        call_command("train_detector", str(dataset), "--out", str(tmp_path / "run"), "--backbone", "tiny",
                     "--val-split", "test", "--epochs", "1", stdout=StringIO())
    assert expected in str(error.value)
    assert not list((tmp_path / "run").glob("*.pt"))
    out = tmp_path / "calibrated.pt"
    with pytest.raises(CommandError, match="cannot be calibrated on \\(1 problems; nothing was fitted\\)") as error:
        call_command("calibrate_detector", str(dataset), "--weights", str(random_bundle), "--out", str(out),
                     "--split", "train", stdout=StringIO())
    assert expected in str(error.value) and not out.exists()


def test_calibrate_detector_learned_verdict_on_off_and_auto(tiny_dataset, random_bundle, tmp_path):
    """On a split of two patients: ``on`` stores a fitted verdict model that the predictor then uses and the card
    describes, ``off`` none, ``auto`` the one with the higher cross-validated macro F1; one patient refuses ``on``."""
    import shutil

    from inference.ml.model_card import write_model_card

    both = tmp_path / "both"
    shutil.copytree(tiny_dataset, both)
    ann = json.loads((both / "annotations.json").read_text())
    for img in ann["images"]:
        img["split"] = "val"
    (both / "annotations.json").write_text(json.dumps(ann))
    bundles = {}
    for choice in ("on", "off", "auto"):
        out = tmp_path / f"verdict-{choice}.pt"
        stdout = StringIO()
        call_command("calibrate_detector", str(both), "--weights", str(random_bundle), "--out", str(out),
                     "--test-time-flip", "off", "--verdict-model", choice, stdout=stdout)
        report = json.loads(stdout.getvalue().rsplit("}", 1)[0] + "}")
        bundles[choice] = torch.load(out, weights_only=True)
        cal, meta = bundles[choice]["calibration"], bundles[choice]["meta"]["calibrated_on"]["verdict"]
        assert report["calibration"]["verdict_model"] is (cal["verdict_model"] is not None)
        if choice == "off":
            assert cal["verdict_model"] is None and meta == {"chosen": "rule"}
            continue
        assert meta["rule_cv"]["folds"] == 2 and 0.0 <= meta["verdict_model_cv"]["macro_f1"] <= 1.0
        learned_won = round(meta["verdict_model_cv"]["macro_f1"], 6) > round(meta["rule_cv"]["macro_f1"], 6)
        assert (cal["verdict_model"] is not None) is (choice == "on" or learned_won)
        assert meta["chosen"] == ("verdict_model" if cal["verdict_model"] else "rule")
    model = bundles["on"]["calibration"]["verdict_model"]
    assert len(model["coef"]) == 4 and len(model["mean"]) == len(model["coef"][0]) == 13
    predictor = Predictor.load(tmp_path / "verdict-on.pt", device="cpu")
    assert predictor.calibration["verdict_model"] == model
    call_command("evaluate_detector", str(both), "--out", str(tmp_path / "eval-on"), "--weights",
                 str(tmp_path / "verdict-on.pt"), "--no-record", "--no-coco-ap", stdout=StringIO(), verbosity=0)
    card = write_model_card(tmp_path / "verdict-on.pt", tmp_path / "eval-on", tmp_path / "on.md").read_text()
    assert "logistic regression on the image head" in card and "cross-validated macro F1" in card
    # one patient in the split: nothing to cross-validate on; auto keeps the rule and says why, on refuses
    call_command("calibrate_detector", str(tiny_dataset), "--weights", str(random_bundle), "--out",
                 str(tmp_path / "one.pt"), "--split", "train", "--verdict-model", "auto", stdout=StringIO())
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    assert one["calibration"]["verdict_model"] is None and "one patient" in one["meta"]["calibrated_on"]["verdict"]["why"]
    with pytest.raises(CommandError, match="two patients"):
        call_command("calibrate_detector", str(tiny_dataset), "--weights", str(random_bundle),
                     "--out", str(tmp_path / "x.pt"), "--split", "train", "--verdict-model", "on")


def test_calibrate_detector_refuses_the_test_split_and_missing_weights(tiny_dataset, random_bundle, tmp_path):
    with pytest.raises(CommandError, match="test split"):
        call_command("calibrate_detector", str(tiny_dataset), "--weights", str(random_bundle),
                     "--out", str(tmp_path / "x.pt"), "--split", "test")
    with pytest.raises(CommandError, match="No weights file"):
        call_command("calibrate_detector", str(tiny_dataset), "--weights", str(tmp_path / "none.pt"),
                     "--out", str(tmp_path / "x.pt"))
    with pytest.raises(CommandError, match="no image has split"):
        call_command("calibrate_detector", str(tiny_dataset), "--weights", str(random_bundle),
                     "--out", str(tmp_path / "x.pt"), "--split", "val")
    assert not (tmp_path / "x.pt").exists()


def test_average_bundles_weights_the_parameters_and_refuses_other_architectures(tmp_path):
    from inference.ml.model import ModelConfig, build_model, load_bundle, make_bundle, save_bundle
    from inference.ml.model_card import average_bundles

    config = ModelConfig(backbone="tiny", min_size=96, max_size=96)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(save_bundle(make_bundle(build_model(config), config, name="m", version=str(seed),
                                             calibration={}, meta={}), tmp_path / f"m{seed}.pt"))
    out = average_bundles(paths, [3, 1], tmp_path / "avg.pt")
    a, b, avg = (load_bundle(p) for p in (*paths, out))
    key = next(k for k, v in a["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    assert torch.allclose(avg["state_dict"][key], 0.75 * a["state_dict"][key] + 0.25 * b["state_dict"][key], atol=1e-6)
    assert [p["weight"] for p in avg["meta"]["averaged_from"]] == [0.75, 0.25]
    from inference.ml.model_card import _averaged_lines

    assert _averaged_lines(a["meta"]) == [] and "Weights averaged** from 2 runs: 0.75 x" in _averaged_lines(avg["meta"])[0]
    other = ModelConfig(backbone="tiny", min_size=96, max_size=96, image_head=False)
    odd = save_bundle(make_bundle(build_model(other), other, name="x", version="0", calibration={}, meta={}),
                      tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="another architecture"):
        average_bundles([paths[0], odd], [1, 1], tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="one weight for each"):
        average_bundles(paths, [1], tmp_path / "bad.pt")


# What an outside evaluator does on a fresh clone after `make install`: no SECRET_KEY, no var/secret_key, a SQLite
# database nobody has migrated. The contract's command must still finish, exit 0 and write its files.
FRESH_ENV_CLEARED = ("SECRET_KEY", "SECRET_KEY_FILE", "DEBUG", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_QUEUE",
                     "S3_BUCKET", "PORTAL_OFFLINE_COMMAND")


def _fresh_manage(tmp_path, *args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in FRESH_ENV_CLEARED}
    env["PORTAL_VAR_DIR"] = str(tmp_path / "fresh-var")
    return subprocess.run([sys.executable, str(root / "manage.py"), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)


def test_evaluate_detector_on_a_fresh_clone_needs_no_key_and_no_database(tiny_dataset, random_bundle, tmp_path):
    out = tmp_path / "eval"
    result = _fresh_manage(tmp_path, "evaluate_detector", str(tiny_dataset), "--out", str(out),
                           "--weights", str(random_bundle), "--no-coco-ap", "--verbosity", "0")
    assert result.returncode == 0, result.stderr
    assert "will not be recorded" in result.stderr and "manage.py migrate" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 8
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 8
    # once migrated, the same command records the run (the key is still not needed for either)
    assert _fresh_manage(tmp_path, "migrate", "--verbosity", "0").returncode == 0
    again = _fresh_manage(tmp_path, "evaluate_detector", str(tiny_dataset), "--out", str(tmp_path / "again"),
                          "--weights", str(random_bundle), "--no-coco-ap", "--split", "test")
    assert again.returncode == 0, again.stderr
    assert "Recorded as evaluation run 1." in again.stdout and "not be recorded" not in again.stderr


def test_the_web_server_still_refuses_to_start_without_a_key(tmp_path):
    result = _fresh_manage(tmp_path, "check", "--deploy")
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr


def test_the_card_names_the_split_a_run_without_validation_was_selected_on_and_a_carried_refiner():
    from inference.ml.model_card import _refiner, _selected_on
    from inference.ml.refiner import MaskRefiner, refiner_state

    assert _selected_on({"val_split": "val"}) == "val"
    # a GPU run trains without validation and is calibrated (selected) afterwards
    assert _selected_on({"val_split": None, "calibrated_on": {"split": "val", "dataset_dir": "/d"}}) == "val` of `/d"
    assert _selected_on({"val_split": None}) == "nothing"
    bundle = {"refiner": refiner_state(MaskRefiner()), "calibration": {"refine": True, "refine_threshold": 0.5},
              "meta": {}}
    line = _refiner(bundle)[0]
    assert "Carried over from an earlier bundle" in line and "None" not in line
    bundle["meta"]["refined_on"] = {"split": "train", "dataset_dir": "/d", "chosen_on": "val",
                                    "val": {"n_regions": 5, "unrefined": 0.5, "refined": {"0.5": 0.6}}}
    line = _refiner(bundle)[0]
    assert "on the detector's own masks on `train` of `/d`" in line and "0.600 refined" in line


def test_the_card_says_what_a_run_changed_in_its_draws():
    from inference.ml.model_card import _sampling

    assert _sampling({}) == "" and _sampling({"source_balance": 0.0, "small_region_repeat": 1}) == ""
    line = _sampling({"source_balance": 0.5, "small_region_repeat": 3, "small_region_area": 500,
                      "paste_injections": 0.25})
    assert line == ("; source balance 0.5, slices with regions under 500 px x3, crude pasted injections "
                    "(`transforms.paste_tumour`) in 0.25 of tumour-free draws")


def test_the_card_names_the_software_that_trained_the_weights_when_the_bundle_records_it():
    from inference.ml.model_card import _software_lines

    assert _software_lines({}) == []  # bundles trained before it was recorded
    sw = {"python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1", "code": "ab" * 20}
    assert _software_lines({"software": sw}) == [
        f"- Trained with Python 3.11.7, torch 2.14.1, torchvision 0.29.1; code `{'ab' * 20}`."]
    assert "code version not recorded" in _software_lines({"software": {**sw, "code": None}})[0]


def test_train_detector_help_describes_every_option_with_its_default():
    from inference.management.commands.train_detector import Command
    from inference.ml.train import TrainConfig

    parser = Command().create_parser("manage.py", "train_detector")
    ours = [a for a in parser._actions if a.dest not in ("help", "version", "verbosity", "settings", "pythonpath",
                                                          "traceback", "no_color", "force_color", "skip_checks")]
    undocumented = [a.option_strings or a.dest for a in ours if not (a.help or "").strip()]
    assert undocumented == []
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    assert f"peak learning rate (AdamW) (default: {TrainConfig.__dataclass_fields__['lr'].default})" in text
    assert "(default: on)" in text and "(default: off)" in text


def test_every_project_command_option_has_help():
    from django.core.management import get_commands, load_command_class

    django_own = {"help", "version", "verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color",
                  "skip_checks"}
    project_apps = {"accounts", "alerts", "audit", "inference", "reports", "reviews", "scans", "portal"}
    undocumented = {}
    for name, app in get_commands().items():
        if app not in project_apps:
            continue
        parser = load_command_class(app, name).create_parser("manage.py", name)
        missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
                   if a.dest not in django_own and not (a.help or "").strip()]
        if missing:
            undocumented[name] = missing
    assert undocumented == {}
