"""Recording a radiologist's review. `review_record` is the only way a review gets in."""
from __future__ import annotations

from django.db import transaction

from audit import actions
from audit.services import audit_record
from inference.ml.labels import VERDICTS
from inference.models import InferenceJob, verdict_label
from inference.services import newest_job_for_update
from reviews.models import NOTE_MAX_CHARS, Review


class ReviewRejected(Exception):
    """The review was not recorded; `message` says why, for a person; `field` names the input at fault (or "").
    `conflict`: the scan's state, not the input, is at fault (no finished analysis, or a newer one)."""

    def __init__(self, message: str, *, field: str = "", conflict: bool = False):
        super().__init__(message)
        self.message, self.field, self.conflict = message, field, conflict


def _reviewable_job(scan, job_id) -> InferenceJob:
    """The scan's newest job, locked, if it is the one the reviewer saw (`job_id`) and it has succeeded."""
    job = newest_job_for_update(scan)
    if job is not None and job_id != job.pk:
        raise ReviewRejected(f"The review was of analysis #{job_id}, but the scan's analysis is now #{job.pk}. "
                             "Reload the scan page, look at the new result and review it again.",
                             field="job", conflict=True)
    if job is None or job.status != InferenceJob.Status.SUCCEEDED:
        raise ReviewRejected("This scan has no finished analysis to review yet; a review can be recorded once its "
                             "detector job has succeeded.", conflict=True)
    return job


@transaction.atomic
def review_record(*, scan, job_id: int, verdict: str, note: str = "", reviewer, request=None) -> Review:
    """Record `reviewer`'s verdict on the scan's current analysis (job `job_id`, which must be the scan's newest
    job and have succeeded). Overruling the detector needs a note saying why. Audited (`review.recorded`).
    Raises ReviewRejected, and stores nothing, when any of this does not hold. When the analysis was sent to the
    PACS, it is sent again with the review (reports.services.pacs_send_after_review)."""
    if verdict not in VERDICTS:
        raise ReviewRejected(f"Unknown verdict {verdict!r}; choose one of {', '.join(VERDICTS)}.", field="verdict")
    note = (note or "").strip()
    if len(note) > NOTE_MAX_CHARS:
        raise ReviewRejected(f"The note has {len(note)} characters; at most {NOTE_MAX_CHARS}.", field="note")
    job = _reviewable_job(scan, job_id)
    if verdict != job.verdict and not note:
        raise ReviewRejected(f"You read this scan as {verdict_label(verdict)} where the detector said "
                             f"{verdict_label(job.verdict)}: say why in the note.", field="note")
    review = Review.objects.create(scan=scan, job=job, reviewer=reviewer, verdict=verdict,
                                   detector_verdict=job.verdict, note=note)
    audit_record(action=actions.REVIEW_RECORDED, request=request, actor=reviewer, obj=scan, details={
        "review_id": review.pk, "scan_id": scan.pk, "job_id": job.pk, "verdict": verdict,
        "detector_verdict": job.verdict, "agrees": review.agrees, "note_chars": len(note),
    })
    from reports.services import pacs_send_after_review  # reports builds on reviews: imported when used

    pacs_send_after_review(review=review, request=request)
    return review
