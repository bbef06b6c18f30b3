"""Permission matrix (anonymous, doctor A the owner, doctor B, admin) for the scan page, job API, results, mask
downloads and retry, plus what each returns. Real database, real detector code (random tiny weights)."""
import io
import zipfile

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from audit.models import AuditEvent
from inference import services
from inference.models import InferenceJob, SliceResult

pytestmark = pytest.mark.django_db

Status = InferenceJob.Status


@pytest.fixture
def finished(doctor_a, detector_with_regions, upload_scan):
    """Doctor A's one-slice scan, analysed, with a mask on its slice."""
    scan, job = upload_scan(doctor_a, indices=(10,))
    job = services.job_run(job_id=job.pk)
    assert job.status == Status.SUCCEEDED, job.error_message
    result = job.slice_results.get()
    assert result.mask, "the regions bundle shows a region"
    return scan, job, result


@pytest.fixture
def failed(doctor_a, settings, tmp_path, upload_scan):
    settings.DETECTOR_WEIGHTS = str(tmp_path / "missing.pt")
    scan, job = upload_scan(doctor_a, indices=(11,))
    job = services.job_run(job_id=job.pk)
    assert job.status == Status.FAILED
    return scan, job


@pytest.fixture
def clients(client_a, client_b, client_admin):
    return {"anonymous": Client(), "doctor_a": client_a, "doctor_b": client_b, "admin": client_admin}


VISIBLE = {"anonymous": False, "doctor_a": True, "doctor_b": False, "admin": True}


def _page_status(who):
    return {"anonymous": 302, "doctor_a": 200, "doctor_b": 404, "admin": 200}[who]


def _api_status(who, ok=200):
    return {"anonymous": 403, "doctor_a": ok, "doctor_b": 404, "admin": ok}[who]


def test_scan_page(clients, finished):
    scan, job, result = finished
    for who in VISIBLE:
        response = clients[who].get(reverse("scans:detail", args=[scan.pk]))
        assert response.status_code == _page_status(who)
        if response.status_code == 302:
            assert reverse("accounts:login") in response["Location"]
        if response.status_code == 200:
            html = response.content.decode()
            assert f'data-latest-job-url="/api/scans/{scan.pk}/latest-job/"' in html
            assert 'data-status="succeeded"' in html
            assert job.get_verdict_display() in html
            assert reverse("inference:masks-zip", args=[job.pk]) in html
            assert "js/viewer.js" in html


def test_scan_page_links_reports_and_shows_access_history_to_admins_only(clients, finished):
    scan, job, result = finished
    pages = {who: clients[who].get(reverse("scans:detail", args=[scan.pk])).content.decode() for who in ("doctor_a", "admin")}
    for html in pages.values():
        for name in ("reports:scan_pdf", "reports:scan_csv", "reports:scan_seg"):  # BRAINIX is DICOM: SEG offered
            assert reverse(name, args=[scan.pk]) in html
    history = reverse("audit:scan_history", args=[scan.pk])
    assert history in pages["admin"]
    assert history not in pages["doctor_a"]


def test_job_api(clients, finished):
    scan, job, result = finished
    for who in VISIBLE:
        for url in (reverse("api-job-detail", args=[job.pk]), reverse("api-scan-latest-job", args=[scan.pk])):
            response = clients[who].get(url)
            assert response.status_code == _api_status(who), (who, url)
            if response.status_code == 200:
                data = response.json()
                assert data["id"] == job.pk and data["scan"] == scan.pk
                assert data["status"] == "succeeded"
                assert data["progress"] == {"done": 1, "total": 1, "fraction": 1.0}
                assert data["verdict"] == job.verdict and data["confidence"] == pytest.approx(job.confidence)
                assert data["model"]["sha256"] == job.model_sha256
                assert data["can_retry"] is False
                assert data["links"]["results"] == reverse("api-job-results", args=[job.pk])


def test_results_api(clients, finished):
    scan, job, result = finished
    for who in VISIBLE:
        response = clients[who].get(reverse("api-job-results", args=[job.pk]))
        assert response.status_code == _api_status(who)
        if response.status_code == 200:
            data = response.json()
            assert data["count"] == 1
            [item] = data["results"]
            assert item["index"] == 0 and item["verdict"] == result.verdict
            assert item["mask_url"] == reverse("inference:mask", args=[result.pk])
            assert len(item["instances"]) == result.instances.count() > 0
            for inst in item["instances"]:
                assert inst["mask_rle"]["size"] == [scan.height, scan.width]
                assert isinstance(inst["mask_rle"]["counts"], str) and len(inst["box"]) == 4
            viewed = AuditEvent.objects.filter(action="result.viewed", object_id=str(job.pk))
            assert viewed.filter(actor_id=response.wsgi_request.user.pk).count() == 1


def test_mask_download(clients, finished):
    scan, job, result = finished
    for who in VISIBLE:
        downloads_before = AuditEvent.objects.filter(action="result.mask_downloaded").count()
        response = clients[who].get(reverse("inference:mask", args=[result.pk]) + "?download=1")
        assert response.status_code == _page_status(who)
        if response.status_code == 200:
            assert response["Content-Type"] == "image/png"
            assert "attachment" in response["Content-Disposition"]
            label_map = np.asarray(Image.open(io.BytesIO(b"".join(response.streaming_content))))
            assert label_map.shape == (scan.height, scan.width)
            assert set(np.unique(label_map)) <= {0, 1, 2, 3} and label_map.any()
            event = AuditEvent.objects.filter(action="result.mask_downloaded").latest("seq")
            assert event.actor_id == response.wsgi_request.user.pk
            assert event.details["slice_index"] == 0 and event.details["scan_id"] == scan.pk
        else:
            assert AuditEvent.objects.filter(action="result.mask_downloaded").count() == downloads_before


def test_masks_zip(clients, finished):
    scan, job, result = finished
    for who in VISIBLE:
        response = clients[who].get(reverse("inference:masks-zip", args=[job.pk]))
        assert response.status_code == _page_status(who)
        if response.status_code == 200:
            archive = zipfile.ZipFile(io.BytesIO(response.content))
            assert sorted(archive.namelist()) == ["README.txt", "slice-0000.png"]
            with result.mask.open("rb") as fh:
                assert archive.read("slice-0000.png") == fh.read()


@pytest.mark.parametrize("who", list(VISIBLE))
def test_retry_page_action(who, clients, failed):
    scan, job = failed
    url = reverse("inference:job-retry", args=[job.pk])
    response = clients[who].post(url)
    job.refresh_from_db()
    if who == "anonymous":
        assert response.status_code == 302 and reverse("accounts:login") in response["Location"]
        assert job.status == Status.FAILED
    elif who == "doctor_b":
        assert response.status_code == 404 and job.status == Status.FAILED
    else:
        assert response.status_code == 302 and response["Location"] == reverse("scans:detail", args=[scan.pk])
        assert job.status == Status.QUEUED and job.error_message == ""
        assert AuditEvent.objects.filter(action="job.retried", object_id=str(job.pk)).get().actor_id == (
            response.wsgi_request.user.pk
        )


@pytest.mark.parametrize("who", list(VISIBLE))
def test_retry_api(who, clients, failed):
    scan, job = failed
    response = clients[who].post(reverse("api-job-retry", args=[job.pk]))
    assert response.status_code == _api_status(who, ok=202)
    job.refresh_from_db()
    assert job.status == (Status.QUEUED if VISIBLE[who] else Status.FAILED)
    if response.status_code == 202:
        assert response.json()["status"] == "queued"
        again = clients[who].post(reverse("api-job-retry", args=[job.pk]))
        assert again.status_code == 409


def test_failed_job_shows_its_error_and_a_retry_form(client_a, failed):
    scan, job = failed
    html = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert "The job failed." in html
    assert "does not exist" in html  # ModelNotInstalled's message, escaped into the page
    assert f'action="{reverse("inference:job-retry", args=[job.pk])}"' in html
    assert "csrfmiddlewaretoken" in html
    api = client_a.get(reverse("api-job-detail", args=[job.pk])).json()
    assert api["status"] == "failed" and api["can_retry"] is True and api["error_message"] == job.error_message


def test_retry_requires_post_and_a_csrf_token(doctor_a, failed):
    scan, job = failed
    url = reverse("inference:job-retry", args=[job.pk])
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(doctor_a)
    assert strict.get(url).status_code == 405
    assert strict.post(url).status_code == 403
    assert strict.post(reverse("api-job-retry", args=[job.pk])).status_code == 403  # session auth needs CSRF too
    job.refresh_from_db()
    assert job.status == Status.FAILED


def test_a_stale_running_job_reads_as_failed_through_the_api(client_a, doctor_a, detector, upload_scan):
    from datetime import timedelta

    from django.utils import timezone

    scan, job = upload_scan(doctor_a, indices=(12,))
    services._claim(job.pk)
    InferenceJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    data = client_a.get(reverse("api-scan-latest-job", args=[scan.pk])).json()
    assert data["status"] == "failed" and data["can_retry"] is True
    assert data["error_message"].startswith("The worker running this job stopped")


def test_a_slice_without_a_region_has_no_mask_download(client_a, doctor_a, detector, upload_scan):
    scan, job = upload_scan(doctor_a, indices=(13,))
    services.job_run(job_id=job.pk)
    result = SliceResult.objects.get(job=job)
    # The untrained calibration of the random bundle shows no region (verdict no_tumor).
    assert result.verdict == "no_tumor" and not result.instances.exists() and not result.mask
    assert client_a.get(reverse("inference:mask", args=[result.pk])).status_code == 404
    item = client_a.get(reverse("api-job-results", args=[job.pk])).json()["results"][0]
    assert item["mask_url"] is None and item["instances"] == []


def test_openapi_schema_describes_the_job_endpoints(client_a):
    response = client_a.get(reverse("api-schema") + "?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/jobs/{job_id}/", "/api/jobs/{job_id}/results/", "/api/jobs/{job_id}/retry/",
                 "/api/scans/{scan_id}/latest-job/"):
        assert path in paths
    retry = paths["/api/jobs/{job_id}/retry/"]["post"]["responses"]
    assert {"202", "404", "409"} <= set(retry)
    schemas = response.json()["components"]["schemas"]
    readings = schemas["Job"]["properties"]["verdict_readings"]
    assert readings["type"] == "array" and readings["items"]["$ref"].endswith("/VerdictReading")
    assert {"verdict", "said", "right", "precision", "others", "text"} <= set(schemas["VerdictReading"]["properties"])


def test_job_api_gives_what_each_verdict_has_meant_once_measured(client_a, finished, detector_with_regions):
    """verdict_readings: from the installed model's measured evaluation (its confusion matrix), only for a job
    those weights finished; nothing measured, nothing said."""
    from inference.ml.predictor import file_sha256
    from reports.services import evaluation_run_record
    from tests.reports.conftest import metrics_from_confusion

    scan, job, _ = finished
    url = reverse("api-job-detail", args=[job.pk])
    assert client_a.get(url).json()["verdict_readings"] == []  # no evaluation recorded

    sha = file_sha256(detector_with_regions)
    assert job.model_sha256 == sha
    matrix = np.array([[8, 1, 1, 0], [3, 20, 0, 0], [0, 2, 9, 0], [0, 0, 0, 0]])  # rows truth, columns said
    evaluation_run_record(metrics=metrics_from_confusion(matrix, version="4.0.0", sha=sha),
                          dataset_dir="d", out_dir="o", split="test")
    readings = {r["verdict"]: r for r in client_a.get(url).json()["verdict_readings"]}
    assert sorted(readings) == ["fake_added", "no_tumor", "real_tumor"]  # fake_removed never said
    assert readings["no_tumor"] == {
        "verdict": "no_tumor", "evaluation_split": "test", "said": 23, "right": 20, "precision": 0.8696,
        "others": {"fake_added": 2, "real_tumor": 1},
        "text": "When model 4.0.0 read a slice as No tumor in its test evaluation (23 slices), it was right 20 times "
                "(87 %); the other 3 were Fake added (2), Real tumor (1).",
    }
    assert client_a.get(reverse("api-scan-latest-job", args=[scan.pk])).json()["verdict_readings"] == list(
        readings.values())

    job.model_sha256 = "ef" * 32  # a job finished by other weights
    job.save(update_fields=["model_sha256"])
    assert client_a.get(url).json()["verdict_readings"] == []
    job.model_sha256, job.status = sha, Status.RUNNING  # not finished: nothing to read yet
    job.save(update_fields=["model_sha256", "status"])
    assert client_a.get(url).json()["verdict_readings"] == []
