"""Scan pages: list, upload, detail, downloads. Thin: selectors read, services write."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFilesSent
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from inference.models import verdict_label
from scans import dicom_text, selectors, serving, services
from scans.forms import PacsImportForm, PacsSearchForm, ScanFilterForm, ScanUploadForm
from scans.ingest import UploadRejected

PAGE_SIZE = 25


@login_required
@require_GET
def scan_list(request):
    form = ScanFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    scans = selectors.scan_list_for(user=request.user, filters=filters)
    page = Paginator(scans, PAGE_SIZE).get_page(request.GET.get("page"))
    for scan in page.object_list:
        scan.latest_verdict_label = verdict_label(scan.latest_verdict) if scan.latest_verdict else ""
        scan.latest_review_label = verdict_label(scan.latest_review_verdict) if scan.latest_review_verdict else ""
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "scans/list.html", {
        "form": form, "page": page, "scans": page.object_list, "query": query.urlencode(),
        "show_owner": request.user.is_portal_admin,
        # the count of scans awaiting review: the navigation's (portal.context_processors), counted once
    })


def request_refused_message(exc: Exception) -> str:
    """Django refuses a multipart body it will not parse (too many files or fields)."""
    if isinstance(exc, TooManyFilesSent):
        return (f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files in one upload. Zip the series and upload "
                "the zip.")
    return f"The upload was refused: {exc}"


def upload_context(**extra) -> dict:
    return {"form": ScanUploadForm(), "max_mb": settings.UPLOAD_MAX_BYTES // (1024 * 1024),
            "pacs_destination": settings.PACS_DESTINATION, **extra}


@login_required
@require_http_methods(["GET", "POST"])
def scan_upload(request):
    if request.method == "GET":
        return render(request, "scans/upload.html", upload_context())
    # An oversized body never gets here: scans.middleware.UploadSizeLimitMiddleware refuses it unread.
    error, file_errors = None, []
    try:
        result = services.scan_upload(user=request.user, files=request.FILES.getlist("files"), request=request,
                                      sequence=request.POST.get("sequence") or None)
    except UploadRejected as exc:
        error, file_errors = exc.message, exc.errors
    except (RequestDataTooBig, SuspiciousOperation) as exc:
        error = request_refused_message(exc)
    else:
        (messages.success if result.created else messages.info)(request, result.message)
        return redirect("scans:detail", pk=result.scan.pk)
    return render(
        request, "scans/upload.html",
        upload_context(upload_error=error, file_errors=file_errors), status=400,
    )


@login_required
@require_http_methods(["GET", "POST"])
def pacs_import(request):
    """Search the PACS (GET: patient ID, accession number, study date) and import one series (POST: the study and
    series UIDs; the search stays in the query string, so a refused import shows the results again)."""
    from reports.pacs import PacsError

    context = {"pacs_destination": settings.PACS_DESTINATION, "search_form": PacsSearchForm(request.GET or None),
               "query": request.GET.urlencode()}
    status = 200
    if request.method == "POST":
        form = PacsImportForm(request.POST)
        if not form.is_valid():
            context["import_error"] = "That series cannot be imported: " + "; ".join(
                f"{form.fields[f].label if f in form.fields else ''}: {e}".lstrip(": ")
                for f, errors in form.errors.items() for e in errors)
            status = 400
        else:
            try:
                result = services.scan_import_from_pacs(
                    user=request.user, study_uid=form.cleaned_data["study_uid"],
                    series_uid=form.cleaned_data["series_uid"], sequence=form.cleaned_data["sequence"] or None,
                    request=request)
            except UploadRejected as exc:
                context.update(import_error=f"The series was retrieved but is not a scan the portal takes: "
                                            f"{exc.message}", file_errors=exc.errors)
                status = 400
            except (PacsError, services.PacsImportUnavailable) as exc:
                context["import_error"] = str(exc)
                status = 502 if isinstance(exc, PacsError) else 409
            else:
                (messages.success if result.created else messages.info)(
                    request, f"Imported from the PACS {settings.PACS_DESTINATION}. {result.message}")
                return redirect("scans:detail", pk=result.scan.pk)
    search_form = context["search_form"]
    if settings.PACS_DESTINATION and search_form.is_bound and search_form.is_valid():
        try:
            context["search"] = services.pacs_search(request=request, keys=search_form.keys())
        except PacsError as exc:
            context["search_error"] = str(exc)
            status = status if status != 200 else 502
    return render(request, "scans/pacs_import.html", context, status=status)


@login_required
@require_GET
def scan_detail(request, pk: int):
    scan = selectors.scan_get_for(user=request.user, pk=pk)
    services.scan_viewed(scan=scan, request=request)
    return render_scan_detail(request, scan)


@login_required
@require_http_methods(["POST"])
def scan_compare_pacs(request, pk: int):
    """The scan page's "Compare with the PACS" button (POST, CSRF): compare, say the outcome, back to the page
    (which shows the latest comparison)."""
    from reports.pacs import PacsError

    scan = selectors.scan_get_for(user=request.user, pk=pk)
    try:
        result = services.scan_compare_with_pacs(scan=scan, request=request)
    except (PacsError, services.PacsImportUnavailable) as exc:
        messages.error(request, getattr(exc, "message", None) or str(exc))
    else:
        text = dicom_text.pacs_comparison_text(result)
        (messages.success if dicom_text.pacs_comparison_matches(result) else messages.warning)(request, text)
    return redirect("scans:detail", pk)


def render_scan_detail(request, scan, *, review_form=None, status: int = 200):
    """The scan page; ``review_form``: a bound review form with its errors (reviews.views), shown in place of an
    empty one so that nothing the reviewer typed is lost."""
    from inference.selectors import earlier_differing_job
    from inference.models import scan_rule_text
    from inference.services import installed_scan_rule, reanalysis_model
    from reports.selectors import pacs_transfers_for, processed_caveat_for
    from reports.services import pacs_destination
    from reviews.forms import ReviewForm
    from reviews.selectors import review_panel_for

    jobs = list(scan.jobs.order_by("-created_at", "-id"))
    latest = jobs[0] if jobs else None
    if review_form is None:
        review_form = ReviewForm(initial={"job": latest.pk if latest else None,
                                          "verdict": latest.verdict if latest else None})
    copies = selectors.scan_copies(scan=scan, user=request.user) if scan.kind == "dicom" else []
    pacs_status = selectors.pacs_compare_status(scan) if scan.kind == "dicom" else None
    changes = selectors.scan_slice_changes(scan=scan, user=request.user, copies=copies, pacs_status=pacs_status)
    reanalyse_with = reanalysis_model(latest)
    reanalyse_rule = ""  # offered for the same weights: a new scan rule, the one they now use, in words
    if reanalyse_with is not None and reanalyse_with.sha256 == latest.model_sha256:
        reanalyse_rule = scan_rule_text(installed_scan_rule(reanalyse_with))
    return render(request, "scans/detail.html", {
        "scan": scan,
        "files": list(selectors.scan_files(scan=scan)),
        "jobs": jobs,
        "latest_job": latest,
        "middle_index": scan.n_slices // 2,
        "confidence_guide": _confidence_guide_text(latest),
        "verdict_guides": _verdict_guide_texts(latest),
        "processed_caveat": processed_caveat_for(latest),  # the page's JS also shows it when a running job ends
        "header_warnings": dicom_text.header_warnings_by_slice(scan.metadata or {}),
        "review": review_panel_for(scan=scan, job=latest),
        "reanalyse_with": reanalyse_with,
        "reanalyse_rule": reanalyse_rule,
        "earlier_verdict": earlier_differing_job(job=latest),
        "review_form": review_form,
        "pacs_destination": pacs_destination() if scan.kind == "dicom" else None,
        "pacs_transfers": pacs_transfers_for(scan=scan, limit=5),
        "copies": copies,
        "pacs_status": pacs_status,
        "slice_changes": changes,
        "pacs_source": selectors.PACS_SOURCE,
        "changes_by_slice": selectors.changes_by_slice(changes),
    }, status=status)


def _confidence_guide_text(job) -> str:
    from reports.selectors import confidence_guide_for, confidence_guide_text

    guide = confidence_guide_for(job)
    return confidence_guide_text(guide) if guide else ""


def _verdict_guide_texts(job) -> dict[str, str]:
    from reports.selectors import verdict_guide_text, verdict_guides_for

    return {verdict: verdict_guide_text(guide) for verdict, guide in verdict_guides_for(job).items()}


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
