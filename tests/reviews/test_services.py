"""Recording reviews: what is stored, what is refused (and then nothing is stored), and that reviews never change."""
import pytest

from audit import actions
from audit.models import AuditEvent
from inference.models import InferenceJob
from reviews.models import Review, ReviewImmutable
from reviews.selectors import review_current_for_job, review_panel_for
from reviews.services import ReviewRejected, review_record

pytestmark = pytest.mark.django_db


def _nothing_stored():
    assert Review.objects.count() == 0
    assert not AuditEvent.objects.filter(action=actions.REVIEW_RECORDED).exists()


def test_confirming_the_detector_stores_the_review_and_audits_it(analysed, doctor_a):
    scan, job = analysed.scan, analysed.job
    review = review_record(scan=scan, job_id=job.pk, verdict="fake_added", reviewer=doctor_a)
    assert (review.scan, review.job, review.reviewer) == (scan, job, doctor_a)
    assert review.detector_verdict == "fake_added" and review.agrees and review.decision_label == "Confirmed"
    assert review.note == ""
    event = AuditEvent.objects.get(action=actions.REVIEW_RECORDED)
    assert (event.actor_username, event.object_type, event.object_id) == ("doctor_a", "scans.scan", str(scan.pk))
    assert event.details == {"review_id": review.pk, "scan_id": scan.pk, "job_id": job.pk, "verdict": "fake_added",
                             "detector_verdict": "fake_added", "agrees": True, "note_chars": 0}


def test_overruling_needs_a_note_and_stores_it_trimmed(analysed, doctor_a):
    scan, job = analysed.scan, analysed.job
    with pytest.raises(ReviewRejected) as exc:
        review_record(scan=scan, job_id=job.pk, verdict="no_tumor", note="   ", reviewer=doctor_a)
    assert exc.value.field == "note" and not exc.value.conflict
    assert "No tumor" in exc.value.message and "Fake added" in exc.value.message and "why" in exc.value.message
    _nothing_stored()

    review = review_record(scan=scan, job_id=job.pk, verdict="no_tumor", reviewer=doctor_a,
                           note="  Slice 2: vessel flow artefact, seen on the prior study.\n")
    assert not review.agrees and review.decision_label == "Overruled"
    assert review.note == "Slice 2: vessel flow artefact, seen on the prior study."
    assert AuditEvent.objects.get(action=actions.REVIEW_RECORDED).details["agrees"] is False


@pytest.mark.parametrize("verdict, note, field", [
    ("fake", "", "verdict"),
    ("", "", "verdict"),
    ("no_tumor", "x" * 2001, "note"),
])
def test_bad_input_is_refused_with_a_reason(analysed, doctor_a, verdict, note, field):
    with pytest.raises(ReviewRejected) as exc:
        review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict=verdict, note=note, reviewer=doctor_a)
    assert exc.value.field == field and not exc.value.conflict
    _nothing_stored()


def test_no_finished_analysis_is_a_conflict(doctor_a, upload_dicom):
    scan = upload_dicom(doctor_a)  # the upload queued a job; no worker ran it
    job = scan.jobs.get()
    assert job.status == InferenceJob.Status.QUEUED
    with pytest.raises(ReviewRejected) as exc:
        review_record(scan=scan, job_id=job.pk, verdict="no_tumor", note="n", reviewer=doctor_a)
    assert exc.value.conflict and "no finished analysis" in exc.value.message
    InferenceJob.objects.filter(pk=job.pk).update(status=InferenceJob.Status.FAILED, error_message="boom")
    with pytest.raises(ReviewRejected):
        review_record(scan=scan, job_id=job.pk, verdict="no_tumor", note="n", reviewer=doctor_a)
    _nothing_stored()


def test_a_review_of_an_analysis_that_is_no_longer_the_newest_is_a_conflict(analysed, doctor_a):
    scan, old = analysed.scan, analysed.job
    newer = InferenceJob.objects.create(scan=scan, requested_by=doctor_a)
    with pytest.raises(ReviewRejected) as exc:
        review_record(scan=scan, job_id=old.pk, verdict="fake_added", reviewer=doctor_a)
    assert exc.value.conflict and exc.value.field == "job"
    assert f"#{old.pk}" in exc.value.message and f"#{newer.pk}" in exc.value.message
    with pytest.raises(ReviewRejected):  # the newer one has not finished
        review_record(scan=scan, job_id=newer.pk, verdict="fake_added", reviewer=doctor_a)
    _nothing_stored()


def test_reviews_never_change_and_a_newer_one_supersedes(analysed, doctor_a, admin_user):
    scan, job = analysed.scan, analysed.job
    first = review_record(scan=scan, job_id=job.pk, verdict="fake_added", reviewer=doctor_a)
    first.verdict = "no_tumor"
    with pytest.raises(ReviewImmutable):
        first.save()
    with pytest.raises(ReviewImmutable):
        first.delete()
    assert Review.objects.get(pk=first.pk).verdict == "fake_added"

    second = review_record(scan=scan, job_id=job.pk, verdict="real_tumor", note="Enhancing rim, real lesion.",
                           reviewer=admin_user)
    assert review_current_for_job(job=job) == second
    panel = review_panel_for(scan=scan, job=job)
    assert panel.reviewable and panel.current == second and panel.history == [first]
    assert Review.objects.count() == 2 and AuditEvent.objects.filter(action=actions.REVIEW_RECORDED).count() == 2
