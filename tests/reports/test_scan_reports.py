import csv
import hashlib
import io
import re

import numpy as np
import pytest
from django.urls import reverse
from pypdf import PdfReader

from audit import actions
from audit.models import AuditEvent
from inference.models import VERDICT_LABELS


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_pdf_parses_and_holds_verdict_provenance_and_pictures(client_a, analysed_scan):
    scan, job = analysed_scan.scan, analysed_scan.job
    response = client_a.get(reverse("reports:scan_pdf", args=[scan.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    content = response.content

    reader = PdfReader(io.BytesIO(content))
    text = _pdf_text(content)
    assert "Tampered: tumor added" in text
    assert f"Verdict: {VERDICT_LABELS[job.verdict]}" in text
    assert scan.sha256 in text.replace("\n", "")
    assert job.model_version in text and job.model_sha256 in text.replace("\n", "")
    assert "doctor_a" in text
    assert "confidence 83.0%" in text
    assert re.search(r"Sequence\s+FLAIR", text) and "Sequence outside" not in text
    # The series as the file names it, to match the report to the study in a PACS (BRAINIX: 20061201).
    assert re.search(r"Series\s+sT2W/FLAIR, MR, study date 2006-12-01", text)
    # Under the verdict, the slices by verdict, findings first, numbered from 1 as on the scan page.
    assert "Slices by verdict: Fake added 1 slice (2); Fake removed 1 slice (3); No tumor 1 slice." in text
    # The per-slice table: one row per slice, in order, with each slice's verdict.
    for number, verdict in ((1, "No tumor"), (2, "Fake added"), (3, "Fake removed")):
        assert re.search(rf"\b{number}\s+{verdict}\s+0\.700\s", text), verdict
    # Every slice is pictured (3 slices, all under the limit), each with its overlay.
    images = [img for page in reader.pages for img in page.images]
    assert len(images) == scan.n_slices

    events = AuditEvent.objects.filter(action=actions.REPORT_PDF_DOWNLOADED)
    assert events.count() == 1
    event = events.get()
    assert (event.actor_username, event.object_type, event.object_id) == ("doctor_a", "scans.scan", str(scan.pk))
    assert event.details["sha256"] == hashlib.sha256(content).hexdigest()
    assert event.details["job_id"] == job.pk and event.details["scan_id"] == scan.pk


def test_pdf_warns_when_the_sequence_is_outside_the_training(client_a, analysed_scan):
    from inference.ml.sequence import identify_sequence

    scan = analysed_scan.scan
    t2 = {"modality": "MR", "repetition_time": 4450.0, "echo_time": 100.0}
    scan.metadata["sequence"] = identify_sequence(t2).as_dict()
    scan.save(update_fields=["metadata"])
    text = " ".join(_pdf_text(client_a.get(reverse("reports:scan_pdf", args=[scan.pk])).content).split())
    assert "Sequence outside the detector's training: This series looks like T2." in text
    assert "TR 4450 ms" in text


def test_overlay_tints_exactly_the_masked_region():
    from reports.overlay import LABEL_RGB, overlay

    grey = np.full((40, 40), 100, dtype=np.uint8)
    labels = np.zeros((40, 40), dtype=np.uint8)
    labels[10:20, 10:20] = 2
    picture = np.asarray(overlay(grey, labels)).astype(int)
    assert (picture[labels == 0] == 100).all()
    assert (picture[10, 10] == LABEL_RGB[2]).all()  # outline in the class colour
    assert not (picture[15, 15] == 100).all()  # inside tinted
    assert (picture[15, 15] != LABEL_RGB[2]).any()  # but not painted over


def test_slice_csv_matches_the_stored_results(client_a, analysed_scan):
    scan = analysed_scan.scan
    response = client_a.get(reverse("reports:scan_csv", args=[scan.pk]))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["verdict"] for r in rows] == ["no_tumor", "fake_added", "fake_removed"]
    assert [int(r["mask_pixels"]) for r in rows] == [
        0, int((analysed_scan.masks[1] > 0).sum()),
        int(sum(inst.area for inst in analysed_scan.job.slice_results.get(index=2).instances.all()))]
    assert rows[2]["region_labels"] == "fake_removed;real_tumor"
    assert {r["scan_sha256"] for r in rows} == {scan.sha256}
    assert AuditEvent.objects.filter(action=actions.REPORT_CSV_DOWNLOADED, object_id=str(scan.pk)).count() == 1


@pytest.mark.parametrize("name", ["reports:scan_pdf", "reports:scan_csv", "api-scan-report-pdf", "api-scan-report-csv"])
def test_another_doctors_report_is_404_and_not_logged_as_a_download(client_b, client_admin, analysed_scan, name):
    url = reverse(name, args=[analysed_scan.scan.pk])
    assert client_b.get(url).status_code == 404
    assert not AuditEvent.objects.filter(action__startswith="report.").exists()
    assert client_admin.get(url).status_code == 200  # admins see every scan


def test_no_finished_analysis_is_409(client_a, doctor_a, upload_dicom):
    scan = upload_dicom(doctor_a, indices=(3,))
    assert client_a.get(reverse("reports:scan_pdf", args=[scan.pk])).status_code == 409
    api = client_a.get(reverse("api-scan-report-pdf", args=[scan.pk]))
    assert api.status_code == 409 and "no finished analysis" in api.json()["detail"]


def test_api_with_a_token(analysed_scan, doctor_a):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=doctor_a).key}")
    response = client.get(reverse("api-scan-report-pdf", args=[analysed_scan.scan.pk]))
    assert response.status_code == 200
    assert "Tampered: tumor added" in _pdf_text(response.content)
    assert AuditEvent.objects.filter(action=actions.REPORT_PDF_DOWNLOADED, actor_username="doctor_a").count() == 1


def test_results_csv_lists_only_the_doctors_scans_and_is_audited(client_a, client_b, analysed_scan, doctor_b,
                                                                  upload_dicom):
    from scans.models import Scan

    other = upload_dicom(doctor_b, indices=(4,))
    Scan.objects.filter(pk=other.pk).update(original_name="=cmd|' /C calc'!A0")

    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:results_csv")).content.decode())))
    assert [int(r["scan_id"]) for r in rows] == [analysed_scan.scan.pk]
    assert rows[0]["verdict"] == analysed_scan.job.verdict
    assert rows[0]["model_version"] == analysed_scan.job.model_version

    rows_b = list(csv.DictReader(io.StringIO(client_b.get(reverse("reports:results_csv")).content.decode())))
    assert [r["original_name"] for r in rows_b] == ["'=cmd|' /C calc'!A0"]
    exports = AuditEvent.objects.filter(action=actions.RESULTS_CSV_EXPORTED)
    assert [(e.actor_username, e.details["rows"]) for e in exports.order_by("seq")] == [("doctor_a", 1), ("doctor_b", 1)]


def test_results_csv_from_the_api_and_its_filters(client_a, analysed_scan):
    response = client_a.get(reverse("api-results-csv"), {"verdict": "fake_added"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert [int(r["scan_id"]) for r in csv.DictReader(io.StringIO(response.content.decode()))] == [analysed_scan.scan.pk]
    none = client_a.get(reverse("api-results-csv"), {"verdict": "no_tumor"})
    assert list(csv.DictReader(io.StringIO(none.content.decode()))) == []
    assert AuditEvent.objects.filter(action=actions.RESULTS_CSV_EXPORTED).count() == 2


def test_pdf_warns_when_the_noise_is_outside_the_detectors_range(client_a, analysed_scan):
    from inference.ml.input_check import check_statistics

    scan = analysed_scan.scan
    scan.metadata["input_check"] = check_statistics([{"noise": 3.3, "blockiness": 1.0}]).as_dict()
    scan.save(update_fields=["metadata"])
    text = " ".join(_pdf_text(client_a.get(reverse("reports:scan_pdf", args=[scan.pk])).content).split())
    assert "Input outside the detector's range: This scan's noise is outside" in text
    assert "noise level is 3.30 grey levels, above" in text


def test_pdf_says_how_to_read_the_confidence_only_for_the_measured_model(client_a, analysed_scan, settings, tmp_path,
                                                                          metrics):
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from reports.services import evaluation_run_record
    from tests.reports.test_evaluation import _confidence

    scan, job = analysed_scan.scan, analysed_scan.job
    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=7)
    settings.DETECTOR_WEIGHTS = str(weights)
    metrics["model"]["sha256"] = file_sha256(weights)
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", confidence=_confidence())
    url = reverse("reports:scan_pdf", args=[scan.pk])
    assert "Reading the confidence" not in _pdf_text(client_a.get(url).content)  # the job's model is another one

    job.model_sha256 = metrics["model"]["sha256"]
    job.save(update_fields=["model_sha256"])
    text = " ".join(_pdf_text(client_a.get(url).content).split())
    assert ("Reading the confidence: When model 1.2.0 said a verdict at 90 % or more (50 % of the 4 slices of its "
            "test evaluation), it was right 50 % of the time; under 70 % (2 slices), 100 %.") in text


def test_pdf_says_what_each_verdict_among_the_slices_has_meant(client_a, analysed_scan, settings, tmp_path, metrics):
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from reports.selectors import verdict_guide_text, verdict_guides_for
    from reports.services import evaluation_run_record

    scan, job = analysed_scan.scan, analysed_scan.job
    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=7)
    settings.DETECTOR_WEIGHTS = str(weights)
    metrics["model"]["sha256"] = file_sha256(weights)
    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test")
    url = reverse("reports:scan_pdf", args=[scan.pk])
    assert "Reading the verdicts" not in _pdf_text(client_a.get(url).content)  # the job's model is another one

    job.model_sha256 = metrics["model"]["sha256"]
    job.save(update_fields=["model_sha256"])
    text = " ".join(_pdf_text(client_a.get(url).content).split())
    present = set(job.slice_results.values_list("verdict", flat=True))
    guides = verdict_guides_for(job)
    assert present and present <= set(guides)  # the fixture's matrix has every verdict said
    for verdict in present:
        assert " ".join(verdict_guide_text(guides[verdict]).split()) in text
    for verdict in set(guides) - present:  # only the verdicts the scan's slices were given
        assert verdict_guide_text(guides[verdict]).split(" in its ")[0] not in text
    assert "Reading the verdicts: When model 1.2.0 read a slice as" in text


def test_slices_by_verdict_groups_runs_findings_first():
    from types import SimpleNamespace

    from reports.selectors import slice_runs, slices_by_verdict, slices_by_verdict_text

    assert slice_runs([]) == []
    assert slice_runs([5, 0, 1, 2, 7, 8]) == [(0, 2), (5, 5), (7, 8)]
    verdicts = ["no_tumor"] * 9 + ["real_tumor"] * 10 + ["no_tumor", "fake_added", "no_tumor"]
    results = [SimpleNamespace(index=i, verdict=v) for i, v in enumerate(verdicts)]
    assert slices_by_verdict(results) == [
        ("fake_added", 1, [(20, 20)]), ("real_tumor", 10, [(9, 18)]), ("no_tumor", 11, [(0, 8), (19, 19), (21, 21)]),
    ]
    assert slices_by_verdict_text(results) == "Fake added 1 slice (21); Real tumor 10 slices (10-19); No tumor 11 slices"


def _flat(content: bytes) -> str:
    return " ".join(_pdf_text(content).split())


def test_the_pdf_report_carries_the_header_checks(client_a, analysed_scan):
    import pydicom

    from inference.ml.provenance import check_series

    scan = analysed_scan.scan
    text = _flat(client_a.get(reverse("reports:scan_pdf", args=[scan.pk])).content)
    assert "DICOM headers consistent (3 files, one program: OSIRIX)" in text
    assert "signs of editing" not in text
    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:results_csv")).content.decode())))
    assert (rows[0]["header_checks"], rows[0]["header_warnings"]) == ("consistent", "0")

    datasets = [pydicom.dcmread(io.BytesIO(f.file.open("rb").read())) for f in scan.files.all()]
    datasets[1].file_meta.ImplementationVersionName = "EDITOR 1.0"
    scan.metadata["header_checks"] = check_series(datasets)
    scan.save(update_fields=["metadata"])
    text = _flat(client_a.get(reverse("reports:scan_pdf", args=[scan.pk])).content)
    assert "The DICOM headers show signs of editing:" in text
    assert "1 of 3 files were last written by a different program (EDITOR 1.0)" in text
    assert "DICOM headers 1 sign of editing" in text

    # and in the CSVs: per slice, whether a header warning names it; per scan, the status and the warnings
    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:scan_csv", args=[scan.pk])).content.decode())))
    assert [r["header_warning"] for r in rows] == ["", "yes", ""]
    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:results_csv")).content.decode())))
    assert (rows[0]["header_checks"], rows[0]["header_warnings"]) == ("warnings", "1")
