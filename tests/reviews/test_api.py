"""The reviews API: /api/scans/<id>/reviews/ (list, record), the scan list's latest_review and review filter."""
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from inference.models import InferenceJob
from reviews.models import Review
from reviews.services import review_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_a(doctor_a):
    from rest_framework.authtoken.models import Token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=doctor_a).key}")
    return client


def _url(scan):
    return reverse("api-scan-reviews", args=[scan.pk])


def test_record_and_list_reviews(api_a, analysed, doctor_a):
    scan, job = analysed.scan, analysed.job
    assert api_a.get(_url(scan)).json() == []
    response = api_a.post(_url(scan), {"job": job.pk, "verdict": "fake_added"}, format="json")
    assert response.status_code == 201
    first = response.json()
    assert {k: first[k] for k in ("job", "reviewer", "verdict", "detector_verdict", "agrees", "note", "current")} == {
        "job": job.pk, "reviewer": "doctor_a", "verdict": "fake_added", "detector_verdict": "fake_added",
        "agrees": True, "note": "", "current": True}

    second = api_a.post(_url(scan), {"job": job.pk, "verdict": "real_tumor", "note": "rim"}, format="json").json()
    listed = api_a.get(_url(scan)).json()
    assert [r["id"] for r in listed] == [second["id"], first["id"]]
    assert [r["current"] for r in listed] == [True, False] and listed[0]["agrees"] is False

    scans = api_a.get(reverse("api-scan-list")).json()["results"]
    assert scans[0]["latest_review"] == {"id": second["id"], "verdict": "real_tumor", "agrees": False}
    assert [s["id"] for s in api_a.get(reverse("api-scan-list"), {"review": "overruled"}).json()["results"]] == [scan.pk]
    assert api_a.get(reverse("api-scan-list"), {"review": "confirmed"}).json()["results"] == []


def test_bad_reviews_are_400_or_409_with_a_reason_and_store_nothing(api_a, analysed, doctor_a):
    scan, job = analysed.scan, analysed.job
    response = api_a.post(_url(scan), {"job": job.pk, "verdict": "maybe"}, format="json")
    assert response.status_code == 400 and response.json()["error"] == "Invalid review."
    assert "verdict" in response.json()["detail"]
    response = api_a.post(_url(scan), {"verdict": "fake_added"}, format="json")
    assert response.status_code == 400 and "job" in response.json()["detail"]
    response = api_a.post(_url(scan), {"job": job.pk, "verdict": "no_tumor"}, format="json")
    assert response.status_code == 400 and "say why in the note" in response.json()["error"]
    assert response.json()["detail"]["note"][0]["message"] == response.json()["error"]

    InferenceJob.objects.create(scan=scan, requested_by=doctor_a)
    response = api_a.post(_url(scan), {"job": job.pk, "verdict": "fake_added"}, format="json")
    assert response.status_code == 409 and "Reload the scan page" in response.json()["error"]
    assert Review.objects.count() == 0


def test_another_doctors_scan_is_404_and_anonymous_403(analysed, doctor_b):
    from rest_framework.authtoken.models import Token

    review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict="fake_added", reviewer=analysed.scan.owner)
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=doctor_b).key}")
    assert other.get(_url(analysed.scan)).status_code == 404
    response = other.post(_url(analysed.scan), {"job": analysed.job.pk, "verdict": "fake_added"}, format="json")
    assert response.status_code == 404 and response.json()["error"]
    assert APIClient().get(_url(analysed.scan)).status_code == 403
    assert Review.objects.count() == 1


def test_the_schema_documents_the_reviews_api(api_a):
    schema = api_a.get(reverse("api-schema"), {"format": "json"}).json()
    path = schema["paths"]["/api/scans/{id}/reviews/"]
    assert set(path) >= {"get", "post"} and "409" in path["post"]["responses"]
    params = {p["name"] for p in schema["paths"]["/api/scans/"]["get"]["parameters"]}
    assert "review" in params


def test_the_browsable_api_offers_a_review_form(client_a, analysed):
    html = client_a.get(reverse("api-scan-reviews", args=[analysed.scan.pk]), HTTP_ACCEPT="text/html").content.decode()
    assert 'name="verdict"' in html and 'name="note"' in html and 'name="job"' in html
