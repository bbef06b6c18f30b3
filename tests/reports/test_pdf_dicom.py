"""The PDF report as a DICOM Encapsulated PDF: reads back, holds the very PDF the portal makes, is filed under the
source study and patient, references every source instance, passes dciodvfy, and a real Orthanc stores it in the
source study; refused (409) for a scan that is not DICOM, 404 for another doctor's."""
import hashlib
import io
import json
import shutil
import subprocess
import urllib.request

import pydicom
import pytest
from django.urls import reverse
from pypdf import PdfReader

from audit import actions
from audit.models import AuditEvent
from tests.reports.conftest import brainix_paths, check_dicom_export_access, dicom_download
from tests.reports.orthanc import post_instance, running_orthanc

SOURCE_INDICES = (9, 10, 11)  # analysed_scan's files


@pytest.fixture
def report_dcm(client_a, analysed_scan):
    pk = analysed_scan.scan.pk
    return dicom_download(client_a, "reports:scan_pdf_dicom", pk, filename=f"scan-{pk}-report.dcm")


def test_the_dicom_report_holds_the_pdf_in_the_source_study(report_dcm, analysed_scan):
    ds = pydicom.dcmread(io.BytesIO(report_dcm))
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in brainix_paths(SOURCE_INDICES)]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1" and ds.Modality == "DOC"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate"):
        assert ds.get(keyword) == sources[0].get(keyword), keyword
    assert ds.SeriesInstanceUID not in {s.SeriesInstanceUID for s in sources}
    assert ds.SeriesNumber == int(sources[0].SeriesNumber) + 2000
    assert {i.ReferencedSOPInstanceUID for i in ds.SourceInstanceSequence} == {s.SOPInstanceUID for s in sources}
    assert ds.DocumentTitle == (f"MRI tamper check of scan {analysed_scan.scan.pk}: Fake added "
                                f"({analysed_scan.job.model_name} {analysed_scan.job.model_version})")

    pdf = bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength]
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf" and pdf.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "Tampered: tumor added" in text and analysed_scan.scan.sha256 in text.replace("\n", "")

    event = AuditEvent.objects.get(action=actions.REPORT_PDF_DICOM_DOWNLOADED)
    assert (event.actor_username, event.object_id) == ("doctor_a", str(analysed_scan.scan.pk))
    assert event.details["sha256"] == hashlib.sha256(report_dcm).hexdigest()
    assert event.details["pdf_sha256"] == hashlib.sha256(pdf).hexdigest()
    assert not AuditEvent.objects.filter(action=actions.REPORT_PDF_DOWNLOADED).exists()  # one download, one event


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_the_dicom_report_passes_dciodvfy_without_errors(report_dcm, tmp_path):
    path = tmp_path / "report.dcm"
    path.write_bytes(report_dcm)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    assert "EncapsulatedPDF" in output.replace(" ", "")  # it recognised the IOD
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert errors == [], output


def test_orthanc_files_the_dicom_report_in_the_source_study(report_dcm, tmp_path):
    with running_orthanc(tmp_path) as server:
        _check_orthanc_files_it(report_dcm, server["http"])


def _check_orthanc_files_it(report_dcm, orthanc):
    source_answers = [post_instance(orthanc, p.read_bytes()) for p in brainix_paths(SOURCE_INDICES)]
    answer = post_instance(orthanc, report_dcm)
    assert answer["Status"] == "Success"
    assert answer["ParentStudy"] == source_answers[0]["ParentStudy"]
    assert answer["ParentPatient"] == source_answers[0]["ParentPatient"]
    with urllib.request.urlopen(f"{orthanc}/series/{answer['ParentSeries']}", timeout=10) as response:
        assert json.loads(response.read())["MainDicomTags"]["Modality"] == "DOC"
    with urllib.request.urlopen(f"{orthanc}/instances/{answer['ID']}/pdf", timeout=10) as response:
        assert response.read().startswith(b"%PDF")  # Orthanc hands the PDF back out of it


def test_the_api_serves_it_and_refuses_another_doctors_and_non_dicom_scans(client_a, client_b, doctor_a,
                                                                            analysed_scan):
    check_dicom_export_access(client_a=client_a, client_b=client_b, doctor_a=doctor_a, scan=analysed_scan.scan,
                              page="reports:scan_pdf_dicom", api="api-scan-report-pdf-dicom", modality="DOC",
                              action=actions.REPORT_PDF_DICOM_DOWNLOADED)


def test_the_scan_page_offers_it_for_dicom_scans_only(client_a, analysed_scan, doctor_a):
    from scans.services import scan_upload
    from tests.scans.scanfiles import SAMPLE_TIFF, upload

    page = client_a.get(reverse("scans:detail", args=[analysed_scan.scan.pk])).content.decode()
    assert f'href="{reverse("reports:scan_pdf_dicom", args=[analysed_scan.scan.pk])}"' in page
    assert "Report as DICOM" in page
    tiff = scan_upload(user=doctor_a, files=[upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]).scan
    assert "Report as DICOM" not in client_a.get(reverse("scans:detail", args=[tiff.pk])).content.decode()
