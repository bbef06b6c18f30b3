"""CSV exports of detector results (spreadsheet-safe: names a user typed cannot run as formulas)."""
import csv
import io

from audit.csv_export import spreadsheet_safe
from inference.ml.labels import VERDICTS
from inference.models import scan_rule_brief, tamper_odds
from scans.dicom_text import header_warnings_by_slice, pacs_comparison_matches

SLICE_COLUMNS = ("scan_id", "scan_sha256", "job_id", "model_name", "model_version", "slice", "verdict", "confidence",
                 "tamper_score", *(f"p_{v}" for v in VERDICTS), "regions", "region_labels", "max_region_score",
                 "mask_pixels", "header_warning")

SCAN_COLUMNS = ("scan_id", "uploaded_at", "uploaded_by", "original_name", "kind", "n_slices", "sha256", "job_id",
                "job_status", "verdict", "confidence", "tamper_score", "model_name", "model_version", "model_sha256",
                "finished_at", "review_verdict", "review_agrees", "reviewed_by", "reviewed_at", "review_note",
                "header_checks", "header_warnings", "altered_copy", "pacs_copy", "scan_rule",
                "tamper_probability_at_site_share")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return spreadsheet_safe(value)


def _csv(header, rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_fmt(v) for v in row])
    return buf.getvalue()


def scan_results_csv(report) -> str:
    """One row per slice of one scan's analysis."""
    scan, job = report.scan, report.job
    flagged = header_warnings_by_slice(scan.metadata or {})  # the DICOM header checks' warnings, by slice

    def rows():
        for r in report.results:
            instances = list(r.instances.all())
            yield (scan.pk, scan.sha256, job.pk, job.model_name, job.model_version, r.index + 1, r.verdict,
                   r.confidence, r.tamper_score, *(r.scores.get(v) for v in VERDICTS), len(instances),
                   ";".join(sorted({i.label for i in instances})),
                   max((i.score for i in instances), default=None), sum(i.area for i in instances),
                   "yes" if r.index in flagged else "")

    return _csv(SLICE_COLUMNS, rows())


def scans_results_csv(scans, jobs: dict, reviews: dict | None = None) -> str:
    """One row per scan, with its latest job (jobs: id -> InferenceJob) and that job's newest radiologist's review
    (reviews: id -> reviews.Review; empty columns when it has none)."""
    reviews = reviews or {}

    def rows():
        for scan in scans:
            job = jobs.get(scan.latest_job_id)
            review = reviews.get(getattr(scan, "latest_review_id", None))
            yield (scan.pk, scan.created_at, scan.owner.get_username(), scan.original_name, scan.kind, scan.n_slices,
                   scan.sha256, job.pk if job else None, job.status if job else "", job.verdict if job else "",
                   job.confidence if job else None, job.tamper_score if job else None,
                   job.model_name if job else "", job.model_version if job else "",
                   job.model_sha256 if job else "", job.finished_at if job else None,
                   review.verdict if review else "", ("yes" if review.agrees else "no") if review else "",
                   review.reviewer.get_username() if review else "", review.created_at if review else None,
                   review.note if review else "", *_header_columns(scan),
                   ("yes" if getattr(scan, "has_altered_copy", False) else "no") if scan.kind == "dicom" else "",
                   _pacs_copy(scan), scan_rule_brief(job), _at_site_share(job))

    return _csv(SCAN_COLUMNS, rows())


def _at_site_share(job) -> float | None:
    """The scan's tamper probability at the share of tampered scans the site set (TAMPER_PREVALENCE); empty where
    none is set or the verdict came from the max rule (inference.models.tamper_odds)."""
    odds = tamper_odds(job)
    return odds["at"][0]["probability"] if odds and odds["site_prevalence"] else None


def _pacs_copy(scan) -> str:
    """The latest comparison with the PACS's copy of the series: "same", "differs" (images altered or missing
    there), or "" where none was made."""
    comparison = (scan.metadata or {}).get("pacs_comparison")
    if not comparison:
        return ""
    return "same" if pacs_comparison_matches(comparison) else "differs"


def _header_columns(scan) -> tuple[str, int | None]:
    """The DICOM header checks' status (consistent, single, notices, warnings; "" where not made) and warnings."""
    checks = (scan.metadata or {}).get("header_checks") or {}
    return checks.get("status", ""), checks.get("warnings")
