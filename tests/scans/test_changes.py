"""Where two copies of one image differ, pixel for pixel: when the portal finds an image with two versions (another
stored scan's copy, or the PACS's), it records which pixels changed, by how much, and whether the change is local
(an edit in one place, outlined on the slice) or spread over the image (contrast, scaling, re-encoding), and how
much of it the detector's regions cover. Real BRAINIX slices with a square painted into one of them."""
import json

import numpy as np
import pydicom
from django.urls import reverse

from inference.ml.coco import rle_to_mask
from inference.ml.imaging import CHANGE_MASK_MAX_CHARS, changed_regions
from scans.dicom_text import change_text
from scans.models import DicomInstance, Scan
from scans.selectors import scan_copies, scan_slice_changes
from scans.services import scan_upload
from tests.reports.conftest import brainix_paths, report_pdf_text, store_analysis
from tests.scans.scanfiles import brainix_flair_upload

INDICES = (9, 10, 11)


def test_a_local_change_is_measured_and_its_pixels_kept_exactly():
    ours = np.arange(64 * 48, dtype=np.uint16).reshape(1, 64, 48)
    theirs = ours.copy()
    theirs[0, 10:14, 20:25] += 7
    theirs[0, 30, 5] -= 3
    [region] = changed_regions(ours, theirs)
    assert (region["pixels"], region["box"], region["max_difference"], region["spread"]) == (
        21, [5, 10, 20, 21], 7, False)
    assert abs(region["fraction"] - 21 / (64 * 48)) < 1e-6
    assert np.array_equal(rle_to_mask(region["mask_rle"]), ours[0] != theirs[0])


def test_a_change_of_the_whole_image_is_spread_and_no_mask_is_kept():
    ours = (np.arange(32 * 32, dtype=np.int16).reshape(1, 32, 32) % 200) + 10
    [region] = changed_regions(ours, (ours * 1.1).astype(np.int16))  # a change of contrast
    assert region["spread"] and region["mask_rle"] is None and region["fraction"] > 0.9
    assert region["box"] == [0, 0, 32, 32]
    text = change_text(region)
    assert text.startswith(f"{region['fraction'] * 100:.1f} % of the pixels differ, across the image") and \
        "not of one place" in text


def test_scattered_changes_keep_their_box_without_a_mask_too_long_to_keep():
    rng = np.random.default_rng(0)
    ours = np.zeros((1, 512, 512), dtype=np.uint16)
    theirs = ours.copy()
    theirs[0, :200, :200] = rng.integers(0, 2, size=(200, 200))  # 15 % of the image, salt-and-pepper
    [region] = changed_regions(ours, theirs)
    assert not region["spread"] and region["mask_rle"] is None and region["box"] == [0, 0, 200, 200]
    assert CHANGE_MASK_MAX_CHARS < 100_000


def test_frames_other_sizes_and_identical_values():
    ours = np.zeros((2, 8, 8), dtype=np.uint8)
    theirs = ours.copy()
    theirs[1, 2, 3] = 9
    first, second = changed_regions(ours, theirs)
    assert (first["pixels"], first["box"], second["pixels"], second["box"]) == (0, None, 1, [3, 2, 1, 1])
    assert change_text(first) == "no pixel value differs: the same values, stored in another data type"
    [other] = changed_regions(np.zeros((1, 8, 8)), np.zeros((1, 16, 16)))
    assert other["pixels"] is None and other["sizes"] == [[8, 8], [16, 16]]
    assert change_text(other).startswith("the two copies have other sizes (8 × 8 px here, 16 × 16 px there)")


def test_the_words_for_a_local_change_with_and_without_the_detector():
    region = {"pixels": 400, "fraction": 400 / 65536, "box": [100, 100, 20, 20], "max_difference": 773,
              "spread": False, "mask_rle": {}}
    base = ("400 pixels differ (0.6 % of the image) within x 100-119, y 100-119 (a 20 × 20 px box, counted from the "
            "top left corner), by up to 773")
    assert change_text(region) == base
    assert change_text(region, (0.0, None)) == base + "; the detector shows no region there"
    assert change_text(region, (0.5, 2)) == base + "; the detector's added tumour region covers 50 % of them"
    one = {**region, "pixels": 1, "fraction": 1 / 65536, "box": [3, 4, 1, 1]}
    assert change_text(one).startswith("1 pixel differs (under 0.1 % of the image) within x 3-3, y 4-4")


def _painted_index(scan: Scan) -> int:
    painted = pydicom.dcmread(brainix_paths(INDICES)[1], stop_before_pixels=True).SOPInstanceUID
    return DicomInstance.objects.get(scan=scan, sop_instance_uid=painted).first_slice


def test_another_stored_copy_is_compared_pixel_for_pixel_on_both_scans(client_a, doctor_a, doctor_b):
    original = scan_upload(user=doctor_a, files=brainix_flair_upload(INDICES)).scan
    altered = scan_upload(user=doctor_b, files=brainix_flair_upload(INDICES, paint=1)).scan
    index = _painted_index(altered)
    original.refresh_from_db()
    for scan, other in ((altered, original), (original, altered)):
        [region] = scan.metadata["copy_changes"][str(other.pk)].values()
        assert (region["pixels"], region["box"], region["spread"]) == (400, [100, 100, 20, 20], False)
        expected = np.zeros((scan.height, scan.width), dtype=bool)
        expected[100:120, 100:120] = True
        assert np.array_equal(rle_to_mask(region["mask_rle"]), expected)
    [copy] = scan_copies(scan=original, user=doctor_a)
    assert list(copy.changes) == [str(_painted_index(original))]

    # The page: the warning says where, and the viewer gets the mask to outline on that slice.
    page = client_a.get(reverse("scans:detail", args=[original.pk])).content.decode()
    share = 400 / (original.width * original.height) * 100
    line = (f"Slice {index + 1}, against a scan of another user: 400 pixels differ ({share:.1f} % of the image) "
            "within x 100-119, y 100-119 (a 20 × 20 px box, counted from the top left corner), by up to "
            f"{region['max_difference']}.")
    assert line in page
    data = json.loads(page.split('<script id="slice-changes" type="application/json">')[1].split("</script>")[0])
    [shown] = data[str(index)]
    assert (shown["source"], shown["box"]) == ("a scan of another user", [100, 100, 20, 20])
    assert shown["mask_rle"] == region["mask_rle"]
    assert shown["other"] is None  # another user's scan: its version is not offered
    assert "data-change-toggle" in page

    # Once analysed: how much of the change the detector's regions cover (here half of it, as an added tumour).
    detected = np.zeros((original.height, original.width), dtype=bool)
    detected[100:110, 90:130] = True
    store_analysis(original, verdicts={0: "no_tumor", 1: "fake_added", 2: "no_tumor"},
                   regions={index: [("fake_added", 0.9, detected)]}, scan_verdict="fake_added")
    [change] = scan_slice_changes(scan=original, user=doctor_a)
    assert change.coverage == (0.5, 2)
    api = client_a.get(reverse("api-scan-detail", args=[original.pk])).json()
    [entry] = api["copies"][0]["changes"]
    assert (entry["slice"], entry["pixels"], entry["box"], entry["max_difference"]) == (index, 400, [100, 100, 20, 20],
                                                                                       region["max_difference"])
    assert entry["text"].endswith("; the detector's added tumour region covers 50 % of them")
    text = " ".join(report_pdf_text(client_a, original.pk).split())
    assert "the detector's added tumour region covers 50 % of them" in text, text
    # its pictures: that slice first, the changed pixels outlined in yellow
    assert f"Slice {index + 1}: Fake added (70%), 1 region; other pixels in another copy (yellow)" in text
    assert "yellow: pixels another copy of the image holds with other values." in text


def test_a_copy_whose_change_the_detector_missed_says_so(client_a, doctor_a):
    original = scan_upload(user=doctor_a, files=brainix_flair_upload(INDICES)).scan
    altered = scan_upload(user=doctor_a, files=brainix_flair_upload(INDICES, paint=1)).scan
    store_analysis(altered, verdicts={0: "no_tumor", 1: "no_tumor", 2: "no_tumor"}, regions={},
                   scan_verdict="no_tumor")
    page = client_a.get(reverse("scans:detail", args=[altered.pk])).content.decode()
    index = _painted_index(altered)
    assert (f"Slice {index + 1}, against scan #{original.pk}: 400 pixels differ") in page
    assert "; the detector shows no region there." in page
    # The viewer may show the other copy's version of that slice in place, in this scan's window (16-bit BRAINIX).
    data = json.loads(page.split('<script id="slice-changes" type="application/json">')[1].split("</script>")[0])
    other_index = _painted_index(original)
    original.refresh_from_db()
    assert data[str(index)][0]["other"] == {
        "scan": original.pk, "slice": other_index,
        "image_url": reverse("scans:slice_image", args=[original.pk, other_index]),
        "image16_url": reverse("scans:slice_image16", args=[original.pk, other_index]),
        "scale": original.pixel_scale, "offset": original.pixel_offset}
    [entry] = client_a.get(reverse("api-scan-detail", args=[altered.pk])).json()["copies"][0]["changes"]
    assert (entry["slice"], entry["other_slice"]) == (index, other_index)


def test_copies_found_before_the_changes_were_recorded_get_them_from_check_dicom_headers(doctor_a):
    import io

    from django.core.management import call_command

    original = scan_upload(user=doctor_a, files=brainix_flair_upload(INDICES)).scan
    altered = scan_upload(user=doctor_a, files=brainix_flair_upload(INDICES, paint=1)).scan
    for scan in (original, altered):  # as a scan stored before 2026-12-07 has it
        scan.refresh_from_db()
        scan.metadata.pop("copy_changes")
        scan.save(update_fields=["metadata"])
    assert not scan_copies(scan=altered, user=doctor_a)[0].changes
    out = io.StringIO()
    call_command("check_dicom_headers", "--scan", str(altered.pk), stdout=out)
    assert f"scan {altered.pk} (" in out.getvalue() and "Recorded where 1 altered copy differs." in out.getvalue()
    for scan in (original, altered):
        [copy] = scan_copies(scan=Scan.objects.get(pk=scan.pk), user=doctor_a)
        [region] = copy.changes.values()
        assert region["box"] == [100, 100, 20, 20]
    out = io.StringIO()
    call_command("check_dicom_headers", "--scan", str(original.pk), stdout=out)
    assert "Recorded where" not in out.getvalue()  # nothing left to describe


def test_the_report_picture_outlines_the_changed_pixels_without_tinting_them():
    from reports.overlay import CHANGED_RGB, overlay

    grey = np.full((12, 12), 80, dtype=np.uint8)
    changed = np.zeros((12, 12), dtype=bool)
    changed[3:8, 4:9] = True
    picture = np.asarray(overlay(grey, None, changed=changed))
    assert picture[3, 4].tolist() == CHANGED_RGB.astype(int).tolist()  # the edge
    assert picture[5, 6].tolist() == [80, 80, 80]  # the inside, as it is
    assert picture[0, 0].tolist() == [80, 80, 80]
    assert np.array_equal(np.asarray(overlay(grey, None)), np.asarray(overlay(grey, None, changed=None)))
