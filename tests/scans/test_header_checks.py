"""The DICOM header checks made at upload (inference.ml.provenance): stored with the scan, shown on the scan
page and in the API (the PDF report: tests/reports/test_scan_reports.py); a real untouched series is called consistent, an edited one is not."""
from __future__ import annotations

import html
import io
import re

import pydicom
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from scans.services import scan_upload

from .scanfiles import SAMPLE_TIFF, brainix_series, upload

pytestmark = pytest.mark.django_db


def _rewritten_series() -> list:
    """BRAINIX FLAIR with file IM-0001-0011 (shown as slice 12) edited and saved by another program."""
    files = []
    for path in brainix_series("FLAIR"):
        data = path.read_bytes()
        if path.name == "IM-0001-0011.dcm":
            ds = pydicom.dcmread(io.BytesIO(data))
            pixels = ds.pixel_array.copy()
            pixels[100:130, 100:130] = 900
            ds.PixelData = pixels.tobytes()
            ds.file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
            ds.file_meta.ImplementationVersionName = "PYDICOM 3.0.2"
            buf = io.BytesIO()
            ds.save_as(buf)
            data = buf.getvalue()
        files.append(upload(path.name, data))
    return files


def _page(client, scan) -> str:
    return html.unescape(client.get(reverse("scans:detail", args=[scan.pk])).content.decode())


def test_an_untouched_series_is_stored_and_shown_as_consistent(doctor_a, client_a):
    scan = scan_upload(user=doctor_a, files=[upload(p.name, p.read_bytes()) for p in brainix_series("FLAIR")]).scan
    checks = scan.metadata["header_checks"]
    assert (checks["status"], checks["files"], checks["findings"]) == ("consistent", 22, [])
    page = _page(client_a, scan)
    assert "consistent (22 files, one program: OSIRIX)" in page
    assert "a clean header does not make the pixels authentic" in page
    assert "data-header-warning" not in page


def test_an_edited_series_warns_on_the_page_and_in_the_api(doctor_a, client_a):
    scan = scan_upload(user=doctor_a, files=_rewritten_series()).scan
    checks = scan.metadata["header_checks"]
    assert checks["status"] == "warnings" and checks["findings"][0]["slices"] == [11]
    page = _page(client_a, scan)
    banner = re.search(r"<div[^>]*data-header-warning>(.*?)</div>", page, re.S)
    assert banner, "no header warning on the scan page"
    assert "The DICOM headers show signs of editing:" in banner.group(1)
    assert "(PYDICOM 3.0.2) from the rest (OSIRIX, 21 files), at slice 12" in banner.group(1)
    assert "<strong>1 sign of editing</strong>" in page

    api = APIClient()
    api.force_authenticate(doctor_a)
    body = api.get(reverse("api-scan-detail", args=[scan.pk])).json()
    assert body["metadata"]["header_checks"]["status"] == "warnings"
    assert body["metadata"]["header_checks"]["findings"][0]["check"] == "writer"


def test_a_scan_without_dicom_headers_shows_no_header_row(doctor_a, client_a):
    scan = scan_upload(user=doctor_a, files=[upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]).scan
    assert "header_checks" not in scan.metadata
    assert "DICOM headers" not in _page(client_a, scan)


def test_a_dicom_scan_from_before_the_checks_says_it_was_not_checked(doctor_a, client_a):
    scan = scan_upload(user=doctor_a, files=[upload(p.name, p.read_bytes()) for p in brainix_series("FLAIR")[:2]]).scan
    del scan.metadata["header_checks"]
    scan.save(update_fields=["metadata"])
    assert "not checked (uploaded before the portal checked DICOM headers)" in _page(client_a, scan)



def test_check_dicom_headers_fills_in_scans_uploaded_before_the_checks(doctor_a, client_a):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from .scanfiles import zip_bytes

    edited = scan_upload(user=doctor_a, files=_rewritten_series()).scan
    members = [(p.name, p.read_bytes()) for p in brainix_series("T2")]
    zipped = scan_upload(user=doctor_a, files=[upload("t2.zip", zip_bytes(members))]).scan
    image = scan_upload(user=doctor_a, files=[upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]).scan
    for scan in (edited, zipped):
        del scan.metadata["header_checks"]
        scan.save(update_fields=["metadata"])

    out = StringIO()
    call_command("check_dicom_headers", "--missing", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"scan {edited.pk} (IM-0001-0001.dcm (+21 more)): warnings: The headers of 22 files")
    assert lines[1].startswith(f"scan {zipped.pk} (t2.zip): consistent: The 22 files' headers agree")
    assert lines[-1] == "2 scans checked, 1 with signs of editing, 0 could not be read."
    edited.refresh_from_db()
    zipped.refresh_from_db()
    assert edited.metadata["header_checks"]["findings"][0]["slices"] == [11]
    assert zipped.metadata["header_checks"]["status"] == "consistent"
    assert "sequence" in edited.metadata  # the rest of the metadata is kept
    assert "signs of editing" in _page(client_a, edited)
    from audit.models import AuditEvent

    events = AuditEvent.objects.filter(action="scan.headers_checked").order_by("seq")
    assert [(e.object_id, e.details["status"], e.details["previous_status"]) for e in events] == [
        (str(edited.pk), "warnings", None), (str(zipped.pk), "consistent", None)]

    out = StringIO()
    call_command("check_dicom_headers", "--missing", stdout=out)  # nothing left to fill in
    assert out.getvalue().strip() == "0 scans checked, 0 with signs of editing, 0 could not be read."
    with pytest.raises(CommandError, match=f"Scan {image.pk} is not DICOM"):
        call_command("check_dicom_headers", "--scan", str(image.pk))
    with pytest.raises(CommandError, match="No scan with ID 999999"):
        call_command("check_dicom_headers", "--scan", "999999")

    stored = zipped.files.get()
    stored.file.storage.delete(stored.file.name)
    err = StringIO()
    with pytest.raises(CommandError, match=r"1 scan\(s\) could not be checked"):
        call_command("check_dicom_headers", "--scan", str(zipped.pk), stdout=StringIO(), stderr=err)
    assert err.getvalue().startswith(f"scan {zipped.pk} (t2.zip): not checked:")
    zipped.refresh_from_db()
    assert zipped.metadata["header_checks"]["status"] == "consistent"  # what was recorded stays


def test_the_scan_list_flags_scans_whose_headers_show_editing(doctor_a, client_a):
    edited = scan_upload(user=doctor_a, files=_rewritten_series()).scan
    clean = scan_upload(user=doctor_a, files=[upload(p.name, p.read_bytes()) for p in brainix_series("T2")]).scan
    page = html.unescape(client_a.get(reverse("scans:list")).content.decode())
    rows = {pk: row for pk, row in re.findall(r'<tr>\s*<td><a href="/scans/(\d+)/">(.*?)</tr>', page, re.S)}
    assert "data-header-flag" in rows[str(edited.pk)] and "signs of editing" in rows[str(edited.pk)]
    assert "data-header-flag" not in rows[str(clean.pk)]


def test_the_scan_list_api_and_results_csv_filter_by_header_checks(doctor_a, doctor_b, client_a):
    import csv

    edited = scan_upload(user=doctor_a, files=_rewritten_series()).scan
    clean = scan_upload(user=doctor_a, files=[upload(p.name, p.read_bytes()) for p in brainix_series("T2")]).scan
    old = scan_upload(user=doctor_a, files=[upload(p.name, p.read_bytes()) for p in brainix_series("T1")[:2]]).scan
    del old.metadata["header_checks"]
    old.save(update_fields=["metadata"])
    image = scan_upload(user=doctor_a, files=[upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]).scan
    scan_upload(user=doctor_b, files=_rewritten_series())  # another doctor's: never listed for doctor_a

    def listed(value):
        page = client_a.get(reverse("scans:list"), {"headers": value}).content.decode()
        return {int(pk) for pk in re.findall(r'<tr>\s*<td><a href="/scans/(\d+)/">', page)}

    assert listed("warnings") == {edited.pk}
    assert listed("clean") == {clean.pk}
    assert listed("unchecked") == {old.pk}
    assert listed("") == {edited.pk, clean.pk, old.pk, image.pk}
    refused = client_a.get(reverse("scans:list"), {"headers": "maybe"})
    assert "Select a valid choice. maybe is not one of the available choices." in html.unescape(
        refused.content.decode())

    api = APIClient()
    api.force_authenticate(doctor_a)
    body = api.get(reverse("api-scan-list"), {"headers": "warnings"}).json()
    assert [s["id"] for s in body["results"]] == [edited.pk]
    assert api.get(reverse("api-scan-list"), {"headers": "maybe"}).status_code == 400
    rows = list(csv.DictReader(io.StringIO(
        client_a.get(reverse("reports:results_csv"), {"headers": "clean"}).content.decode())))
    assert [int(r["scan_id"]) for r in rows] == [clean.pk]
