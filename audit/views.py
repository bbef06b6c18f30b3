"""Admin pages of the audit log. Doctors get 403 on every one (accounts.permissions), and the attempt is
itself logged (access.denied)."""
from functools import wraps

from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from accounts.permissions import portal_admin_required
from audit import actions
from audit.csv_export import csv_lines
from audit.forms import AuditFilterForm
from audit.selectors import audit_chain_verify, audit_event_list, audit_scan_history
from audit.services import audit_record

PAGE_SIZE = 50


def audit_admin_required(view):
    """portal_admin_required, and a logged-in non-admin's attempt recorded as access.denied."""
    guarded = portal_admin_required(view)

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.user.is_authenticated and not request.user.is_portal_admin:
            audit_record(action=actions.ACCESS_DENIED, request=request, outcome=actions.DENIED,
                         details={"path": request.path[:200]})
        return guarded(request, *args, **kwargs)

    return wrapped


def _query_string(request) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def _json_filters(filters: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in filters.items()}


@audit_admin_required
def event_list(request):
    form = AuditFilterForm(request.GET or None)
    filters = form.filters() if request.GET else {}
    # Logged before the page is counted, so the list is consistent with itself (this view is in it).
    audit_record(action=actions.AUDIT_LOG_VIEWED, request=request,
                 details={"filters": _json_filters(filters), "page": request.GET.get("page", "1")[:10]})
    page = Paginator(audit_event_list(filters=filters), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "audit/event_list.html", {
        "form": form, "page_obj": page, "events": page.object_list, "query_string": _query_string(request),
    })


@audit_admin_required
def event_export(request):
    form = AuditFilterForm(request.GET or None)
    filters = form.filters() if request.GET else {}
    events = audit_event_list(filters=filters)
    count = events.count()
    audit_record(action=actions.AUDIT_LOG_EXPORTED, request=request,
                 details={"filters": _json_filters(filters), "rows": count, "format": "csv"})
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(csv_lines(events[:count].iterator(chunk_size=2000)),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
    return response


@audit_admin_required
def chain_verify(request):
    check = audit_chain_verify()
    return render(request, "audit/verify.html", {"check": check})


@audit_admin_required
def scan_history(request, pk: int):
    from scans.models import Scan

    scan = get_object_or_404(Scan.objects.select_related("owner"), pk=pk)
    audit_record(action=actions.SCAN_HISTORY_VIEWED, request=request, obj=scan, details={"scan_id": scan.pk})
    page = Paginator(audit_scan_history(scan=scan), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "audit/scan_history.html", {"scan": scan, "page_obj": page, "events": page.object_list,
                                                       "query_string": ""})
