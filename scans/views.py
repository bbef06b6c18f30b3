"""Scan pages: list, upload, detail, downloads. Thin: selectors read, services write."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from scans import selectors, serving, services
from scans.forms import ScanFilterForm, ScanUploadForm
from scans.ingest import UploadRejected

PAGE_SIZE = 25
# Multipart framing around the files; a body larger than the limit plus this is refused before it is read.
MULTIPART_SLACK_BYTES = 1024 * 1024


@login_required
@require_GET
def scan_list(request):
    form = ScanFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    scans = selectors.scan_list_for(user=request.user, filters=filters)
    page = Paginator(scans, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "scans/list.html", {
        "form": form, "page": page, "scans": page.object_list, "query": query.urlencode(),
        "show_owner": request.user.is_portal_admin,
    })


def body_too_large(request) -> bool:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > settings.UPLOAD_MAX_BYTES + MULTIPART_SLACK_BYTES


def too_large_message() -> str:
    return f"The upload is over the limit of {settings.UPLOAD_MAX_BYTES // (1024 * 1024)} MB."


def _upload_context(**extra) -> dict:
    return {"form": ScanUploadForm(), "max_mb": settings.UPLOAD_MAX_BYTES // (1024 * 1024), **extra}


@login_required
@require_http_methods(["GET", "POST"])
def scan_upload(request):
    if request.method == "GET":
        return render(request, "scans/upload.html", _upload_context())
    error, file_errors = None, []
    if body_too_large(request):
        error = too_large_message()
    else:
        try:
            form = ScanUploadForm(request.POST, request.FILES)
            form.is_valid()
            result = services.scan_upload(user=request.user, files=request.FILES.getlist("files"), request=request)
        except UploadRejected as exc:
            error, file_errors = exc.message, exc.errors
        except (RequestDataTooBig, SuspiciousOperation) as exc:
            error = f"The upload was refused: {exc}"
        else:
            (messages.success if result.created else messages.info)(request, result.message)
            return redirect("scans:detail", pk=result.scan.pk)
    return render(
        request, "scans/upload.html",
        _upload_context(upload_error=error, file_errors=file_errors), status=400,
    )


@login_required
@require_GET
def scan_detail(request, pk: int):
    scan = selectors.scan_get_for(user=request.user, pk=pk)
    services.scan_viewed(scan=scan, request=request)
    jobs = list(scan.jobs.order_by("-created_at", "-id"))
    return render(request, "scans/detail.html", {
        "scan": scan,
        "files": list(selectors.scan_files(scan=scan)),
        "jobs": jobs,
        "latest_job": jobs[0] if jobs else None,
        "middle_index": scan.n_slices // 2,
    })


@login_required
@require_GET
def scan_download_original(request, pk: int):
    scan = selectors.scan_get_for(user=request.user, pk=pk)
    files = list(selectors.scan_files(scan=scan))
    if not files:
        raise Http404("This scan has no stored original.")
    services.scan_original_downloaded(scan=scan, request=request, scan_file=files[0] if len(files) == 1 else None)
    return serving.originals_response(scan, files)


@login_required
@require_GET
def scan_download_file(request, pk: int, file_id: int):
    scan = selectors.scan_get_for(user=request.user, pk=pk)
    scan_file = selectors.scan_file_get(scan=scan, file_id=file_id)
    services.scan_original_downloaded(scan=scan, request=request, scan_file=scan_file)
    return serving.original_file_response(scan_file)


@login_required
@require_GET
def scan_slice_image(request, pk: int, index: int, bits: int = 8):
    scan = selectors.scan_get_for(user=request.user, pk=pk)
    return serving.slice_image_response(selectors.scan_slice_get(scan=scan, index=index), bits=bits)
