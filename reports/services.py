"""Writes of the reports app: evaluation records (and the report files, below)."""
import hashlib
import logging
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from audit import actions
from audit.services import audit_record
from inference.ml.labels import VERDICTS
from reports.models import EvaluationRun

logger = logging.getLogger(__name__)


class InvalidMetrics(ValueError):
    """metrics.json does not follow docs/dataset-and-evaluation.md; the message says what is wrong."""


def _ratio_or_none(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def _validate_metrics(metrics: dict) -> None:
    missing = [k for k in ("n_images", "accuracy", "macro_f1", "per_class", "confusion_matrix", "model")
               if k not in metrics]
    if missing:
        raise InvalidMetrics(f"metrics is missing {', '.join(missing)} (see docs/dataset-and-evaluation.md)")
    model = metrics["model"]
    for key in ("name", "version", "sha256"):
        if not model.get(key):
            raise InvalidMetrics(f"metrics['model'] has no {key!r}")
    unknown = set(metrics["per_class"]) - set(VERDICTS)
    if unknown:
        raise InvalidMetrics(f"metrics['per_class'] names unknown verdicts: {sorted(unknown)}")
    cm = metrics["confusion_matrix"]
    labels, matrix = cm.get("labels"), cm.get("matrix")
    if not labels or matrix is None or len(matrix) != len(labels) or any(len(row) != len(labels) for row in matrix):
        raise InvalidMetrics("metrics['confusion_matrix'] must hold 'labels' and a square 'matrix' of that size")


def _file_sha256(path: Path) -> str:
    try:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return ""


def evaluation_records_unavailable() -> str | None:
    """Why an evaluation could not be recorded in this installation's database (None when it can be): a fresh
    clone has no database tables until `manage.py migrate`, and a configured server may be unreachable."""
    from audit.models import AuditEvent

    try:
        tables = set(connection.introspection.table_names())
    except DatabaseError as exc:
        return f"the database cannot be reached ({exc.__class__.__name__}: {str(exc).strip().splitlines()[0]})"
    missing = [m._meta.db_table for m in (EvaluationRun, AuditEvent) if m._meta.db_table not in tables]
    if missing:
        return (f"the database has no table {', '.join(missing)} yet: run `python manage.py migrate` once to "
                "record evaluations for the portal's model page")
    return None


def _check_ratios(entry: dict, keys, where: str) -> None:
    """Each of ``keys`` of ``entry`` is a number in [0, 1] or missing / null."""
    for key in keys:
        value = entry.get(key)
        if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise InvalidMetrics(f"{where}[{key!r}] must be a ratio in [0, 1]")


def _validate_breakdown(breakdown: dict) -> None:
    if not isinstance(breakdown, dict):
        raise InvalidMetrics("breakdown must be a JSON object (breakdown.json of evaluate_detector)")
    for table, groups in breakdown.items():
        if table == "input_range":
            continue
        if not isinstance(groups, dict):
            raise InvalidMetrics(f"breakdown[{table!r}] must map group names to their figures")
        for name, group in groups.items():
            if not isinstance(group, dict) or not isinstance(group.get("n"), int) or group["n"] < 0:
                raise InvalidMetrics(f"breakdown[{table!r}][{name!r}] needs a count 'n'")
            _check_ratios(group, ("accuracy", "flagged_tampered", "mean_iou"), f"breakdown[{table!r}][{name!r}]")


def _validate_interval(entry, where: str) -> None:
    if not isinstance(entry, dict):
        raise InvalidMetrics(f"{where} must be an object with estimate, low and high")
    _check_ratios(entry, ("estimate", "low", "high"), where)
    values = [entry.get(k) for k in ("estimate", "low", "high")]
    if values[1] is not None and values[2] is not None and values[1] > values[2]:
        raise InvalidMetrics(f"{where}: low {values[1]} is above high {values[2]}")


def _validate_intervals(intervals: dict) -> None:
    if not isinstance(intervals, dict):
        raise InvalidMetrics("intervals must be a JSON object (intervals.json of evaluate_detector)")
    for key in ("accuracy", "macro_f1", "mean_iou", "tamper_auc"):
        if key in intervals:
            _validate_interval(intervals[key], f"intervals[{key!r}]")
    for label, entry in (intervals.get("f1") or {}).items():
        _validate_interval(entry, f"intervals['f1'][{label!r}]")
    for name, group in (intervals.get("by_source") or {}).items():
        _validate_interval((group or {}).get("accuracy"), f"intervals['by_source'][{name!r}]['accuracy']")
    if not isinstance(intervals.get("note", ""), str):
        raise InvalidMetrics("intervals['note'] must be text")


def _validate_confidence(confidence: dict) -> None:
    if not isinstance(confidence, dict):
        raise InvalidMetrics("confidence must be a JSON object (confidence.json of evaluate_detector)")
    _check_ratios(confidence, ("ece", "mce", "mean_confidence", "accuracy"), "confidence")
    cover = confidence.get("by_threshold", [])
    if not isinstance(cover, list):
        raise InvalidMetrics("confidence['by_threshold'] must be a list")
    for i, c in enumerate(cover):
        if not isinstance(c, dict):
            raise InvalidMetrics(f"confidence['by_threshold'][{i}] must be an object")
        _check_ratios(c, ("threshold", "share", "accuracy"), f"confidence['by_threshold'][{i}]")
    bins = confidence.get("reliability", [])
    if not isinstance(bins, list):
        raise InvalidMetrics("confidence['reliability'] must be a list of bins")
    for i, b in enumerate(bins):
        if not isinstance(b, dict) or not isinstance(b.get("count"), int) or b["count"] < 0:
            raise InvalidMetrics(f"confidence['reliability'][{i}] must be an object with a count")
        _check_ratios(b, ("low", "high", "confidence", "accuracy"), f"confidence['reliability'][{i}]")


def evaluation_run_build(*, metrics: dict, dataset_dir: str, out_dir: str, split: str | None,
                         breakdown: dict | None = None, intervals: dict | None = None,
                         confidence: dict | None = None, dataset_sha256: str | None = None) -> EvaluationRun:
    """One evaluation (the whole metrics.json of evaluate_detector, and its breakdown.json, intervals.json and
    confidence.json when given), checked and built but not saved. ``dataset_sha256``: the dataset's annotations.json digest,
    read from ``dataset_dir`` when not given. Raises InvalidMetrics (a ValueError) on a malformed file."""
    _validate_metrics(metrics)
    if breakdown is not None:
        _validate_breakdown(breakdown)
    if intervals is not None:
        _validate_intervals(intervals)
    if confidence is not None:
        _validate_confidence(confidence)
    model = metrics["model"]
    return EvaluationRun(
        model_name=str(model["name"])[:200],
        model_version=str(model["version"])[:100],
        model_sha256=str(model["sha256"])[:64],
        dataset_dir=str(dataset_dir),
        dataset_sha256=(str(dataset_sha256)[:64] if dataset_sha256 is not None
                        else _file_sha256(Path(dataset_dir) / "annotations.json")),
        split=split or "",
        out_dir=str(out_dir),
        n_images=int(metrics["n_images"]),
        accuracy=float(metrics["accuracy"]),
        macro_f1=float(metrics["macro_f1"]),
        mean_iou=_ratio_or_none(metrics, "mean_iou"),
        tamper_auc=_ratio_or_none(metrics, "tamper_auc"),
        metrics=metrics,
        breakdown=breakdown or {},
        intervals=intervals or {},
        confidence=confidence or {},
    )


def evaluation_run_record(*, metrics: dict, dataset_dir: str, out_dir: str, split: str | None,
                          breakdown: dict | None = None, intervals: dict | None = None,
                          confidence: dict | None = None) -> EvaluationRun:
    """Store one evaluation (`evaluation_run_build`) and audit it."""
    run = evaluation_run_build(metrics=metrics, dataset_dir=dataset_dir, out_dir=out_dir, split=split,
                               breakdown=breakdown, intervals=intervals, confidence=confidence)
    run.save()
    audit_record(
        action=actions.EVALUATION_RECORDED,
        obj=run,
        details={"model_version": run.model_version, "model_sha256": run.model_sha256, "split": run.split,
                 "n_images": run.n_images, "accuracy": run.accuracy, "macro_f1": run.macro_f1},
    )
    return run


# --- Report files (each download is audited with the SHA-256 of exactly what was handed out) --------------

def _audit_download(*, action: str, request, report, content: bytes, fmt: str, extra: dict | None = None) -> None:
    audit_record(action=action, request=request, obj=report.scan, details={
        "scan_id": report.scan.pk, "job_id": report.job.pk, "format": fmt, "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(), **(extra or {}),
    })


def _report_pdf(*, user, report) -> bytes:
    from reports.pdf import scan_report_pdf
    from reports.selectors import (confidence_guide_for, confidence_guide_text, processed_caveat_for,
                                   slices_by_verdict, verdict_guide_text, verdict_guides_for)

    guide = confidence_guide_for(report.job)
    by_verdict = verdict_guides_for(report.job)
    present = [verdict for verdict, _, _ in slices_by_verdict(report.results)]  # findings first
    return scan_report_pdf(report, generated_by=user,
                           confidence_guide=confidence_guide_text(guide) if guide else "",
                           verdict_guides=[verdict_guide_text(by_verdict[v]) for v in present if v in by_verdict],
                           processed_caveat=processed_caveat_for(report.job))


def scan_report_pdf_issue(*, request, report) -> bytes:
    content = _report_pdf(user=request.user, report=report)
    _audit_download(action=actions.REPORT_PDF_DOWNLOADED, request=request, report=report, content=content, fmt="pdf")
    return content


def scan_report_pdf_dicom_issue(*, request, report) -> bytes:
    """The PDF report as a DICOM Encapsulated PDF in the source study (reports.pdf_dicom); the audit records the
    SHA-256 of the DICOM file and of the PDF inside it. DicomExportUnavailable for scans that are not DICOM."""
    from reports.pdf_dicom import report_pdf_dicom
    from reports.seg import source_datasets

    sources = source_datasets(report.scan)  # refuses a scan that is not DICOM before the PDF is made
    pdf = _report_pdf(user=request.user, report=report)
    content = report_pdf_dicom(report, pdf, sources)
    _audit_download(action=actions.REPORT_PDF_DICOM_DOWNLOADED, request=request, report=report, content=content,
                    fmt="dicom-encapsulated-pdf", extra={"pdf_sha256": hashlib.sha256(pdf).hexdigest()})
    return content


def scan_report_csv_issue(*, request, report) -> bytes:
    from reports.csv_export import scan_results_csv

    content = scan_results_csv(report).encode("utf-8")
    _audit_download(action=actions.REPORT_CSV_DOWNLOADED, request=request, report=report, content=content, fmt="csv")
    return content


def results_csv_issue(*, request, filters: dict) -> bytes:
    """Every scan the user may see (scans.selectors.scan_list_for filters), one row each, with its latest job and
    that job's newest review."""
    from inference.models import InferenceJob
    from reviews.models import Review
    from reports.csv_export import scans_results_csv
    from scans.selectors import scan_list_for

    scans = list(scan_list_for(user=request.user, filters=filters))
    jobs = InferenceJob.objects.in_bulk([s.latest_job_id for s in scans if s.latest_job_id])
    reviews = Review.objects.select_related("reviewer").in_bulk([s.latest_review_id for s in scans
                                                                 if s.latest_review_id])
    content = scans_results_csv(scans, jobs, reviews).encode("utf-8")
    audit_record(action=actions.RESULTS_CSV_EXPORTED, request=request, details={
        "filters": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in filters.items()},
        "rows": len(scans), "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(),
    })
    return content


def scan_report_seg_issue(*, request, report) -> bytes:
    """The analysis as DICOM SEG (reports.seg); SegUnavailable for non-DICOM scans."""
    from reports.seg import scan_seg_bytes

    content = scan_seg_bytes(report)
    _audit_download(action=actions.REPORT_SEG_DOWNLOADED, request=request, report=report, content=content,
                    fmt="dicom-seg")
    return content


def scan_report_sr_issue(*, request, report) -> bytes:
    """The analysis as a DICOM Structured Report (reports.sr); DicomExportUnavailable for non-DICOM scans. The
    audit names the SR's SOP Instance UID and the SEG it references."""
    from reports.seg import scan_seg, source_datasets
    from reports.sr import scan_sr_bytes

    sources = source_datasets(report.scan)
    seg = scan_seg(report, sources)
    content = scan_sr_bytes(report, sources, seg)
    _audit_download(action=actions.REPORT_SR_DOWNLOADED, request=request, report=report, content=content,
                    fmt="dicom-sr", extra={"seg_sop_instance_uid": seg.SOPInstanceUID,
                                           "review_id": report.review.pk if report.review else None})
    return content


# --- Sending an analysis to the PACS (reports.pacs; settings.PACS_DESTINATION) --------------------------------

class PacsUnavailable(Exception):
    """This scan cannot be sent: no PACS is configured, or the scan is not a DICOM upload."""


def pacs_destination():
    """The configured PACS (PACS_DESTINATION) as a PacsDestination, None without one: for pages and queueing.
    Whatever talks to it takes ``pacs_connection``."""
    from reports.pacs import parse_destination

    return parse_destination(settings.PACS_DESTINATION)


def pacs_connection(text: str | None = None):
    """The PACS to talk to (PACS_DESTINATION, or ``text``: a transfer's recorded one), over DICOM TLS when PACS_TLS
    is set; None without one. PacsSendFailed (not transient) when the TLS files cannot be used."""
    from dataclasses import replace

    from reports.pacs import PacsSendFailed, parse_destination

    destination = parse_destination(settings.PACS_DESTINATION if text is None else text)
    if destination is None or not settings.PACS_TLS:
        return destination
    try:
        return replace(destination, tls=dicom_tls_context(server=False))
    except ValueError as exc:
        raise PacsSendFailed(str(exc)) from exc


def dicom_tls_context(*, server: bool):
    """This portal's DICOM TLS context from DICOM_TLS_CERTIFICATE, DICOM_TLS_PRIVATE_KEY and DICOM_TLS_TRUSTED (the
    receiver's with ``server=True``); ValueError naming the file that could not be used."""
    from reports.pacs import tls_context

    return tls_context(certificate=settings.DICOM_TLS_CERTIFICATE, private_key=settings.DICOM_TLS_PRIVATE_KEY,
                       trusted=settings.DICOM_TLS_TRUSTED, server=server)


def pacs_send_request(*, request, scan_pk: int):
    """Queue sending the scan's newest finished analysis to the PACS: a PacsTransfer row (audited), then the task
    once the row is committed. Another doctor's scan is a 404; NoFinishedAnalysis without an analysis;
    PacsUnavailable without a PACS or for a scan that is not DICOM."""
    from reports.selectors import scan_report_for

    destination = pacs_destination()
    if destination is None:
        raise PacsUnavailable("No PACS is configured for this portal (PACS_DESTINATION, AE_TITLE@host:port).")
    report = scan_report_for(user=request.user, scan_pk=scan_pk)
    if report.scan.kind != "dicom":
        raise PacsUnavailable(f"Only a DICOM upload can be sent to the PACS; this scan is "
                              f"{report.scan.get_kind_display()}. Download the PDF report instead.")
    return _pacs_queue(scan=report.scan, job=report.job, user=request.user, destination=destination, request=request)


def _pacs_queue(*, scan, job, user, destination, request=None, extra: dict | None = None):
    """A PacsTransfer row and its audit, then the task once the row is committed. Earlier transfers of the scan
    still waiting to try again are given up: the new one sends the newest state."""
    from reports.models import PacsTransfer

    with transaction.atomic():
        transfer = PacsTransfer.objects.create(scan=scan, job=job, requested_by=user, destination=str(destination))
        audit_record(action=actions.PACS_SEND_REQUESTED, request=request, actor=user, obj=scan, details={
            "transfer_id": transfer.pk, "scan_id": scan.pk, "job_id": job.pk, "destination": str(destination),
            **(extra or {})})
        waiting = PacsTransfer.objects.select_for_update().filter(scan=scan, status=PacsTransfer.Status.RETRYING)
        for earlier in waiting.exclude(pk=transfer.pk):
            _pacs_finish(earlier.pk, failed=f"{earlier.detail} Not tried again: replaced by a newer request "
                                            f"(transfer #{transfer.pk}).", instances=earlier.instances,
                         extra={"replaced_by": transfer.pk})
        transaction.on_commit(lambda: _dispatch_pacs(transfer.pk))
    return transfer


def pacs_send_after_review(*, review, request=None):
    """Keep the PACS up to date with the radiologist: when the reviewed analysis has been sent to the PACS before,
    send it again, as the reviewer, so that the PACS gets the verified structured report (which names the one it
    replaces) and the report with the review. None (nothing sent) without a PACS or when the analysis was never
    sent: a review does not send an analysis nobody chose to send."""
    from reports.models import PacsTransfer

    destination = pacs_destination()
    if destination is None or not PacsTransfer.objects.filter(job_id=review.job_id,
                                                              status=PacsTransfer.Status.SENT).exists():
        return None
    return _pacs_queue(scan=review.scan, job=review.job, user=review.reviewer, destination=destination,
                       request=request, extra={"reason": "review", "review_id": review.pk})


def pacs_send_after_evidence(*, scan, reason: str, details: dict | None = None):
    """Keep the PACS up to date with pixel evidence found after the analysis was sent (another stored copy, or the
    PACS's own, holds one of the scan's images with other pixels): when the scan's newest finished analysis has been
    sent, send it again, for the scan's owner, so that the PACS gets the structured report that carries the
    evidence (its own UID, naming the one without it). None (nothing sent) without a PACS, for a scan that is not
    DICOM, or when that analysis was never sent."""
    from inference.models import InferenceJob
    from reports.models import PacsTransfer

    destination = pacs_destination()
    if destination is None or scan.kind != "dicom":
        return None
    job = scan.jobs.filter(status=InferenceJob.Status.SUCCEEDED).order_by("-created_at", "-id").first()
    if job is None or not PacsTransfer.objects.filter(job=job, status=PacsTransfer.Status.SENT).exists():
        return None
    return _pacs_queue(scan=scan, job=job, user=scan.owner, destination=destination,
                       extra={"reason": reason, **(details or {})})


def _dispatch_pacs(transfer_id: int) -> None:
    from reports.tasks import send_to_pacs

    # PACS_QUEUE (optional): the queue of the workers that may reach the PACS; by default Celery's default queue,
    # which every worker reads unless WORKER_QUEUES keeps it to the detector (INFERENCE_QUEUE) only.
    queue = getattr(settings, "PACS_QUEUE", None)
    try:
        send_to_pacs.apply_async((transfer_id,), **({"queue": queue} if queue else {}))
    except Exception as exc:  # the broker is down: say so on the row rather than leave it queued forever
        logger.exception("could not queue PACS transfer %s", transfer_id)
        _pacs_finish(transfer_id, failed=f"The task could not be queued (the broker did not answer: {exc}). "
                                         "Send again when the portal's broker is back.")


def _pacs_finish(transfer_id: int, *, failed: str = "", instances: list | None = None, extra: dict | None = None,
                 transient: bool = False):
    """Record how a send went. A transient failure (``PacsSendFailed.transient``) with retries left waits to try
    again (``retrying``, ``next_attempt_at`` after the next of settings.PACS_RETRY_MINUTES; ``pacs_retry_due``
    sends it then); any other failure, or the last, is final."""
    from reports.models import PacsTransfer

    transfer = PacsTransfer.objects.select_related("requested_by").get(pk=transfer_id)
    delays = settings.PACS_RETRY_MINUTES
    retry = bool(failed) and transient and 1 <= transfer.attempts <= len(delays)
    now = timezone.now()
    transfer.status = (PacsTransfer.Status.RETRYING if retry else PacsTransfer.Status.FAILED if failed
                       else PacsTransfer.Status.SENT)
    transfer.detail = failed
    transfer.instances = instances or []
    transfer.next_attempt_at = now + timedelta(minutes=delays[transfer.attempts - 1]) if retry else None
    transfer.finished_at = None if retry else now
    transfer.save(update_fields=["status", "detail", "instances", "next_attempt_at", "finished_at"])
    audit_record(action=actions.PACS_SEND_FAILED if failed else actions.PACS_SENT, actor=transfer.requested_by,
                 obj=transfer.scan, outcome=actions.FAILURE if failed else actions.SUCCESS, details={
                     "transfer_id": transfer.pk, "scan_id": transfer.scan_id, "job_id": transfer.job_id,
                     "destination": transfer.destination, **({"error": failed} if failed else {}),
                     "instances": transfer.instances, "attempt": transfer.attempts,
                     **({"next_attempt_at": transfer.next_attempt_at.isoformat()} if retry else {}), **(extra or {})})
    return transfer


def pacs_retry_due(*, now=None) -> dict:
    """The periodic task's work (reports.tasks.retry_pacs_sends, every minute): send again the transfers whose
    time to try again has come, and count a send that has had no outcome for settings.PACS_SENDING_STALE_MINUTES
    (its worker died; a re-delivered task leaves a sending row alone) as a failure that may pass. Returns
    {"retried": n, "stale": n}."""
    from reports.models import PacsTransfer

    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.PACS_SENDING_STALE_MINUTES)
    stale = 0
    for transfer_id in PacsTransfer.objects.filter(status=PacsTransfer.Status.SENDING, attempted_at__lt=cutoff
                                                   ).values_list("pk", flat=True):
        with transaction.atomic():
            row = PacsTransfer.objects.select_for_update().filter(
                pk=transfer_id, status=PacsTransfer.Status.SENDING, attempted_at__lt=cutoff).first()
            if row is not None:
                _pacs_finish(row.pk, failed=f"The send had no outcome {settings.PACS_SENDING_STALE_MINUTES:g} minutes "
                                            "after it began (its worker stopped).", transient=True)
                stale += 1
    retried = 0
    for transfer_id in PacsTransfer.objects.filter(status=PacsTransfer.Status.RETRYING, next_attempt_at__lte=now
                                                   ).values_list("pk", flat=True):
        if PacsTransfer.objects.filter(pk=transfer_id, status=PacsTransfer.Status.RETRYING).update(
                status=PacsTransfer.Status.QUEUED):
            _dispatch_pacs(transfer_id)
            retried += 1
    return {"retried": retried, "stale": stale}


def pacs_transfer_run(*, transfer_id: int):
    """Build the SEG, the report as DICOM and the structured report, and C-STORE them to the PACS; the row says how it went. A transfer
    that is not queued any more (a re-delivered task) is left alone: nothing is sent twice."""
    from reports.models import PacsTransfer
    from reports.pacs import PacsSendFailed, store
    from reports.pdf_dicom import report_pdf_dicom
    from reports.selectors import NoFinishedAnalysis, scan_report_for
    from reports.seg import DicomExportUnavailable, dataset_bytes, scan_seg, source_datasets
    from reports.sr import scan_sr_bytes

    claimed = PacsTransfer.objects.filter(pk=transfer_id, status=PacsTransfer.Status.QUEUED).update(
        status=PacsTransfer.Status.SENDING, attempts=F("attempts") + 1, attempted_at=timezone.now(),
        next_attempt_at=None)
    if not claimed:
        return PacsTransfer.objects.get(pk=transfer_id)
    transfer = PacsTransfer.objects.select_related("requested_by").get(pk=transfer_id)
    made: list[tuple[str, bytes]] = []
    try:
        report = scan_report_for(user=transfer.requested_by, scan_pk=transfer.scan_id)
        if report.job.pk != transfer.job_id:
            raise PacsSendFailed(f"A newer analysis (job #{report.job.pk}) replaced job #{transfer.job_id} before it "
                                 "was sent; send the scan again to send the newer one.")
        sources = source_datasets(report.scan)
        seg = scan_seg(report, sources)
        made = [("seg", dataset_bytes(seg)),
                ("report", report_pdf_dicom(report, _report_pdf(user=transfer.requested_by, report=report), sources)),
                ("sr", scan_sr_bytes(report, sources, seg))]
        destination = pacs_connection(transfer.destination)
        results = store([data for _, data in made], destination, calling_ae=settings.PACS_CALLING_AE,
                        timeout=settings.PACS_TIMEOUT_SECONDS)
    except PacsSendFailed as exc:
        return _pacs_finish(transfer_id, failed=exc.message, instances=_named(made, exc.results),
                            transient=exc.transient)
    except (DicomExportUnavailable, NoFinishedAnalysis) as exc:
        return _pacs_finish(transfer_id, failed=str(exc))
    return _pacs_finish(transfer_id, instances=_named(made, results),
                        extra={"sha256": {what: hashlib.sha256(data).hexdigest() for what, data in made}})


def _named(made: list[tuple[str, bytes]], results: list[dict]) -> list[dict]:
    return [{"what": what, **result} for (what, _), result in zip(made, results)]
