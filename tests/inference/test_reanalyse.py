"""Analysing a scan again when a newer model is installed: offered only then, queues a new job that the real
service runs, keeps the earlier job, its results and its review; refused (nothing queued) otherwise."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from audit import actions
from audit.models import AuditEvent
from inference import services
from inference.ml.predictor import file_sha256
from inference.models import InferenceJob
from reviews.services import review_record
from tests.reports.conftest import report_pdf_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def analysed_by_old_model(detector, doctor_a, upload_scan):
    scan, job = upload_scan(doctor_a, indices=(9, 10))
    services.job_run(job_id=job.pk)  # what the worker does
    job.refresh_from_db()
    assert job.status == InferenceJob.Status.SUCCEEDED and job.model_sha256 == file_sha256(detector)
    return scan, job


def test_a_newer_model_is_offered_and_the_new_analysis_keeps_the_old_one(
        settings, analysed_by_old_model, regions_bundle, client_a, doctor_a):
    scan, old = analysed_by_old_model
    page = lambda: client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()  # noqa: E731
    assert "A newer model is installed" not in page()  # the installed model made this result
    refused = client_a.post(reverse("inference:scan-reanalyse", args=[scan.pk]), follow=True)
    assert "analysing it again would give the same result" in refused.content.decode()
    assert scan.jobs.count() == 1

    review_record(scan=scan, job_id=old.pk, verdict=old.verdict, reviewer=doctor_a)
    settings.DETECTOR_WEIGHTS = str(regions_bundle)  # a new model is installed
    html = page()
    assert "A newer model is installed" in html and "This result and its review stay" in html

    response = client_a.post(reverse("inference:scan-reanalyse", args=[scan.pk]))
    assert response.status_code == 302
    new = scan.jobs.order_by("-id").first()
    assert new.pk != old.pk and new.status == InferenceJob.Status.QUEUED and new.requested_by == doctor_a
    event = AuditEvent.objects.filter(action=actions.JOB_QUEUED, object_id=str(new.pk)).get()
    assert event.details["reanalysis_of"] == old.pk
    assert event.details["previous_model_sha256"] == old.model_sha256
    assert event.details["model_sha256"] == file_sha256(regions_bundle)

    html = page()
    assert "Earlier analyses (1)" in html and f"Job #{old.pk}" in html
    assert "A review can be recorded once the analysis has finished." in html
    assert f"of analysis #{old.pk}, an earlier one" in html
    again = client_a.post(reverse("inference:scan-reanalyse", args=[scan.pk]), follow=True)
    assert f"already queued (job #{new.pk})" in again.content.decode()

    services.job_run(job_id=new.pk)
    new.refresh_from_db()
    assert new.status == InferenceJob.Status.SUCCEEDED and new.model_sha256 == file_sha256(regions_bundle)
    old.refresh_from_db()
    assert old.status == InferenceJob.Status.SUCCEEDED and old.slice_results.count() == 2  # kept
    html = page()
    assert "A newer model is installed" not in html and "Not reviewed yet." in html


def test_the_api_queues_a_reanalysis_or_says_why_not(settings, analysed_by_old_model, regions_bundle, doctor_a,
                                                     doctor_b):
    from rest_framework.authtoken.models import Token

    scan, old = analysed_by_old_model
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=doctor_a).key}")
    url = reverse("api-scan-reanalyse", args=[scan.pk])
    response = api.post(url)
    assert response.status_code == 409 and "same result" in response.json()["detail"]

    settings.DETECTOR_WEIGHTS = str(regions_bundle)
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=doctor_b).key}")
    assert other.post(url).status_code == 404
    response = api.post(url)
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert response.json()["id"] == scan.jobs.order_by("-id").first().pk != old.pk
    assert api.post(url).status_code == 409

    InferenceJob.objects.filter(pk=response.json()["id"]).update(status=InferenceJob.Status.FAILED)
    response = api.post(url)
    assert response.status_code == 409 and "retry it instead" in response.json()["detail"]

    settings.DETECTOR_WEIGHTS = str(regions_bundle) + ".missing"
    InferenceJob.objects.filter(pk=scan.jobs.order_by("-id").first().pk).delete()
    response = api.post(url)
    assert response.status_code == 409 and "No detector weights" in response.json()["detail"]
    assert scan.jobs.count() == 1


def test_the_scan_page_says_when_the_new_analysis_reads_the_scan_differently(client_a, doctor_a):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from scans.services import scan_upload
    from tests.reports.conftest import brainix_paths, store_analysis

    files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in brainix_paths((9,))]
    scan = scan_upload(user=doctor_a, files=files).scan  # its job is queued; store_analysis finishes it
    old = store_analysis(scan, verdicts={0: "fake_added"}, regions={}, scan_verdict="fake_added",
                         model=("m", "0.8.0", "ab" * 32)).job
    page = lambda: client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()  # noqa: E731
    assert "read this scan differently" not in page()

    new = InferenceJob.objects.create(scan=scan, requested_by=doctor_a)
    assert "read this scan differently" not in page()  # not finished yet
    store_analysis(scan, verdicts={0: "real_tumor"}, regions={}, scan_verdict="real_tumor",
                   model=("m", "0.9.0", "cd" * 32))
    html = page()
    assert "The earlier analysis read this scan differently:" in html
    assert f"job #{old.pk} (m\n        0.8.0) said Fake added (83%);" in html and "this one (0.9.0) says Real tumor" in html
    assert new.pk != old.pk
    # the PDF report says it too
    text = report_pdf_text(client_a, scan.pk)
    assert (f"The earlier analysis read this scan differently: job #{old.pk} (m 0.8.0) said Fake added; this one "
            "(0.9.0) says Real tumor.") in text


def test_a_new_scan_rule_for_the_same_weights_is_offered_and_recorded(settings, tmp_path, random_bundle, doctor_a,
                                                                       client_a, upload_scan):
    import json
    import shutil

    from inference.ml.scan_rule import scan_rule_path

    weights = shutil.copy(random_bundle, tmp_path / "detector.pt")
    settings.DETECTOR_WEIGHTS = str(weights)
    settings.DETECTOR_DEVICE = "cpu"
    scan, old = upload_scan(doctor_a, indices=(9, 10))
    old = services.job_run(job_id=old.pk)
    assert old.status == InferenceJob.Status.SUCCEEDED and old.scan_rule == {}  # the max rule
    page = lambda: client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()  # noqa: E731
    assert "data-reanalyse" not in page()

    # a rule is chosen for these weights (evaluate_series --save-rule): the scan may be read again under it
    scan_rule_path(weights).write_text(json.dumps({"model_sha256": file_sha256(weights),
                                                   "rule": {"threshold": 0.9, "min_slices": 2}, "chosen_on": "val"}))
    html = page()
    assert "A new scan rule is installed." in html and "A newer model is installed" not in html
    assert ("rises with its 2nd-highest slice tamper score, passing 50% at 90%"
            in html.replace("&#x27;", "'"))
    assert "Analyse again under the new rule" in html
    response = client_a.post(reverse("inference:scan-reanalyse", args=[scan.pk]))
    assert response.status_code == 302
    new = scan.jobs.order_by("-id").first()
    event = AuditEvent.objects.filter(action=actions.JOB_QUEUED, object_id=str(new.pk)).get()
    assert event.details["previous_scan_rule"] == {} and \
        event.details["scan_rule"] == {"threshold": 0.9, "min_slices": 2, "slope": 1.0}
    new = services.job_run(job_id=new.pk)
    assert new.scan_rule == {"threshold": 0.9, "min_slices": 2, "slope": 1.0, "chosen_on": "val"}
    # the same slices, read by the same weights: only the way they become a scan verdict changed
    assert [r.scores for r in new.slice_results.order_by("index")] == \
        [r.scores for r in old.slice_results.order_by("index")]
    assert "data-reanalyse" not in page()
    refused = client_a.post(reverse("inference:scan-reanalyse", args=[scan.pk]), follow=True)
    assert "analysing it again would give the same result" in refused.content.decode()

    # a rule file chosen for other weights is not in force: the worker would now use the max rule, which this
    # scan's newest analysis did not, so reading it again is offered
    scan_rule_path(weights).write_text(json.dumps({"model_sha256": "0" * 64, "rule": {"threshold": 0.9,
                                                                                     "min_slices": 2}}))
    assert "A new scan rule is installed." in page()
