"""Scan pages: list (filters, pagination, latest verdict), upload form (with and without errors), detail,
downloads, slice images, and the permission matrix over every page."""
from __future__ import annotations

import html
import io
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from audit.models import AuditEvent
from inference.models import InferenceJob
from scans.models import Scan

from .scanfiles import SAMPLE_FLAIR, SAMPLE_TIFF, bad_input_params, upload

pytestmark = pytest.mark.django_db


def _text(response) -> str:
    return html.unescape(response.content.decode())


def _bare_scan(owner, name="scan.dcm", **extra) -> Scan:
    """A scan row without files, for list tests (uploads are tested elsewhere)."""
    import uuid

    fields = dict(owner=owner, kind="dicom", original_name=name, sha256=uuid.uuid4().hex * 2, size_bytes=1,
                  n_slices=1, width=256, height=256, pixel_dtype="uint8")
    fields.update(extra)
    return Scan.objects.create(**fields)


def _finished_job(scan, verdict, confidence=0.9, **extra):
    return InferenceJob.objects.create(scan=scan, status=InferenceJob.Status.SUCCEEDED, verdict=verdict,
                                       confidence=confidence, **extra)


# --- Upload form -------------------------------------------------------------------------------------


def test_upload_page_has_the_form_and_the_script(client_a):
    response = client_a.get(reverse("scans:upload"))
    assert response.status_code == 200
    page = _text(response)
    assert 'enctype="multipart/form-data"' in page and 'name="files"' in page and "multiple" in page
    assert "js/upload.js" in page
    assert f'data-api-url="{reverse("api-scan-list")}"' in page


def test_upload_form_stores_the_series_and_opens_the_scan(client_a, doctor_a):
    files = [upload(p.name, p.read_bytes()) for p in SAMPLE_FLAIR]
    response = client_a.post(reverse("scans:upload"), {"files": files})

    scan = Scan.objects.get(owner=doctor_a)
    assert response.status_code == 302 and response["Location"] == reverse("scans:detail", args=[scan.pk])
    page = _text(client_a.get(response["Location"]))
    assert "Uploaded IM-0001-0010.dcm (+2 more): 3 slices. The detector job is queued." in page
    assert scan.n_slices == 3 and scan.jobs.count() == 1


def test_upload_form_takes_the_stated_sequence_of_a_plain_image(client_a, doctor_a):
    page = _text(client_a.get(reverse("scans:upload")))
    assert 'name="sequence"' in page and "T1 post-contrast" in page

    response = client_a.post(reverse("scans:upload"), {"files": [upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())],
                                                       "sequence": "flair"})
    scan = Scan.objects.get(owner=doctor_a)
    assert response.status_code == 302
    check = scan.metadata["sequence"]
    assert (check["sequence"], check["trained"], check["evidence"]) == ("flair", True, "stated by the uploader")
    assert "data-sequence-warning" not in _text(client_a.get(response["Location"]))


def test_upload_form_refuses_an_unknown_sequence(client_a, assert_nothing_stored):
    response = client_a.post(reverse("scans:upload"), {"files": [upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())],
                                                       "sequence": "dwi"})
    assert response.status_code == 400
    assert "Unknown sequence &#x27;dwi&#x27;" in response.content.decode() or "Unknown sequence 'dwi'" in _text(response)
    assert_nothing_stored()


def test_upload_form_recognises_the_same_file(client_a, doctor_a):
    tiff = SAMPLE_TIFF.read_bytes()
    first = client_a.post(reverse("scans:upload"), {"files": [upload(SAMPLE_TIFF.name, tiff)]})
    again = client_a.post(reverse("scans:upload"), {"files": [upload("renamed.tif", tiff)]})
    assert again.status_code == 302 and again["Location"] == first["Location"]
    assert "You uploaded this exact file before" in _text(client_a.get(again["Location"]))
    assert Scan.objects.count() == 1


@pytest.mark.parametrize("bad", bad_input_params())
def test_upload_form_shows_the_error_and_stores_nothing(bad, client_a, apply_limits, assert_nothing_stored):
    apply_limits(bad)
    response = client_a.post(reverse("scans:upload"), {"files": [upload(n, d) for n, d in bad.files()]})
    assert response.status_code == 400
    page = _text(response)
    assert bad.message in page
    assert 'role="alert"' in page and 'name="files"' in page  # the form is shown again with the error
    assert_nothing_stored()


def test_upload_form_lists_each_refused_file(client_a, assert_nothing_stored):
    files = [upload("notes.txt", b"hello"), upload("empty.dcm", b"")]
    page = _text(client_a.post(reverse("scans:upload"), {"files": files}))
    assert "2 files were refused" in page
    assert "notes.txt</strong>: the extension .txt is not accepted" in page
    assert "empty.dcm</strong>: the file is empty (0 bytes)." in page
    assert_nothing_stored()


def test_upload_body_over_the_limit_is_refused_before_reading(doctor_a, settings, assert_nothing_stored):
    """Refused from Content-Length by the middleware: before CSRF (which would read the body) runs, so a
    request without a CSRF token gets the size error, not a 403."""
    from django.test import Client

    settings.UPLOAD_MAX_BYTES = 1000
    client = Client(enforce_csrf_checks=True)
    client.force_login(doctor_a)
    big = np.zeros(1024 * 1024 + 2000, np.uint8).tobytes()  # over the limit + the multipart allowance
    response = client.post(reverse("scans:upload"), {"files": [upload("big.dcm", big)]})
    assert response.status_code == 400
    page = _text(response)
    assert "The upload is over the limit of 1000 bytes." in page and 'name="files"' in page
    assert_nothing_stored()


def test_too_many_files_in_one_upload(client_a, settings, assert_nothing_stored):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = [upload(p.name, p.read_bytes()) for p in SAMPLE_FLAIR]
    response = client_a.post(reverse("scans:upload"), {"files": files})
    assert response.status_code == 400
    assert "More than 2 files in one upload. Zip the series and upload the zip." in _text(response)
    assert_nothing_stored()


# --- List --------------------------------------------------------------------------------------------


def test_list_shows_own_scans_with_the_latest_verdict(client_a, doctor_a, doctor_b):
    mine = _bare_scan(doctor_a, "mine.dcm")
    old = _finished_job(mine, "real_tumor", 0.51)
    InferenceJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    _finished_job(mine, "fake_added", 0.87)
    _bare_scan(doctor_b, "theirs.dcm")

    page = _text(client_a.get(reverse("scans:list")))
    assert "mine.dcm" in page and "theirs.dcm" not in page
    assert "badge-fake_added" in page and "Fake added" in page and "87%" in page
    assert "badge-real_tumor" not in page  # only the latest job counts


def test_list_counts_the_slices_read_as_tampered_under_the_latest_job(client_a, doctor_a):
    from inference.models import SliceResult

    def slices(job, verdicts):
        for i, v in enumerate(verdicts):
            SliceResult.objects.create(job=job, index=i, verdict=v, confidence=0.9, tamper_score=0.5)

    series = _bare_scan(doctor_a, "series.dcm", n_slices=5)
    old = _finished_job(series, "fake_added")
    InferenceJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    slices(old, ["fake_added"] * 4 + ["no_tumor"])  # an earlier job's slices do not count
    slices(_finished_job(series, "real_tumor"), ["no_tumor", "real_tumor", "fake_added", "fake_removed", "no_tumor"])
    clean = _bare_scan(doctor_a, "clean.dcm", n_slices=3)
    slices(_finished_job(clean, "real_tumor"), ["no_tumor", "real_tumor", "no_tumor"])
    single = _bare_scan(doctor_a, "single.png", n_slices=1)
    slices(_finished_job(single, "fake_removed"), ["fake_removed"])  # one slice: the verdict already says it

    response = client_a.get(reverse("scans:list"))
    by_name = {s.original_name: s.latest_tampered_slices for s in response.context["scans"]}
    assert by_name == {"series.dcm": 2, "clean.dcm": 0, "single.png": 1}
    page = _text(response)
    assert page.count("data-tampered-slices") == 1 and "2 of 5 slices read as tampered" in page


def test_list_for_admin_shows_everyone_with_owners(client_admin, doctor_a, doctor_b):
    _bare_scan(doctor_a, "a.dcm")
    _bare_scan(doctor_b, "b.dcm")
    page = _text(client_admin.get(reverse("scans:list")))
    assert "All scans" in page and "a.dcm" in page and "b.dcm" in page
    assert "doctor_a" in page and "doctor_b" in page


def test_list_filters_by_verdict_and_dates(client_a, doctor_a):
    added = _bare_scan(doctor_a, "added.dcm")
    _finished_job(added, "fake_added")
    clean = _bare_scan(doctor_a, "clean.dcm")
    _finished_job(clean, "no_tumor")
    waiting = _bare_scan(doctor_a, "waiting.dcm")
    InferenceJob.objects.create(scan=waiting)
    old = _bare_scan(doctor_a, "old.dcm")
    Scan.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    def names(**params):
        page = _text(client_a.get(reverse("scans:list"), params))
        return {n for n in ("added.dcm", "clean.dcm", "waiting.dcm", "old.dcm") if n in page}

    assert names() == {"added.dcm", "clean.dcm", "waiting.dcm", "old.dcm"}
    assert names(verdict="fake_added") == {"added.dcm"}
    assert names(verdict="pending") == {"waiting.dcm", "old.dcm"}
    today = timezone.localdate()
    assert names(date_from=str(today - timedelta(days=1))) == {"added.dcm", "clean.dcm", "waiting.dcm"}
    assert names(date_to=str(today - timedelta(days=30))) == {"old.dcm"}
    assert names(date_from=str(today), date_to=str(today), verdict="no_tumor") == {"clean.dcm"}


def test_list_search_finds_by_name_series_number_and_sha256(client_a, client_admin, doctor_a, doctor_b):
    flair = _bare_scan(doctor_a, "IM-0001-0001.dcm (+21 more)", metadata={"series_description": "sT2W/FLAIR"},
                       sha256="ab12cd34" + "0" * 56)
    t1 = _bare_scan(doctor_a, "study-t1.nii.gz", metadata={"protocol_name": "T1 post contrast"})
    png = _bare_scan(doctor_a, "Slice_07.PNG")
    theirs = _bare_scan(doctor_b, "flair-of-b.dcm")

    def names(client=client_a, **params):
        page = _text(client.get(reverse("scans:list"), params))
        return {s.original_name for s in (flair, t1, png, theirs) if s.original_name in page}

    assert names(q="flair") == {flair.original_name}  # series description, any case; never another doctor's
    assert names(q="slice_07") == {png.original_name}  # file name, any case
    assert names(q="post contrast") == {t1.original_name}  # protocol name
    assert names(q=f"#{t1.pk}") == names(q=str(t1.pk)) == {t1.original_name}
    assert names(q="AB12CD") == {flair.original_name}  # the start of the SHA-256
    assert names(q="ab12c") == set()  # under 6 hex digits is not a hash search (and no name holds it)
    assert names(q="nothing-like-this") == set()
    assert "No scan matches these filters." in _text(client_a.get(reverse("scans:list"), {"q": "zzz"}))
    assert names(client_admin, q="doctor_b") == {theirs.original_name}  # an admin finds a doctor's scans
    assert names(q="doctor_b") == set()  # a doctor does not search by owner
    assert names(q="flair", verdict="no_tumor") == set()  # search and filters combine


def test_list_export_link_carries_the_filters_and_the_csv_follows_them(client_a, doctor_a):
    import csv
    import io

    keep = _bare_scan(doctor_a, "keep-me.dcm")
    _bare_scan(doctor_a, "other.dcm")
    page = client_a.get(reverse("scans:list"), {"q": "keep"}).content.decode()
    assert f'href="{reverse("reports:results_csv")}?q=keep"' in page
    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:results_csv"), {"q": "keep"}).content
                                           .decode())))
    assert [int(r["scan_id"]) for r in rows] == [keep.pk]


def test_bad_filters_export_nothing(client_a, doctor_a):
    from audit.models import AuditEvent

    _bare_scan(doctor_a, "x.dcm")
    response = client_a.get(reverse("reports:results_csv"), {"date_from": "2026-02-01", "date_to": "2026-01-01"})
    assert response.status_code == 400 and response["Content-Type"].startswith("text/plain")
    assert "nothing was exported" in response.content.decode()
    assert "The start date is after the end date." in response.content.decode()
    assert not AuditEvent.objects.filter(action="report.results_csv_exported").exists()
    bad = client_a.get(reverse("scans:list"), {"date_from": "2026-02-01", "date_to": "2026-01-01"})
    assert 'id="export-csv"' not in bad.content.decode()


def test_scans_path_leads_to_the_list(client_a):
    response = client_a.get("/scans/?verdict=no_tumor")
    assert response.status_code == 302 and response["Location"] == reverse("scans:list") + "?verdict=no_tumor"


def test_list_shows_bad_filters(client_a, doctor_a):
    _bare_scan(doctor_a, "x.dcm")
    page = _text(client_a.get(reverse("scans:list"), {"date_from": "2026-02-01", "date_to": "2026-01-01"}))
    assert "The start date is after the end date." in page


def test_list_is_paginated(client_a, doctor_a):
    for i in range(27):
        _bare_scan(doctor_a, f"scan-{i:02d}.dcm")
    first = _text(client_a.get(reverse("scans:list")))
    second = _text(client_a.get(reverse("scans:list"), {"page": 2}))
    assert "Page 1 of 2 · 27 scans" in first and "scan-26.dcm" in first and "scan-01.dcm" not in first
    assert "scan-01.dcm" in second and "scan-00.dcm" in second


def test_list_does_one_query_for_the_verdicts(client_a, doctor_a, django_assert_max_num_queries):
    for i in range(10):
        _finished_job(_bare_scan(doctor_a, f"s{i}.dcm"), "no_tumor")
    # session, user, whether the user has two-factor authentication (accounts.middleware), count, the page: not one
    # query per scan
    with django_assert_max_num_queries(9):
        assert client_a.get(reverse("scans:list")).status_code == 200


# --- Detail, downloads, slice images ----------------------------------------------------------------


def test_detail_shows_metadata_not_the_patient_and_is_audited(client_a, flair_scan_of):
    scan = flair_scan_of()
    response = client_a.get(reverse("scans:detail", args=[scan.pk]))
    page = _text(response)
    assert response.status_code == 200
    assert scan.sha256 in page and "MR" in page and "2006-12-01" in page  # DICOM's 20061201, as a reader writes it
    assert "0000 (not a DICOM sex code)" in page  # BRAINIX's anonymised PatientSex, shown as given and marked
    assert "BRAINIX" not in page and "5Yp0E" not in page  # the patient's name and ID
    assert reverse("scans:download_original", args=[scan.pk]) in page
    assert AuditEvent.objects.filter(action="scan.viewed", object_id=str(scan.pk)).count() == 1


def test_detail_says_when_the_sequence_is_one_the_detector_never_saw(client_a, doctor_a, flair_scan_of):
    from scans.services import scan_upload

    from .scanfiles import brainix_series, uploads_from

    flair = flair_scan_of()
    assert (flair.metadata["sequence"]["sequence"], flair.metadata["sequence"]["trained"]) == ("flair", True)
    assert flair.metadata["inversion_time"] == 2500.0
    page = _text(client_a.get(reverse("scans:detail", args=[flair.pk])))
    assert "data-sequence-warning" not in page and "FLAIR" in page

    t1 = scan_upload(user=doctor_a, files=uploads_from(brainix_series("T1")[:3])).scan
    assert (t1.metadata["sequence"]["sequence"], t1.metadata["sequence"]["trained"]) == ("t1", False)
    page = _text(client_a.get(reverse("scans:detail", args=[t1.pk])))
    assert "data-sequence-warning" in page
    assert "Sequence outside the detector's training:" in page and "T1 without contrast" in page
    assert "no contrast agent recorded" in page


def test_download_of_a_series_is_a_zip_of_the_unchanged_files(client_a, flair_scan_of):
    scan = flair_scan_of()
    response = client_a.get(reverse("scans:download_original", args=[scan.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert {n: archive.read(n) for n in archive.namelist()} == {p.name: p.read_bytes() for p in SAMPLE_FLAIR}
    assert AuditEvent.objects.filter(action="scan.original_downloaded", object_id=str(scan.pk)).count() == 1


def test_download_of_one_file(client_a, flair_scan_of, doctor_a):
    scan = flair_scan_of()
    scan_file = scan.files.get(original_name=SAMPLE_FLAIR[1].name)
    response = client_a.get(reverse("scans:download_file", args=[scan.pk, scan_file.pk]))
    assert response.status_code == 200
    assert f'attachment; filename="{SAMPLE_FLAIR[1].name}"' == response["Content-Disposition"]
    assert b"".join(response.streaming_content) == SAMPLE_FLAIR[1].read_bytes()

    from scans.services import scan_upload

    tiff = scan_upload(user=doctor_a, files=[upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]).scan
    single = client_a.get(reverse("scans:download_original", args=[tiff.pk]))
    assert b"".join(single.streaming_content) == SAMPLE_TIFF.read_bytes()


def test_a_file_of_another_scan_is_a_404(client_a, flair_scan_of, doctor_a):
    from scans.services import scan_upload

    scan = flair_scan_of()
    other = scan_upload(user=doctor_a, files=[upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]).scan
    response = client_a.get(reverse("scans:download_file", args=[scan.pk, other.files.get().pk]))
    assert response.status_code == 404


def test_slice_images_8_and_16_bit(client_a, flair_scan_of):
    scan = flair_scan_of()
    r8 = client_a.get(reverse("scans:slice_image", args=[scan.pk, 1]))
    r16 = client_a.get(reverse("scans:slice_image16", args=[scan.pk, 1]))
    assert r8["Content-Type"] == r16["Content-Type"] == "image/png"
    img8 = Image.open(io.BytesIO(b"".join(r8.streaming_content)))
    img16 = Image.open(io.BytesIO(b"".join(r16.streaming_content)))
    assert img8.mode == "L" and img16.mode.startswith("I")
    assert client_a.get(reverse("scans:slice_image", args=[scan.pk, 3])).status_code == 404


# --- Permission matrix --------------------------------------------------------------------------------

PAGES = [
    ("scans:list", False),
    ("scans:upload", False),
    ("scans:detail", True),
    ("scans:download_original", True),
    ("scans:download_file", True),
    ("scans:slice_image", True),
    ("scans:slice_image16", True),
]


def _page_url(name, scan):
    if name == "scans:download_file":
        return reverse(name, args=[scan.pk, scan.files.first().pk])
    if name.startswith("scans:slice_image"):
        return reverse(name, args=[scan.pk, 0])
    return reverse(name, args=[scan.pk]) if name not in ("scans:list", "scans:upload") else reverse(name)


@pytest.mark.parametrize("name,per_scan", PAGES, ids=[p[0] for p in PAGES])
@pytest.mark.parametrize("actor,expected", [("anonymous", 302), ("doctor_a", 200), ("doctor_b", 404),
                                            ("admin", 200)])
def test_page_permission_matrix(name, per_scan, actor, expected, flair_scan_of, client, client_a, client_b,
                                client_admin):
    scan = flair_scan_of()  # owned by doctor_a
    http = {"anonymous": client, "doctor_a": client_a, "doctor_b": client_b, "admin": client_admin}[actor]
    response = http.get(_page_url(name, scan))
    if not per_scan and actor == "doctor_b":
        expected = 200  # their own (empty) list and the upload form
    assert response.status_code == expected
    if expected == 302:
        assert response["Location"].startswith(reverse("accounts:login"))
    if name == "scans:list" and actor == "doctor_b":
        assert scan.original_name not in _text(response)
    if name == "scans:list" and actor in ("doctor_a", "admin"):
        assert scan.original_name in _text(response)


def test_anonymous_cannot_upload(client, assert_nothing_stored):
    response = client.post(reverse("scans:upload"), {"files": [upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]})
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
    assert_nothing_stored()


def test_a_deactivated_doctor_sees_nothing(flair_scan_of, doctor_a, client_a):
    scan = flair_scan_of()
    doctor_a.is_active = False
    doctor_a.save()
    response = client_a.get(reverse("scans:detail", args=[scan.pk]))
    assert response.status_code in (302, 404)


def test_on_object_storage_downloads_redirect_to_short_lived_signed_urls(client_a, client_b, flair_scan_of,
                                                                         settings):
    """With S3 storage (django-storages, as settings.py configures it for S3_BUCKET) the original and the slices
    are not streamed: the view checks ownership and redirects to a pre-signed URL (signed offline by boto3)."""
    from urllib.parse import parse_qs, urlparse

    scan = flair_scan_of()
    scan_file = scan.files.first()
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": "portal-media", "endpoint_url": "https://s3.example.org", "region_name": "eu-west-1",
                    "access_key": "AKIAEXAMPLE", "secret_key": "example-secret", "default_acl": "private",
                    "querystring_auth": True, "querystring_expire": 300, "file_overwrite": False,
                    "signature_version": "s3v4", "addressing_style": "path"},
    }}
    response = client_a.get(reverse("scans:download_file", args=[scan.pk, scan_file.pk]))
    assert response.status_code == 302
    url = urlparse(response["Location"])
    query = parse_qs(url.query)
    assert url.netloc == "s3.example.org" and url.path == f"/portal-media/{scan_file.file.name}"
    assert query["X-Amz-Expires"] == ["300"] and query["X-Amz-Signature"]
    assert query["response-content-disposition"] == [f'attachment; filename="{scan_file.original_name}"']
    assert "no-store" in response["Cache-Control"]

    image = client_a.get(reverse("scans:slice_image", args=[scan.pk, 0]))
    assert image.status_code == 302 and "X-Amz-Signature=" in image["Location"]
    assert AuditEvent.objects.filter(action="scan.original_downloaded").count() == 1
    # Another doctor still gets a 404, not a signed URL.
    assert client_b.get(reverse("scans:download_file", args=[scan.pk, scan_file.pk])).status_code == 404


def test_detail_warns_when_the_scans_noise_is_outside_the_detectors_range(client_a, doctor_a, flair_scan_of):
    from scans.services import scan_upload

    from .scanfiles import lgg_slice, png_bytes

    flair = flair_scan_of()  # a real hospital's FLAIR series, as exported: within the range
    assert flair.metadata["input_check"]["within"] is True
    page = _text(client_a.get(reverse("scans:detail", args=[flair.pk])))
    assert "data-input-warning" not in page and "(within the detector's range)" in page

    rng = np.random.default_rng(0)  # the same kind of slice with noise of sigma 3 grey levels added
    noisy = np.clip(lgg_slice().astype(float) + rng.normal(0, 3, lgg_slice().shape), 0, 255).round().astype(np.uint8)
    scan = scan_upload(user=doctor_a, files=[upload("noisy.png", png_bytes(noisy))]).scan
    check = scan.metadata["input_check"]
    assert (check["within"], check["outside"], check["slices_measured"]) == (False, ["noise"], 1)
    page = html.unescape(_text(client_a.get(reverse("scans:detail", args=[scan.pk]))))
    assert "data-input-warning" in page and "Input outside the detector's range:" in page
    assert "do not rely on its verdict" in page


def test_detail_gives_the_scan_scores_in_words_most_probable_first(client_a, doctor_a):
    scan = _bare_scan(doctor_a, "close-call.dcm")
    _finished_job(scan, "real_tumor", confidence=0.527, scores={
        "real_tumor": 0.527, "no_tumor": 0.0, "fake_added": 0.463, "fake_removed": 0.010})
    page = _text(client_a.get(reverse("scans:detail", args=[scan.pk])))
    assert "Real tumor 52.7% · Fake added 46.3% · Fake removed 1% · No tumor 0%" in page
    assert "confidence 52.7%" in page and "real_tumor 0.527" not in page


def test_detail_says_how_to_read_the_confidence_from_the_measured_evaluation(client_a, doctor_a, settings, tmp_path):
    """The guide quotes the installed model's evaluation (its confidence figures), and only for a verdict that
    model gave; without measured figures, or for another model's verdict, it says nothing."""
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from reports.services import evaluation_run_record
    from tests.reports.conftest import metrics_from_confusion
    from tests.reports.test_evaluation import _confidence

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=5)
    settings.DETECTOR_WEIGHTS = str(weights)
    sha = file_sha256(weights)
    metrics = metrics_from_confusion(np.eye(4, dtype=int) * 3, version="0.0.0+random.seed5", sha=sha)
    scan = _bare_scan(doctor_a, "one.png")
    _finished_job(scan, "real_tumor", model_sha256=sha)
    url = reverse("scans:detail", args=[scan.pk])

    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test")  # no confidence figures
    assert 'id="confidence-guide"' not in _text(client_a.get(url))

    evaluation_run_record(metrics=metrics, dataset_dir="d", out_dir="o", split="test", confidence=_confidence())
    page = _text(client_a.get(url))
    guide = page[page.index('id="confidence-guide"'):]
    guide = " ".join(guide[:guide.index("</p>")].split())
    # the fixture: at >= 0.9 half the slices, half of them right; under 0.7 two slices, both right
    assert ("Reading the confidence: When model 0.0.0+random.seed5 said a verdict at 90 % or more (50 % of the 4 "
            "slices of its test evaluation), it was right 50 % of the time; under 70 % (2 slices), 100 %.") in guide

    other = _bare_scan(doctor_a, "two.png")
    _finished_job(other, "no_tumor", model_sha256="cd" * 32)  # given by another model
    assert 'id="confidence-guide"' not in _text(client_a.get(reverse("scans:detail", args=[other.pk])))


def test_detail_carries_what_each_verdict_has_meant_for_the_viewer(client_a, doctor_a, settings, tmp_path):
    """The page hands viewer.js each verdict's reading from the installed model's evaluation (its confusion matrix),
    for the slice panel; for another model's job it hands nothing."""
    import json

    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from reports.services import evaluation_run_record
    from tests.reports.conftest import metrics_from_confusion

    weights = save_random_bundle(tmp_path / "w.pt", backbone="tiny", seed=5)
    settings.DETECTOR_WEIGHTS = str(weights)
    sha = file_sha256(weights)
    matrix = np.array([[5, 1, 0, 0], [0, 6, 0, 0], [0, 0, 4, 0], [0, 0, 0, 2]])
    evaluation_run_record(metrics=metrics_from_confusion(matrix, version="0.0.0+random.seed5", sha=sha),
                          dataset_dir="d", out_dir="o", split="test")
    scan = _bare_scan(doctor_a, "one.png")
    _finished_job(scan, "real_tumor", model_sha256=sha)

    def guides(page: str) -> dict:
        start = page.index('<script id="verdict-guides" type="application/json">') + len(
            '<script id="verdict-guides" type="application/json">')
        return json.loads(page[start:page.index("</script>", start)])

    shown = guides(_text(client_a.get(reverse("scans:detail", args=[scan.pk]))))
    assert sorted(shown) == ["fake_added", "fake_removed", "no_tumor", "real_tumor"]
    assert shown["no_tumor"] == ("When model 0.0.0+random.seed5 read a slice as No tumor in its test evaluation "
                                 "(7 slices), it was right 6 times (86 %); the other 1 was Real tumor (1).")
    assert "data-slice-verdict-guide" in _text(client_a.get(reverse("scans:detail", args=[scan.pk])))

    other = _bare_scan(doctor_a, "two.png")
    _finished_job(other, "no_tumor", model_sha256="cd" * 32)  # given by another model
    assert guides(_text(client_a.get(reverse("scans:detail", args=[other.pk])))) == {}
