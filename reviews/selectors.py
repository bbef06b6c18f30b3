"""Reads for reviews. Visibility follows the scan's: whoever may see a scan (scans.selectors.scan_get_for) sees
its reviews."""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from inference.models import InferenceJob
from reviews.models import Review


def reviews_for_scan(*, scan) -> QuerySet[Review]:
    """Every review of the scan, newest first."""
    return Review.objects.filter(scan=scan).select_related("reviewer", "job").order_by("-created_at", "-id")


def review_current_for_job(*, job) -> Review | None:
    """The review in force for an analysis: its newest one (None when it has none)."""
    if job is None:
        return None
    return Review.objects.filter(job=job).select_related("reviewer").order_by("-created_at", "-id").first()


def review_superseded_by(review: Review) -> Review | None:
    """The review of the same analysis that ``review`` superseded (the one in force just before it); None for
    the analysis' first review."""
    earlier = Q(created_at__lt=review.created_at) | Q(created_at=review.created_at, id__lt=review.id)
    return Review.objects.filter(earlier, job_id=review.job_id).order_by("-created_at", "-id").first()


@dataclass
class ReviewPanel:
    """What the scan page shows about reviews of a scan whose newest job is `job`."""

    job: InferenceJob | None
    current: Review | None  # the newest review of `job`
    history: list = field(default_factory=list)  # every other review of the scan, newest first

    @property
    def reviewable(self) -> bool:
        return self.job is not None and self.job.status == InferenceJob.Status.SUCCEEDED


def review_panel_for(*, scan, job) -> ReviewPanel:
    reviews = list(reviews_for_scan(scan=scan))
    current = next((r for r in reviews if job is not None and r.job_id == job.pk), None)
    return ReviewPanel(job=job, current=current, history=[r for r in reviews if r is not current])
