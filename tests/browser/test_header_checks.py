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


def test_the_viewer_outlines_an_altered_copy_and_shows_the_other_version_in_place(page, login_as, doctor_a):
    """Another stored copy of the scan with a painted square: the strip marks the slice, the summary leads to it, the
    outline is drawn, and "Show scan #N's version" puts the other copy's pixels in place (in this scan's window)
    and back."""
    from scans.models import DicomInstance
    from scans.services import scan_upload
    from tests.reports.conftest import brainix_paths
    from tests.scans.scanfiles import brainix_flair_upload

    original = scan_upload(user=doctor_a, files=brainix_flair_upload((9, 10, 11))).scan
    altered = scan_upload(user=doctor_a, files=brainix_flair_upload((9, 10, 11), paint=1)).scan
    store_analysis(altered, verdicts={0: "no_tumor", 1: "no_tumor", 2: "no_tumor"}, regions={},
                   scan_verdict="no_tumor")
    painted = pydicom.dcmread(brainix_paths((9, 10, 11))[1], stop_before_pixels=True).SOPInstanceUID
    index = DicomInstance.objects.get(scan=altered, sop_instance_uid=painted).first_slice

    login_as(doctor_a)
    page.goto(reverse("scans:detail", args=[altered.pk]))
    page.wait_for_selector("[data-slice-result]:not(.hidden)")
    marked = page.locator("[data-slice-strip] [data-changed]")
    assert marked.count() == 1 and marked.get_attribute("data-index") == str(index)
    page.locator("[data-summary-changed] button").click()
    said = page.locator("[data-slice-changes]")
    assert f"Against scan #{original.pk}: 400 pixels differ" in said.inner_text()
    overlay = "([x, y]) => Array.from(document.querySelector('[data-overlay]').getContext('2d')" \
              ".getImageData(x, y, 1, 1).data)"
    assert page.evaluate(overlay, [100, 110]) == [255, 200, 0, 255]  # the outline

    canvas = "([x, y]) => Array.from(document.querySelector('[data-slice-canvas]').getContext('2d')" \
             ".getImageData(x, y, 1, 1).data)"
    button = page.locator(f'[data-show-other="{original.pk}"]')
    assert button.get_attribute("aria-pressed") == "false"
    button.click()
    page.wait_for_selector(f'[data-show-other="{original.pk}"][aria-pressed="true"]')
    assert page.locator("[data-slice-canvas]").is_visible() and not page.locator("[data-slice-img]").is_visible()
    assert f"Showing scan #{original.pk}'s version of this slice" in said.inner_text()
    theirs_inside, theirs_outside = page.evaluate(canvas, [110, 110]), page.evaluate(canvas, [60, 200])
    page.locator(f'[data-show-other="{original.pk}"]').click()  # back to this scan's version, the same mapping
    page.wait_for_selector(f'[data-show-other="{original.pk}"][aria-pressed="false"]')
    ours_inside, ours_outside = page.evaluate(canvas, [110, 110]), page.evaluate(canvas, [60, 200])
    assert ours_inside[0] == 255 and theirs_inside[0] < 200  # the painted square, and the tissue it hides
    assert ours_outside == theirs_outside  # elsewhere the two versions look the same
    page.locator("[data-slice-slider]").fill(str((index + 1) % 3))  # another slice: this scan's image again
    assert page.locator("[data-slice-img]").is_visible()


def test_slices_read_as_tampered_are_named_beside_an_authentic_scan_verdict(page, login_as, doctor_a, upload_dicom):
    """A series whose real tumour outweighs one injected slice in the scan's verdict: the verdict says Real tumor,
    and the line under it names the tampered slice, a button that shows it."""
    scan = upload_dicom(doctor_a)
    store_analysis(scan, verdicts={0: "real_tumor", 1: "fake_added", 2: "real_tumor"}, regions={},
                   scan_verdict="real_tumor")
    login_as(doctor_a)
    page.goto(reverse("scans:detail", args=[scan.pk]))
    line = page.locator("[data-scan-tampered-slices]")
    line.wait_for(state="visible", timeout=10_000)
    assert line.inner_text().startswith("Read as tampered on 1 of 3 slices: 2 (Fake added 70%)")
    assert "reaches a tamper score" not in line.inner_text()  # this analysis had no scan rule (the max rule)
    page.locator("[data-scan-tampered-slices] button").click()
    assert page.locator("[data-slice-label]").inner_text() == "2"

    from inference.models import InferenceJob
    # under a scan rule, the line says why the scan is not called tampered: no slice reached the rule
    InferenceJob.objects.filter(scan=scan).update(scan_rule={"threshold": 0.97, "min_slices": 1, "chosen_on": "val"})
    page.reload()
    line.wait_for(state="visible", timeout=10_000)
    assert "None of them reaches a tamper score of 97%, where the scan's probability of being tampered passes 50%." \
        in line.inner_text()

    InferenceJob.objects.filter(scan=scan).update(verdict="fake_added")  # the scan's verdict says it already
    page.reload()
    page.wait_for_selector("[data-slice-result]:not(.hidden)")
    assert not line.is_visible()
