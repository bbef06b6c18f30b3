"""Pages and API views for detector jobs. Thin: reads from selectors, writes through services."""
import io
import zipfile

import numpy as np
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from inference import selectors, services
from inference.serializers import JobSerializer, SliceResultSerializer

# --- API ------------------------------------------------------------------------------------------------------

NOT_YOURS = OpenApiResponse(description="No such job, or not yours (another doctor's job is a 404).")


@extend_schema_view(get=extend_schema(summary="A detector job", tags=["jobs"], responses={200: JobSerializer, 404: NOT_YOURS}))
class JobDetailApi(RetrieveAPIView):
    """A job's status, progress, timings, model and scan-level verdict. Another doctor's job is a 404."""

    serializer_class = JobSerializer

    def get_object(self):
        job = selectors.job_get_for(user=self.request.user, job_id=self.kwargs["job_id"])
        return services.job_refresh_if_stale(job=job)


@extend_schema_view(
    get=extend_schema(
        summary="The newest detector job of a scan",
        tags=["jobs"],
        responses={200: JobSerializer, 404: OpenApiResponse(description="Not your scan, or no job yet.")},
    )
)
class ScanLatestJobApi(RetrieveAPIView):
    """The newest job of a scan (404 when the scan is not yours or has no job yet)."""

    serializer_class = JobSerializer

    def get_object(self):
        job = selectors.job_latest_for_scan(user=self.request.user, scan_id=self.kwargs["scan_id"])
        if job is None:
            raise Http404("No job for this scan.")
        return services.job_refresh_if_stale(job=job)


class SliceResultPagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


@extend_schema_view(
    get=extend_schema(
        summary="Per-slice results of a job",
        tags=["jobs"],
        parameters=[OpenApiParameter("page_size", int, description="Results per page (at most 1000; 100 by default).")],
        responses={200: SliceResultSerializer(many=True), 404: NOT_YOURS},
    )
)
class JobResultsApi(ListAPIView):
    """Per-slice results of a job: verdict, scores, mask URL and the instances with their COCO RLE masks."""

    serializer_class = SliceResultSerializer
    pagination_class = SliceResultPagination

    def get_queryset(self):
        job = selectors.job_get_for(user=self.request.user, job_id=self.kwargs["job_id"])
        if self.request.query_params.get("page", "1") == "1":
            services.audit_results_viewed(request=self.request, job=job)
        return selectors.slice_results_for_job(job=job)


class JobRetryApi(APIView):
    """Queue a failed job again (owner or admin). 409 when the job is not failed."""

    @extend_schema(
        summary="Retry a failed job",
        tags=["jobs"],
        request=None,
        responses={
            202: JobSerializer,
            404: NOT_YOURS,
            409: OpenApiResponse(description="The job is not failed (queued, running or succeeded)."),
        },
    )
    def post(self, request, job_id: int):
        job = services.job_refresh_if_stale(job=selectors.job_get_for(user=request.user, job_id=job_id))
        try:
            job = services.job_retry(job=job, user=request.user, request=request)
        except services.JobNotRetryable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ScanReanalyseApi(APIView):
    """Analyse a scan again with the installed model (owner or admin)."""

    @extend_schema(
        summary="Analyse a scan again with the installed model",
        description="Only when the scan's newest job succeeded with weights other than the installed ones (a model "
        "was installed since). The earlier job keeps its results and reviews.",
        tags=["jobs"],
        request=None,
        responses={
            202: JobSerializer,
            404: OpenApiResponse(description="No such scan, or not yours."),
            409: OpenApiResponse(description="Nothing new to gain (the installed model made the current analysis), "
                                             "an analysis is queued or running, or the newest one failed (retry it)."),
        },
    )
    def post(self, request, scan_id: int):
        from scans.selectors import scan_get_for

        scan = scan_get_for(user=request.user, pk=scan_id)
        try:
            job = services.job_reanalyse(scan=scan, user=request.user, request=request)
        except services.ReanalysisRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


# --- Pages ----------------------------------------------------------------------------------------------------


@login_required
@require_POST
def job_retry(request, job_id: int):
    """The scan page's Retry button (POST, CSRF)."""
    job = services.job_refresh_if_stale(job=selectors.job_get_for(user=request.user, job_id=job_id))
    try:
        services.job_retry(job=job, user=request.user, request=request)
        messages.success(request, "The job is queued again.")
    except services.JobNotRetryable as exc:
        messages.error(request, str(exc))
    return redirect("scans:detail", job.scan_id)


@login_required
@require_POST
def scan_reanalyse(request, scan_id: int):
    """The scan page's "Analyse again" button (POST, CSRF)."""
    from scans.selectors import scan_get_for

    scan = scan_get_for(user=request.user, pk=scan_id)
    try:
        job = services.job_reanalyse(scan=scan, user=request.user, request=request)
        messages.success(request, f"Analysing the scan again with the installed model (job #{job.pk}).")
    except services.ReanalysisRefused as exc:
        messages.error(request, str(exc))
    return redirect("scans:detail", scan.pk)


@login_required
@require_GET
def mask_download(request, result_id: int):
    """One slice's mask, a PNG label map (0 background, 1 real tumour, 2 fake added, 3 fake removed)."""
    result = selectors.slice_result_get_for(user=request.user, result_id=result_id)
    if not result.mask:
        raise Http404("The model showed no region on this slice.")
    services.audit_mask_downloaded(request=request, job=result.job, details={"slice_index": result.index})
    return FileResponse(
        result.mask.open("rb"),
        content_type="image/png",
        as_attachment="download" in request.GET,
        filename=f"scan-{result.job.scan_id}-job-{result.job_id}-slice-{result.index:04d}-mask.png",
    )


@login_required
@require_GET
def masks_zip(request, job_id: int):
    """Every slice's label map of a finished job, one PNG per slice (empty slices included), in a zip."""
    from PIL import Image

    job = selectors.job_get_for(user=request.user, job_id=job_id)
    if job.status != job.Status.SUCCEEDED:
        raise Http404("The job has no results yet.")
    scan = job.scan
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for result in selectors.slice_results_for_job(job=job):
            name = f"slice-{result.index:04d}.png"
            if result.mask:
                with result.mask.open("rb") as fh:
                    archive.writestr(name, fh.read())
            else:
                png = io.BytesIO()
                Image.fromarray(np.zeros((scan.height, scan.width), dtype=np.uint8), mode="L").save(png, format="PNG")
                archive.writestr(name, png.getvalue())
        archive.writestr(
            "README.txt",
            f"Masks of scan {scan.pk} ({scan.original_name}), job {job.pk}, model {job.model_name} "
            f"{job.model_version} (sha256 {job.model_sha256}).\n"
            "One PNG label map per slice, in display order: 0 background, 1 real tumor, 2 fake added, "
            "3 fake removed.\n",
        )
    services.audit_mask_downloaded(request=request, job=job, details={"all_slices": True})
    response = HttpResponse(buf.getvalue(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="scan-{scan.pk}-job-{job.pk}-masks.zip"'
    return response
