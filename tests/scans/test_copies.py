"""Other stored copies of the same DICOM images: every DICOM scan keeps its instances' UIDs and pixel digests; a scan
sharing instances with another is told so, "the same pixels" when they match (another transfer syntax, another
route in), and warned, naming the slices, when one image has two versions. Compared across all users; the link is
given only to scans the viewer may open."""
import io

import numpy as np
import pydicom
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.urls import reverse
from pydicom.uid import ImplicitVRLittleEndian

from audit import actions
from audit.models import AuditEvent
from inference.ml.imaging import pixels_sha256
from scans.models import DicomInstance
from scans.selectors import scan_copies
from scans.services import scan_upload
from tests.reports.conftest import brainix_paths

INDICES = (9, 10, 11)


def _files(change=None, syntax=None) -> list[ContentFile]:
    """The three BRAINIX slices as uploads; ``change(position, dataset)`` edits them, ``syntax`` re-encodes them."""
    files = []
    for position, path in enumerate(brainix_paths(INDICES)):
        ds = pydicom.dcmread(path)
        if change:
            change(position, ds)
        if syntax:
            ds.file_meta.TransferSyntaxUID = syntax
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(ContentFile(buffer.getvalue(), name=path.name))
    return files


def _paint(position: int, ds) -> None:
    """A tumour-sized bright square painted into the second file's pixels, header untouched (as a tamperer would)."""
    if position == 1:
        pixels = ds.pixel_array.copy()
        pixels[100:120, 100:120] = pixels.max()
        ds.PixelData = pixels.tobytes()


def test_the_pixel_digest_reads_values_not_their_encoding():
    frames = np.arange(24, dtype=np.uint16).reshape(1, 4, 6)
    assert pixels_sha256(frames) == pixels_sha256(frames.astype(np.int32))
    changed = frames.copy()
    changed[0, 2, 3] += 1
    assert pixels_sha256(changed) != pixels_sha256(frames)
    assert pixels_sha256(frames.reshape(1, 6, 4)) != pixels_sha256(frames)


def test_a_copy_with_other_pixels_is_flagged_on_both_scans_naming_the_slices(client_a, doctor_a):
    original = scan_upload(user=doctor_a, files=_files()).scan
    assert sorted(DicomInstance.objects.filter(scan=original).values_list("first_slice", flat=True)) == [0, 1, 2]
    altered = scan_upload(user=doctor_a, files=_files(change=_paint)).scan
    painted = pydicom.dcmread(brainix_paths(INDICES)[1], stop_before_pixels=True).SOPInstanceUID
    slice_index = DicomInstance.objects.get(scan=altered, sop_instance_uid=painted).first_slice

    [copy] = scan_copies(scan=altered, user=doctor_a)
    assert (copy.scan_id, copy.shared, copy.altered_slices, copy.visible) == (original.pk, 3, (slice_index,), True)
    [found] = AuditEvent.objects.filter(action=actions.SCAN_ALTERED_COPY_FOUND)  # when the second copy arrived
    assert (found.object_id, found.outcome, found.details["copies"]) == (
        str(altered.pk), "success", [{"scan_id": original.pk, "shared_instances": 3, "altered_slices": [slice_index],
                                      "changes": {str(slice_index): found.details["copies"][0]["changes"][
                                          str(slice_index)]}}])
    assert found.details["copies"][0]["changes"][str(slice_index)]["box"] == [100, 100, 20, 20]  # where it was painted
    assert copy.altered_text == f"slice {slice_index + 1}"
    for scan, other in ((altered, original), (original, altered)):
        page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
        assert f'data-copy-warning="{other.pk}"' in page and "Another stored copy of these images has other pixels" \
            in page
        assert f'<a href="{reverse("scans:detail", args=[other.pk])}">scan #{other.pk}</a>' in page
        assert f"other pixels in slice {slice_index + 1}" in page

    # The same images re-encoded (another transfer syntax: other bytes, so another scan): the same pixels.
    same = scan_upload(user=doctor_a, files=_files(syntax=ImplicitVRLittleEndian)).scan
    assert same.pk not in (original.pk, altered.pk)
    copies = {c.scan_id: c for c in scan_copies(scan=same, user=doctor_a)}
    assert copies[original.pk].identical and not copies[altered.pk].identical
    page = client_a.get(reverse("scans:detail", args=[same.pk])).content.decode()
    items = {pk: page.split(f'<li data-copy="{pk}">')[1].split("</li>")[0] for pk in (original.pk, altered.pk)}
    assert "3 of the same instances" in items[original.pk] and items[original.pk].rstrip().endswith("the same pixels")
    assert f"other pixels in slice {slice_index + 1}" in items[altered.pk]
    assert f'data-copy-warning="{original.pk}"' not in page and f'data-copy-warning="{altered.pk}"' in page


def test_a_copy_held_by_another_user_is_compared_but_not_linked(client_a, client_b, client_admin, doctor_a, doctor_b):
    mine = scan_upload(user=doctor_a, files=_files()).scan
    theirs = scan_upload(user=doctor_b, files=_files(change=_paint)).scan
    page_b = client_b.get(reverse("scans:detail", args=[theirs.pk])).content.decode()
    assert f'data-copy-warning="{mine.pk}"' in page_b and "in a scan of another user" in page_b
    assert reverse("scans:detail", args=[mine.pk]) not in page_b
    page_a = client_a.get(reverse("scans:detail", args=[mine.pk])).content.decode()
    assert f'data-copy-warning="{theirs.pk}"' in page_a and reverse("scans:detail", args=[theirs.pk]) not in page_a
    admin = client_admin.get(reverse("scans:detail", args=[mine.pk])).content.decode()
    assert f'<a href="{reverse("scans:detail", args=[theirs.pk])}">scan #{theirs.pk}</a>' in admin


def test_scans_stored_before_the_index_are_indexed_by_check_dicom_headers(doctor_a):
    first = scan_upload(user=doctor_a, files=_files()).scan
    second = scan_upload(user=doctor_a, files=_files(change=_paint)).scan
    DicomInstance.objects.all().delete()  # as for scans uploaded before the portal kept them
    assert scan_copies(scan=second, user=doctor_a) == []
    out = io.StringIO()
    call_command("check_dicom_headers", "--missing", stdout=out)
    assert "2 scans checked" in out.getvalue()
    [copy] = scan_copies(scan=second, user=doctor_a)
    assert copy.scan_id == first.pk and len(copy.altered_slices) == 1
    out = io.StringIO()
    call_command("check_dicom_headers", "--missing", stdout=out)
    assert "0 scans checked" in out.getvalue()


def test_scans_without_dicom_instances_have_no_copies(client_a, doctor_a):
    from tests.scans.scanfiles import SAMPLE_TIFF, uploads_from

    scan_upload(user=doctor_a, files=_files())
    scan = scan_upload(user=doctor_a, files=uploads_from([SAMPLE_TIFF])).scan
    assert scan.kind == "image" and not DicomInstance.objects.filter(scan=scan).exists()
    assert scan_copies(scan=scan, user=doctor_a) == []
    assert "data-copies" not in client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()


def test_the_api_and_the_pdf_report_carry_the_comparison(client_a, doctor_a, doctor_b):
    from tests.reports.conftest import report_pdf_text, store_analysis

    original = scan_upload(user=doctor_a, files=_files()).scan
    other_users = scan_upload(user=doctor_b, files=_files(syntax=ImplicitVRLittleEndian)).scan
    altered = scan_upload(user=doctor_a, files=_files(change=_paint)).scan
    painted = pydicom.dcmread(brainix_paths(INDICES)[1], stop_before_pixels=True).SOPInstanceUID
    index = DicomInstance.objects.get(scan=altered, sop_instance_uid=painted).first_slice

    copies = client_a.get(reverse("api-scan-detail", args=[altered.pk])).json()["copies"]
    assert [(c["scan"], c["shared_instances"], c["altered_slices"]) for c in copies] == [
        (None, 3, [index]), (original.pk, 3, [index])]  # newest first; another user's scan is not named
    assert other_users.pk not in [c["scan"] for c in copies]

    store_analysis(altered, verdicts={0: "no_tumor", 1: "no_tumor", 2: "no_tumor"}, regions={},
                   scan_verdict="no_tumor")
    text = report_pdf_text(client_a, altered.pk)
    assert "Another stored copy of these images has other pixels:" in text, text
    assert (f"Slice {index + 1} here shows other pixels than the same DICOM instance (same SOP Instance UID) in scan "
            f"#{original.pk}") in text
    assert "in a scan of another user" in text


def test_the_scan_list_the_csv_and_the_dashboard_flag_scans_with_an_altered_copy(client_a, doctor_a):
    import csv

    from reports.selectors import dashboard_for
    from tests.scans.scanfiles import SAMPLE_TIFF, uploads_from

    original = scan_upload(user=doctor_a, files=_files()).scan
    altered = scan_upload(user=doctor_a, files=_files(change=_paint)).scan
    unrelated = scan_upload(user=doctor_a, files=uploads_from([SAMPLE_TIFF])).scan

    flagged = client_a.get(reverse("scans:list"), {"copies": "altered"}).content.decode()
    link = f'href="{reverse("scans:detail", args=[unrelated.pk])}"'
    assert flagged.count("data-copy-flag") == 2 and link not in flagged
    everything = client_a.get(reverse("scans:list")).content.decode()
    assert everything.count("data-copy-flag") == 2 and link in everything
    api = client_a.get(reverse("api-scan-list"), {"copies": "altered"}).json()
    assert sorted(s["id"] for s in api["results"]) == sorted([original.pk, altered.pk])

    rows = {int(r["scan_id"]): r for r in csv.DictReader(io.StringIO(
        client_a.get(reverse("reports:results_csv")).content.decode()))}
    assert (rows[original.pk]["altered_copy"], rows[altered.pk]["altered_copy"], rows[unrelated.pk]["altered_copy"]) \
        == ("yes", "yes", "")
    assert dashboard_for(user=doctor_a).altered_copies == 2
    page = client_a.get(reverse("reports:dashboard")).content.decode()
    assert f'<a href="{reverse("scans:list")}?copies=altered">2</a>' in page


def test_a_copy_kept_lossily_compressed_is_no_evidence_of_an_edit(client_a, doctor_a):
    """The same images, one of them saved with JPEG-LS near-lossless compression (flagged Lossy Image Compression 01,
    same UID): its pixels differ, but compression changes pixels, so it is named as such and not called an edit."""
    from pydicom.uid import JPEGLSNearLossless

    from scans.models import Scan
    from scans.selectors import altered_copy_exists

    def compress(position: int, ds) -> None:
        if position == 1:
            ds.compress(JPEGLSNearLossless, jls_error=3, generate_instance_uid=False)
            ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_14495_1"

    original = scan_upload(user=doctor_a, files=_files()).scan
    lossy = scan_upload(user=doctor_a, files=_files(change=compress)).scan
    compressed = pydicom.dcmread(brainix_paths(INDICES)[1], stop_before_pixels=True).SOPInstanceUID
    assert DicomInstance.objects.get(scan=lossy, sop_instance_uid=compressed).lossy is True
    index = DicomInstance.objects.get(scan=lossy, sop_instance_uid=compressed).first_slice
    (copy,) = scan_copies(scan=lossy, user=doctor_a)
    assert (copy.scan_id, copy.altered_slices, copy.lossy_slices, copy.identical) == (original.pk, (), (index,), True)
    assert not Scan.objects.filter(altered_copy_exists()).exists()
    assert not AuditEvent.objects.filter(action=actions.SCAN_ALTERED_COPY_FOUND).exists()
    page = client_a.get(reverse("scans:detail", args=[lossy.pk])).content.decode()
    assert "data-copy-warning" not in page
    assert (f"the same pixels except slice {index + 1}, where one of the two was lossily compressed (no evidence "
            "either way)") in page
    api = client_a.get(reverse("api-scan-detail", args=[original.pk])).json()["copies"]
    assert [(c["scan"], c["altered_slices"], c["lossy_slices"]) for c in api] == [(lossy.pk, [], [index])]
