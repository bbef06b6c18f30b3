"""In headless Chromium: the scan page's "Sent to the PACS" list shows a transfer's outcome as soon as the worker
records it (pacs.js asks the API), without a reload."""
from datetime import timedelta

import pytest
from django.db import connections
from django.urls import reverse
from django.utils import timezone

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
    waiting = PacsTransfer.objects.create(scan=scan, job=analysed.job, requested_by=doctor_a,
                                          destination=settings.PACS_DESTINATION, status="retrying", attempts=1,
                                          detail="Could not connect to the PACS: Connection refused.",
                                          next_attempt_at=timezone.now() + timedelta(minutes=1))

    login_as(doctor_a)
    page.goto(reverse("scans:detail", args=[scan.pk]))
    first, second = (page.locator(f'[data-pacs-id="{t.pk}"]') for t in (sent, failed))
    assert first.get_attribute("data-pacs-transfer") == "queued"
    assert second.locator("[data-pacs-status]").inner_text() == "Sending"
    third = page.locator(f'[data-pacs-id="{waiting.pk}"]')
    assert third.locator("[data-pacs-status]").inner_text() == "Waiting to try again"
    assert "attempt 1 of 5 failed, trying again at " in third.inner_text()

    # the worker finishes both (as reports.services._pacs_finish would)
    PacsTransfer.objects.filter(pk=sent.pk).update(status="sent", instances=[
        {"what": "seg", "status": "0x0000"}, {"what": "report", "status": "0x0000"}, {"what": "sr", "status": "0x0000"}])
    PacsTransfer.objects.filter(pk=failed.pk).update(
        status="failed", detail="Could not connect to the PACS: Connection refused (after at most 30 s).")
    # the next try sends the waiting one (as reports.services.pacs_retry_due, then the worker, would)
    PacsTransfer.objects.filter(pk=waiting.pk).update(status="sent", attempts=2, detail="", next_attempt_at=None,
                                                      instances=[{"what": "seg", "status": "0x0000"}])
    page.wait_for_selector(f'[data-pacs-id="{sent.pk}"][data-pacs-transfer="sent"]', timeout=10_000)
    page.wait_for_selector(f'[data-pacs-id="{failed.pk}"][data-pacs-transfer="failed"]', timeout=10_000)
    page.wait_for_selector(f'[data-pacs-id="{waiting.pk}"][data-pacs-transfer="sent"]', timeout=10_000)
    assert third.inner_text().endswith(": 1 object stored (DICOM SEG)") and "attempt" not in third.inner_text()
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


def test_importing_a_series_from_the_pacs_in_the_browser(page, login_as, doctor_a, settings, tmp_path):
    """Search by study date, press Import: the button says it is importing and the others are disabled; the scan
    page of the new scan follows."""
    import pydicom

    from scans.models import Scan
    from tests.reports.conftest import brainix_paths
    from tests.reports.orthanc import post_instance, running_orthanc

    paths = brainix_paths((9, 10))
    with running_orthanc(tmp_path, dicom=True) as pacs:
        for path in paths:
            post_instance(pacs["http"], path.read_bytes())
        settings.PACS_DESTINATION = pacs["destination"]
        login_as(doctor_a)
        page.goto(reverse("scans:upload"))
        page.get_by_role("link", name="import a series from the PACS").click()
        page.fill("input[name=study_date]", "2006-12-01")
        page.get_by_role("button", name="Search").click()
        page.wait_for_selector("[data-series]")
        series = pydicom.dcmread(paths[0], stop_before_pixels=True)
        button = page.get_by_role("button", name=f"Import series {series.SeriesNumber} {series.SeriesDescription}")
        held = page.evaluate("""() => {
            const form = document.querySelector('[data-series] form');
            form.addEventListener('submit', (e) => e.preventDefault(), { once: true });
            form.requestSubmit();
            const b = form.querySelector('button');
            return [b.textContent, b.disabled, document.querySelector('[data-pacs-results]').getAttribute('aria-busy')];
        }""")
        assert held == ["Importing…", True, "true"]
        page.reload()
        button.click()
        page.wait_for_url("**/scans/*/")
        scan = Scan.objects.get()
        assert page.url.endswith(reverse("scans:detail", args=[scan.pk]))
        assert "Imported from the PACS" in page.locator(".messages").inner_text()
        assert scan.n_slices == 2 and scan.metadata["origin"] == {"pacs": pacs["destination"]}


def test_the_comparison_after_an_upload_appears_without_a_reload(page, login_as, doctor_a, settings, tmp_path):
    """PACS_COMPARE_UPLOADS: the scan page opens while the comparison waits for a worker ("Being compared"); when
    the worker has made it, the outcome and the warning above the verdict appear in place."""
    import uuid

    import pydicom
    import redis
    from django.conf import settings as django_settings

    from scans.services import compare_queued, scan_upload
    from tests.reports.conftest import brainix_paths
    from tests.reports.orthanc import post_instance, running_orthanc
    from tests.scans.scanfiles import brainix_flair_upload

    with running_orthanc(tmp_path, dicom=True) as pacs:
        for path in brainix_paths((9, 10)):
            post_instance(pacs["http"], path.read_bytes())
        settings.PACS_DESTINATION, settings.PACS_COMPARE_UPLOADS = pacs["destination"], True
        settings.PACS_QUEUE = f"test-compare-{uuid.uuid4().hex}"  # no worker takes it: this test does its work
        broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
        try:
            scan = scan_upload(user=doctor_a, files=brainix_flair_upload((9, 10), paint=1)).scan
            assert broker.llen(settings.PACS_QUEUE) == 1
        finally:
            broker.delete(settings.PACS_QUEUE)
        login_as(doctor_a)
        page.goto(reverse("scans:detail", args=[scan.pk]))
        item = page.locator("[data-pacs-comparison]")
        assert item.get_attribute("data-state") == "queued"
        assert "Being compared with the PACS (queued at " in item.inner_text()
        warning = page.locator("[data-pacs-comparison-warning]")
        assert not warning.is_visible()

        compare_queued(scan.pk)  # the worker's work
        page.wait_for_selector('[data-pacs-comparison][data-state="done"]', timeout=10_000)
        assert warning.is_visible()
        painted = pydicom.dcmread(brainix_paths((9, 10))[1], stop_before_pixels=True).SOPInstanceUID
        index = scan.instances.get(sop_instance_uid=painted).first_slice
        assert (f"1 of 2 images have the same pixels as in the PACS {pacs['destination']}. Slice {index + 1} has "
                "other pixels") in warning.inner_text()
        assert "after the upload" in warning.inner_text()
        assert "Being compared" not in item.inner_text() and "1 of 2 images" in item.inner_text()
        # Where: the warning lists the changed pixels, and the viewer outlines them on that slice (no reload).
        assert f"Slice {index + 1}, against the PACS's copy: 400 pixels differ" in warning.inner_text()
        assert page.locator("[data-change-controls]").is_visible()
        page.locator("[data-slice-slider]").fill(str(index))
        said = page.locator("[data-slice-changes]")
        said.wait_for(state="visible", timeout=5_000)
        assert said.inner_text().startswith("Against the PACS's copy: 400 pixels differ")
        pixel = "([x, y]) => Array.from(document.querySelector('[data-overlay]').getContext('2d')" \
                ".getImageData(x, y, 1, 1).data)"
        assert page.evaluate(pixel, [100, 110]) == [255, 200, 0, 255]  # the square's edge
        assert page.evaluate(pixel, [110, 110])[3] == 0  # its inside is left to see
        page.locator("[data-change-toggle]").uncheck()
        assert page.evaluate(pixel, [100, 110])[3] == 0
