"""Reads about detector jobs. Ownership is in the query: a doctor sees the jobs of their own scans, an admin all.

Every read of a job goes through `job_refresh_if_stale` in the callers that show status (views, API), so a job
whose worker died is shown as failed, never as running forever.
"""
from django.db.models import Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404

from inference.models import InferenceJob, SliceInstance, SliceResult


def jobs_visible_to(*, user) -> QuerySet[InferenceJob]:
    if not (user and user.is_authenticated and user.is_active):
        return InferenceJob.objects.none()
    jobs = InferenceJob.objects.select_related("scan")
    if user.is_portal_admin:
        return jobs
    return jobs.filter(scan__owner=user)


def job_get_for(*, user, job_id: int) -> InferenceJob:
    """One job the user may see; Http404 otherwise (another doctor's job does not exist for them)."""
    return get_object_or_404(jobs_visible_to(user=user), pk=job_id)


def job_latest_for_scan(*, user, scan_id: int) -> InferenceJob | None:
    """The scan's newest job, if the user may see the scan and it has one."""
    return jobs_visible_to(user=user).filter(scan_id=scan_id).order_by("-created_at", "-id").first()


def slice_results_for_job(*, job: InferenceJob) -> QuerySet[SliceResult]:
    return (
        SliceResult.objects.filter(job=job)
        .order_by("index")
        .prefetch_related(Prefetch("instances", queryset=SliceInstance.objects.order_by("-score")))
    )


def slice_result_get_for(*, user, result_id: int) -> SliceResult:
    """One slice result of a job the user may see; Http404 otherwise."""
    return get_object_or_404(
        SliceResult.objects.select_related("job", "job__scan").filter(job__in=jobs_visible_to(user=user)),
        pk=result_id,
    )


def earlier_differing_job(*, job: InferenceJob | None) -> InferenceJob | None:
    """When `job` succeeded, the newest succeeded analysis of the same scan before it, if that one gave another
    verdict (a model installed since reads the scan differently); None otherwise."""
    if job is None or job.status != InferenceJob.Status.SUCCEEDED:
        return None
    earlier = (InferenceJob.objects.filter(scan_id=job.scan_id, status=InferenceJob.Status.SUCCEEDED)
               .filter(Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, id__lt=job.pk))
               .order_by("-created_at", "-id").first())
    return earlier if earlier is not None and earlier.verdict != job.verdict else None
