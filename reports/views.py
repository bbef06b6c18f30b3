"""Report pages: the model page (card + stored evaluation), dashboards, per-scan reports."""
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.utils import timezone

from inference.models import VERDICT_CHOICES
from reports import charts, services
from reports.models import EvaluationRun
from reports.selectors import (
    NoFinishedAnalysis,
    dashboard_for,
    evaluation_breakdown_tables,
    evaluation_run_list,
    evaluation_tables,
    model_card_current,
    model_review_summary,
    scan_report_for,
    scan_rule_summary,
    SCAN_RULE_FIGURES,
    evaluation_to_show,
)


@login_required
def model_page(request):
    card = model_card_current()
    shipped = None
    if request.GET.get("run", "").isdigit():
        run = get_object_or_404(EvaluationRun, pk=int(request.GET["run"]))
    else:
        run, shipped = evaluation_to_show(card)
    context = {"card": card, "run": run, "runs": evaluation_run_list(limit=20),
               "in_use": model_review_summary(card.sha256), "verdict_choices": VERDICT_CHOICES,
               "scan_rule": scan_rule_summary(card), "site_prevalence": settings.TAMPER_PREVALENCE,
               "scan_rule_figures": [label for _, label in SCAN_RULE_FIGURES],
               "shipped": shipped if shipped is not None and run is not None and run is shipped.run else None,
               "shipped_problem": shipped.problem if shipped is not None else ""}
    if run is not None:
        tables = evaluation_tables(run)
        context.update(
            tables=tables,
            breakdown_tables=evaluation_breakdown_tables(run),
            run_is_of_installed_model=bool(card.sha256) and run.model_sha256 == card.sha256,
            latency=run.metrics.get("latency_s") or {},
            f1_chart=charts.as_data_uri(charts.bar_chart_svg(
                tables.f1_by_class, title="F1 score per class", ylabel="F1")),
            distribution_chart=charts.as_data_uri(charts.pie_chart_svg(
                tables.supports, title=f"Test images per class (n = {tables.total})")),
            confusion_chart=charts.as_data_uri(charts.heatmap_svg(
                tables.labels, tables.matrix, title="Confusion matrix", xlabel="Predicted", ylabel="True")),
        )
    return render(request, "reports/model.html", context)


@login_required
def dashboard(request):
    board = dashboard_for(user=request.user, range_name=request.GET.get("range"))
    context = {
        "board": board,
        "ranges": [("30d", "30 days"), ("90d", "90 days"), ("365d", "12 months")],
        "verdict_choices": VERDICT_CHOICES,
        "verdicts_chart": charts.as_data_uri(charts.stacked_bars_over_time_svg(
            board.periods, board.verdicts_over_time, title="Scans by verdict", ylabel="scans")),
    }
    if request.user.is_portal_admin:
        context.update(
            mix_chart=charts.as_data_uri(charts.pie_chart_svg(
                board.verdict_totals, title=f"Verdict mix (n = {board.scans_total})")),
            jobs_chart=charts.as_data_uri(charts.stacked_bars_over_time_svg(
                board.periods, board.jobs_over_time, title="Finished jobs", ylabel="jobs")),
            latency_chart=charts.as_data_uri(charts.lines_over_time_svg(
                board.periods, board.latency_over_time, title="Job latency, queued to finished",
                ylabel="seconds")),
        )
    return render(request, "reports/dashboard.html", context)


# --- Per-scan report files ---------------------------------------------------------------------------------

def _attachment(content: bytes, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


def _no_analysis(request, exc) -> HttpResponse:
    return render(request, "reports/no_analysis.html", {"message": str(exc)}, status=409)


def report_file_response(*, request, scan_pk: int, kind: str, on_missing) -> HttpResponse:
    """The one code path of the page and API downloads: ownership (404), no analysis yet or no SEG possible
    (409, via on_missing), audit."""
    try:
        report = scan_report_for(user=request.user, scan_pk=scan_pk)
    except NoFinishedAnalysis as exc:
        return on_missing(request, exc)
    if kind == "pdf":
        return _attachment(services.scan_report_pdf_issue(request=request, report=report),
                           content_type="application/pdf", filename=f"scan-{scan_pk}-report.pdf")
    if kind == "csv":
        return _attachment(services.scan_report_csv_issue(request=request, report=report),
                           content_type="text/csv; charset=utf-8", filename=f"scan-{scan_pk}-results.csv")
    if kind in ("seg", "pdf-dicom", "sr"):
        from reports.seg import DicomExportUnavailable

        issue, filename = {"seg": (services.scan_report_seg_issue, f"scan-{scan_pk}-seg.dcm"),
                           "pdf-dicom": (services.scan_report_pdf_dicom_issue, f"scan-{scan_pk}-report.dcm"),
                           "sr": (services.scan_report_sr_issue, f"scan-{scan_pk}-sr.dcm")}[kind]
        try:
            content = issue(request=request, report=report)
        except DicomExportUnavailable as exc:
            return on_missing(request, exc)
        return _attachment(content, content_type="application/dicom", filename=filename)
    raise ValueError(kind)


@login_required
def scan_report_pdf(request, pk: int):
    return report_file_response(request=request, scan_pk=pk, kind="pdf", on_missing=_no_analysis)


@login_required
def scan_report_csv(request, pk: int):
    return report_file_response(request=request, scan_pk=pk, kind="csv", on_missing=_no_analysis)


@login_required
def scan_report_seg(request, pk: int):
    return report_file_response(request=request, scan_pk=pk, kind="seg", on_missing=_no_analysis)


@login_required
def scan_report_pdf_dicom(request, pk: int):
    return report_file_response(request=request, scan_pk=pk, kind="pdf-dicom", on_missing=_no_analysis)


@login_required
def scan_report_sr(request, pk: int):
    return report_file_response(request=request, scan_pk=pk, kind="sr", on_missing=_no_analysis)


@login_required
@require_POST
def scan_send_to_pacs(request, pk: int):
    """The scan page's "Send to PACS" button (POST, CSRF): queue it, say so, back to the scan page."""
    try:
        transfer = services.pacs_send_request(request=request, scan_pk=pk)
        messages.success(request, f"Sending the analysis (job #{transfer.job_id}) to the PACS {transfer.destination}: "
                                  "the masks as DICOM SEG, the report as DICOM and the verdict as a DICOM "
                                  "structured report. \"Sent to the PACS\", under the review, says how it went.")
    except (NoFinishedAnalysis, services.PacsUnavailable) as exc:
        messages.error(request, str(exc))
    return redirect("scans:detail", pk)


@login_required
def results_csv(request):
    return results_csv_response(request)


def results_csv_response(request, on_invalid=None) -> HttpResponse:
    """The results CSV of the scans the filters (the scan list's: q, verdict, date_from, date_to) select. Invalid
    filters export nothing: a 400 saying what was wrong (``on_invalid(request, errors)`` for the API's form)."""
    from scans.forms import ScanFilterForm

    form = ScanFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        errors = form.errors.get_json_data()
        if on_invalid is not None:
            return on_invalid(request, errors)
        lines = [f"{'' if f == '__all__' else f + ': '}{e['message']}" for f, errs in errors.items() for e in errs]
        return HttpResponse("Invalid filter; nothing was exported.\n" + "\n".join(lines) + "\n", status=400,
                            content_type="text/plain; charset=utf-8")
    filters = form.cleaned_data if form.is_bound else {}
    stamp = timezone.now().strftime("%Y%m%d")
    return _attachment(services.results_csv_issue(request=request, filters=filters),
                       content_type="text/csv; charset=utf-8", filename=f"results-{stamp}.csv")
