"""In headless Chromium: the DICOM header checks' warnings beside the slices they name (viewer.js): a marked
cell in the slice strip, a "DICOM header" row in the slice summary that shows the slice, and a note on that
slice only."""
import io

import pydicom
import pytest
from django.db import connections
from django.urls import reverse

from inference.ml.provenance import check_series
from tests.reports.conftest import store_analysis, upload_dicom  # noqa: F401  (upload_dicom: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _close_connections_made_under_the_browser_loop(page):
    yield
    connections.close_all()


def test_the_viewer_marks_the_slice_whose_header_shows_editing(page, login_as, doctor_a, upload_dicom):
    scan = upload_dicom(doctor_a)  # 3 real BRAINIX slices
    store_analysis(scan, verdicts={0: "no_tumor", 1: "no_tumor", 2: "no_tumor"}, regions={}, scan_verdict="no_tumor")
    datasets = [pydicom.dcmread(io.BytesIO(f.file.open("rb").read())) for f in scan.files.all()]
    positions = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    datasets = [ds for _, ds in sorted(zip(positions, datasets), key=lambda pair: pair[0])]  # display order
    datasets[1].file_meta.ImplementationVersionName = "EDITOR 1.0"
    scan.metadata["header_checks"] = check_series(datasets)
    scan.save(update_fields=["metadata"])

    login_as(doctor_a)
    page.goto(reverse("scans:detail", args=[scan.pk]))
    page.wait_for_selector("[data-slice-result]:not(.hidden)")
    flagged = page.locator("[data-slice-strip] [data-header-warning]")
    assert flagged.count() == 1 and flagged.get_attribute("data-index") == "1"
    assert "its DICOM header shows signs of editing" in flagged.get_attribute("title")
    row = page.locator("[data-summary-header]")
    assert row.inner_text().replace("\n", " ").strip() == "DICOM header signs of editing at 1 slice: 2"

    page.locator("[data-slice-strip] button").nth(0).click()
    assert page.locator("[data-slice-header]").is_hidden()
    row.get_by_role("button", name="Show slice 2 (DICOM header shows signs of editing)").click()
    assert page.locator("[data-slice-label]").inner_text() == "2"
    note = page.locator("[data-slice-header]")
    assert note.is_visible()
    assert note.inner_text().startswith("DICOM header of this slice's file: 1 of 3 files were last written by a "
                                        "different program (EDITOR 1.0) from the rest (OSIRIX, 2 files), at slice 2")
    page.locator("[data-slice-strip] button").nth(2).click()
    assert note.is_hidden()
