"""The upload page in headless Chromium: drag and drop, XHR upload with progress, errors next to each file."""
from __future__ import annotations

import base64

import pytest
from django.urls import reverse

from scans.models import Scan
from tests.browser.conftest import browser, login_as, page  # noqa: F401  (the project's Playwright fixtures)

from .scanfiles import SAMPLE_FLAIR, SAMPLE_TIFF

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_series_and_a_bad_file_each_get_their_own_result(page, login_as, doctor_a, tmp_path):
    login_as(doctor_a)
    page.goto(reverse("scans:upload"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a scan\n")
    page.set_input_files('input[name="files"]', [str(p) for p in SAMPLE_FLAIR] + [str(notes)])
    page.click("#upload-submit")

    page.wait_for_selector("#upload-queue li a")  # the series' link
    page.wait_for_selector("#upload-queue [role=alert]")
    items = page.locator("#upload-queue > li")
    assert items.count() == 2
    series, bad = items.nth(0), items.nth(1)
    scan = Scan.objects.get(owner=doctor_a)
    assert "IM-0001-0010.dcm and 2 more (one series)" in series.inner_text()
    assert "Uploaded IM-0001-0010.dcm (+2 more): 3 slices." in series.inner_text()
    assert series.locator(".progress-fill").get_attribute("style") == "width: 100%;"
    assert series.locator("a").get_attribute("href").endswith(reverse("scans:detail", args=[scan.pk]))
    assert "the extension .txt is not accepted" in bad.inner_text()
    assert Scan.objects.count() == 1


def test_a_dropped_file_uploads_and_opens_the_scan(page, login_as, doctor_a):
    login_as(doctor_a)
    page.goto(reverse("scans:upload"))
    tiff = base64.b64encode(SAMPLE_TIFF.read_bytes()).decode()
    page.evaluate(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "image/tiff"}));
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        [SAMPLE_TIFF.name, tiff],
    )
    assert SAMPLE_TIFF.name in page.inner_text("#upload-queue")
    page.select_option('select[name="sequence"]', "flair")  # a TIFF does not say which sequence it is
    with page.expect_navigation():
        page.click("#upload-submit")
    scan = Scan.objects.get(owner=doctor_a)
    assert page.url.endswith(reverse("scans:detail", args=[scan.pk]))
    assert scan.original_name == SAMPLE_TIFF.name and scan.kind == "image"
    assert scan.metadata["sequence"]["sequence"] == "flair"
    assert page.locator("[data-sequence]").inner_text().startswith("FLAIR")


def test_without_javascript_the_form_shows_the_error(page, login_as, doctor_a, tmp_path):
    login_as(doctor_a)
    page.context.route("**/static/js/upload.js", lambda route: route.abort())  # as if scripts were off
    page.goto(reverse("scans:upload"))
    fake = tmp_path / "slice.png"
    fake.write_bytes(b"<html>not an image</html>" * 10)
    page.set_input_files('input[name="files"]', str(fake))
    with page.expect_navigation():
        page.click("#upload-submit")
    assert "slice.png: the file is not a PNG image" in page.inner_text("#upload-error")
    assert Scan.objects.count() == 0
