"""The scans API: upload, list, detail, slices, originals; 400 {"error", "detail"} for bad input; 404 for
other doctors' scans; the OpenAPI schema."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.models import AuditEvent
from inference.models import InferenceJob, SliceResult
from scans.models import Scan

from .scanfiles import BRAINIX, SAMPLE_FLAIR, SAMPLE_TIFF, bad_input_params, brainix_series, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_a(doctor_a):
    client = APIClient()
    client.force_authenticate(doctor_a)
    return client


@pytest.fixture
def api_b(doctor_b):
    client = APIClient()
    client.force_authenticate(doctor_b)
    return client


@pytest.fixture
def api_admin(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def _post(client, files):
    return client.post(reverse("api-scan-list"), {"files": files}, format="multipart")


def test_upload_series_returns_the_scan(api_a, doctor_a):
    files = [upload(p.name, p.read_bytes()) for p in brainix_series("FLAIR")]
    response = _post(api_a, files)

    assert response.status_code == 201, response.json()
    body = response.json()
    scan = Scan.objects.get(owner=doctor_a)
    assert body["created"] is True and "22 slices" in body["message"]
    assert body["scan"]["id"] == scan.pk and body["scan"]["n_slices"] == 22 and body["scan"]["kind"] == "dicom"
    assert body["scan"]["latest_job"]["status"] == "queued"
    assert len(body["scan"]["files"]) == 22
    assert body["scan"]["page_url"].endswith(reverse("scans:detail", args=[scan.pk]))


def test_upload_with_a_stated_sequence(api_a, assert_nothing_stored):
    from .scanfiles import SAMPLE_TIFF

    files = [upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]
    refused = api_a.post(reverse("api-scan-list"), {"files": files, "sequence": "dwi"}, format="multipart")
    assert refused.status_code == 400 and "Unknown sequence 'dwi'" in str(refused.json())
    assert_nothing_stored()

    files = [upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]
    response = api_a.post(reverse("api-scan-list"), {"files": files, "sequence": "t2"}, format="multipart")
    assert response.status_code == 201, response.json()
    check = response.json()["scan"]["metadata"]["sequence"]
    assert (check["sequence"], check["trained"]) == ("t2", False)
    assert "trained on FLAIR and T1 post-contrast only" in check["message"]


def test_upload_same_bytes_again_is_200_with_the_existing_scan(api_a):
    data = (BRAINIX / "NIfTI" / "FLAIR.nii.gz").read_bytes()
    first = _post(api_a, [upload("FLAIR.nii.gz", data)])
    again = _post(api_a, [upload("copy.nii.gz", data)])
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["created"] is False and again.json()["scan"]["id"] == first.json()["scan"]["id"]
    assert "uploaded this exact file before" in again.json()["message"]
    assert Scan.objects.count() == 1 and InferenceJob.objects.count() == 1


@pytest.mark.parametrize("bad", bad_input_params())
def test_bad_input_is_a_400_with_error_body(bad, api_a, apply_limits, assert_nothing_stored):
    apply_limits(bad)
    response = _post(api_a, [upload(n, d) for n, d in bad.files()])
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert bad.message in body["error"]
    assert_nothing_stored()


def test_per_file_errors_are_in_detail(api_a, assert_nothing_stored):
    response = _post(api_a, [upload("notes.txt", b"hello"), upload("empty.dcm", b"")])
    assert response.status_code == 400
    assert [e["file"] for e in response.json()["detail"]] == ["notes.txt", "empty.dcm"]
    assert_nothing_stored()


def test_body_over_the_limit_is_refused_unread(doctor_a, settings, assert_nothing_stored):
    settings.UPLOAD_MAX_BYTES = 1000
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(doctor_a)
    response = _post(client, [upload("big.dcm", b"\x00" * (1024 * 1024 + 2000))])
    assert response.status_code == 400
    assert response.json() == {"error": "The upload is over the limit of 1000 bytes.", "detail": {"limit_bytes": 1000}}
    assert_nothing_stored()


def test_too_many_files_is_a_400(api_a, settings, assert_nothing_stored):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    response = _post(api_a, [upload(p.name, p.read_bytes()) for p in SAMPLE_FLAIR])
    assert response.status_code == 400
    assert response.json()["error"].startswith("More than 2 files in one upload")
    assert_nothing_stored()


def test_json_instead_of_multipart_is_a_400(api_a):
    response = api_a.post(reverse("api-scan-list"), {"files": "x"}, format="json")
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]


def test_list_filters_and_pagination(api_a, doctor_a, doctor_b):
    import uuid

    def bare(owner, name):
        return Scan.objects.create(owner=owner, kind="image", original_name=name, sha256=uuid.uuid4().hex * 2,
                                   size_bytes=1, n_slices=1, width=64, height=64, pixel_dtype="uint8")

    removed = bare(doctor_a, "removed.png")
    job = InferenceJob.objects.create(scan=removed, status="succeeded", verdict="fake_removed", confidence=0.7)
    SliceResult.objects.create(job=job, index=0, verdict="fake_removed", confidence=0.7, tamper_score=0.8)
    old = bare(doctor_a, "old.png")
    Scan.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    for i in range(3):
        bare(doctor_a, f"extra-{i}.png")
    bare(doctor_b, "theirs.png")

    body = api_a.get(reverse("api-scan-list"), {"page_size": 2}).json()
    assert body["count"] == 5 and len(body["results"]) == 2 and body["next"]
    names = {s["original_name"] for s in api_a.get(reverse("api-scan-list")).json()["results"]}
    assert "theirs.png" not in names and len(names) == 5

    only = api_a.get(reverse("api-scan-list"), {"verdict": "fake_removed"}).json()["results"]
    assert [s["original_name"] for s in only] == ["removed.png"]
    assert only[0]["latest_job"]["verdict"] == "fake_removed" and only[0]["latest_job"]["confidence"] == 0.7
    assert only[0]["latest_job"]["tampered_slices"] == 1
    dated = api_a.get(reverse("api-scan-list"), {"date_to": str(timezone.localdate() - timedelta(days=5))}).json()
    assert [s["original_name"] for s in dated["results"]] == ["old.png"]


def test_list_search(api_a, doctor_a):
    import uuid

    def bare(name, **extra):
        return Scan.objects.create(owner=doctor_a, kind="image", original_name=name, sha256=uuid.uuid4().hex * 2,
                                   size_bytes=1, n_slices=1, width=64, height=64, pixel_dtype="uint8", **extra)

    bare("case-17.png")
    flair = bare("series.zip", metadata={"series_description": "AX FLAIR"})
    found = api_a.get(reverse("api-scan-list"), {"q": "flair"}).json()
    assert [s["id"] for s in found["results"]] == [flair.pk] and found["count"] == 1
    too_long = api_a.get(reverse("api-scan-list"), {"q": "x" * 101})
    assert too_long.status_code == 400 and "q" in too_long.json()["detail"]


def test_results_csv_bad_filter_is_a_400_from_the_api(api_a):
    response = api_a.get(reverse("api-results-csv"), {"verdict": "maybe"})
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid filter." and "verdict" in response.json()["detail"]


@pytest.mark.parametrize("params", [{"verdict": "maybe"}, {"date_from": "yesterday"},
                                    {"date_from": "2026-02-02", "date_to": "2026-01-01"}])
def test_bad_filter_is_a_400(api_a, params):
    response = api_a.get(reverse("api-scan-list"), params)
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid filter." and response.json()["detail"]


def test_detail_slices_and_images(api_a, flair_scan_of):
    scan = flair_scan_of()
    detail = api_a.get(reverse("api-scan-detail", args=[scan.pk])).json()
    assert detail["sha256"] == scan.sha256 and detail["metadata"]["modality"] == "MR"
    assert "BRAINIX" not in str(detail)
    assert detail["pixel_scale"] == 1.0 and detail["window_low"] < detail["window_high"]
    assert AuditEvent.objects.filter(action="scan.viewed", object_id=str(scan.pk)).count() == 1

    slices = api_a.get(detail["slices_url"]).json()
    assert [s["index"] for s in slices["results"]] == [0, 1, 2]
    image = api_a.get(slices["results"][2]["image_url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(b"".join(image.streaming_content))).size == (288, 288)
    image16 = api_a.get(slices["results"][2]["image16_url"])
    assert Image.open(io.BytesIO(b"".join(image16.streaming_content))).mode.startswith("I")
    bad_bits = api_a.get(reverse("api-scan-slice-image", args=[scan.pk, 0]), {"bits": "12"})
    assert bad_bits.status_code == 400 and "bits" in bad_bits.json()["error"]


def test_originals_download(api_a, doctor_a):
    from scans.services import scan_upload

    scan = scan_upload(user=doctor_a, files=[upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]).scan
    response = api_a.get(reverse("api-scan-original", args=[scan.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == SAMPLE_TIFF.read_bytes()
    file_url = api_a.get(reverse("api-scan-detail", args=[scan.pk])).json()["files"][0]["download_url"]
    assert b"".join(api_a.get(file_url).streaming_content) == SAMPLE_TIFF.read_bytes()
    assert AuditEvent.objects.filter(action="scan.original_downloaded").count() == 2


def test_token_authentication(doctor_a, flair_scan_of):
    scan = flair_scan_of()
    token = Token.objects.create(user=doctor_a)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(reverse("api-scan-detail", args=[scan.pk])).status_code == 200
    response = _post(client, [upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())])
    assert response.status_code == 201


def test_session_upload_needs_the_csrf_token(doctor_a, assert_nothing_stored):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(doctor_a)
    response = _post(client, [upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())])
    assert response.status_code == 403 and "CSRF" in response.json()["error"]
    assert_nothing_stored()


# --- Permission matrix ------------------------------------------------------------------------------

ENDPOINTS = ["api-scan-list", "api-scan-detail", "api-scan-slices", "api-scan-slice-image", "api-scan-original",
             "api-scan-file"]


def _url(name, scan):
    if name == "api-scan-list":
        return reverse(name)
    if name == "api-scan-slice-image":
        return reverse(name, args=[scan.pk, 0])
    if name == "api-scan-file":
        return reverse(name, args=[scan.pk, scan.files.first().pk])
    return reverse(name, args=[scan.pk])


@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize("actor,expected", [("anonymous", 403), ("doctor_a", 200), ("doctor_b", 404),
                                            ("admin", 200)])
def test_api_permission_matrix(name, actor, expected, flair_scan_of, api_a, api_b, api_admin):
    scan = flair_scan_of()  # owned by doctor_a
    client = {"anonymous": APIClient(), "doctor_a": api_a, "doctor_b": api_b, "admin": api_admin}[actor]
    response = client.get(_url(name, scan))
    if name == "api-scan-list" and actor == "doctor_b":
        assert response.status_code == 200 and response.json()["count"] == 0
        return
    assert response.status_code == expected
    if expected != 200:
        assert set(response.json()) == {"error", "detail"}
    if name == "api-scan-list" and expected == 200:
        assert [s["id"] for s in response.json()["results"]] == [scan.pk]


def test_anonymous_upload_is_refused(assert_nothing_stored):
    response = _post(APIClient(), [upload(SAMPLE_FLAIR[0].name, SAMPLE_FLAIR[0].read_bytes())])
    assert response.status_code == 403
    assert_nothing_stored()


def test_schema_describes_the_scans_api(client_a):
    import yaml

    schema = yaml.safe_load(client_a.get(reverse("api-schema")).content)
    paths = schema["paths"]
    upload_op = paths["/api/scans/"]["post"]
    assert "multipart/form-data" in upload_op["requestBody"]["content"]
    assert {"200", "201", "400"} <= set(upload_op["responses"])
    assert upload_op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert {p["name"] for p in paths["/api/scans/"]["get"]["parameters"]} >= {"verdict", "date_from", "date_to",
                                                                               "page"}
    for path in ("/api/scans/{id}/", "/api/scans/{id}/slices/", "/api/scans/{id}/original/",
                 "/api/scans/{id}/files/{file_id}/", "/api/scans/{id}/slices/{index}/image/"):
        assert "404" in paths[path]["get"]["responses"], path
