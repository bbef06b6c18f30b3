"""In headless Chromium: the scan page's "Sent to the PACS" list shows a transfer's outcome as soon as the worker
records it (pacs.js asks the API), without a reload."""
import pytest
from django.db import connections
from django.urls import reverse

from reports.models import PacsTransfer
from tests.reports.conftest import store_analysis, upload_dicom  # noqa: F401  (upload_dicom: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _close_connections_made_under_the_browser_loop(page):
    yield
    connections.close_all()


def test_a_queued_transfer_shows_its_outcome_without_a_reload(page, login_as, doctor_a, upload_dicom, settings):
    settings.PACS_DESTINATION = "ORTHANC@pacs.example.org:4242"
    scan = upload_dicom(doctor_a)
    analysed = store_analysis(scan, verdicts={0: "no_tumor", 1: "no_tumor", 2: "no_tumor"}, regions={},
                              scan_verdict="no_tumor")
    sent = PacsTransfer.objects.create(scan=scan, job=analysed.job, requested_by=doctor_a,
                                       destination=settings.PACS_DESTINATION)
    failed = PacsTransfer.objects.create(scan=scan, job=analysed.job, requested_by=doctor_a,
                                         destination=settings.PACS_DESTINATION, status="sending")

    login_as(doctor_a)
    page.goto(reverse("scans:detail", args=[scan.pk]))
    first, second = (page.locator(f'[data-pacs-id="{t.pk}"]') for t in (sent, failed))
    assert first.get_attribute("data-pacs-transfer") == "queued"
    assert second.locator("[data-pacs-status]").inner_text() == "Sending"

    # the worker finishes both (as reports.services._pacs_finish would)
    PacsTransfer.objects.filter(pk=sent.pk).update(status="sent", instances=[
        {"what": "seg", "status": "0x0000"}, {"what": "report", "status": "0x0000"}, {"what": "sr", "status": "0x0000"}])
    PacsTransfer.objects.filter(pk=failed.pk).update(
        status="failed", detail="Could not connect to the PACS: Connection refused (after at most 30 s).")
    page.wait_for_selector(f'[data-pacs-id="{sent.pk}"][data-pacs-transfer="sent"]', timeout=10_000)
    page.wait_for_selector(f'[data-pacs-id="{failed.pk}"][data-pacs-transfer="failed"]', timeout=10_000)
    assert first.locator("[data-pacs-status]").inner_text() == "Sent"
    assert first.inner_text().endswith(": 3 objects stored (DICOM SEG, report and structured report)")
    assert second.locator("[data-pacs-detail]").inner_text() == (
        "Could not connect to the PACS: Connection refused (after at most 30 s).")
    assert "badge-failed" in second.locator("[data-pacs-status]").get_attribute("class")


def test_the_dicom_files_menu_opens_downloads_and_closes(page, login_as, doctor_a, upload_dicom):
    """The scan page's "DICOM files" button lists the SEG, the DICOM report and the SR; a link downloads it; Escape
    and a click elsewhere close the list."""
    import io

    import pydicom

    scan = upload_dicom(doctor_a)
    store_analysis(scan, verdicts={0: "no_tumor", 1: "no_tumor", 2: "no_tumor"}, regions={}, scan_verdict="no_tumor")
    login_as(doctor_a)
    page.goto(reverse("scans:detail", args=[scan.pk]))
    menu, sr_link = page.locator("details[data-menu]"), page.get_by_role("link", name="Structured report (DICOM SR)")
    assert not sr_link.is_visible()
    page.get_by_text("DICOM files").click()
    assert [a.inner_text().splitlines()[0] for a in menu.locator("a").all()] == [
        "Masks as DICOM SEG", "Report as DICOM", "Structured report (DICOM SR)"]
    with page.expect_download() as download:
        sr_link.click()
    assert download.value.suggested_filename == f"scan-{scan.pk}-sr.dcm"
    assert pydicom.dcmread(io.BytesIO(open(download.value.path(), "rb").read())).Modality == "SR"

    page.keyboard.press("Escape")
    assert not sr_link.is_visible() and menu.get_attribute("open") is None
    page.get_by_text("DICOM files").click()
    assert sr_link.is_visible()
    page.locator("h1").click()
    assert not sr_link.is_visible()
