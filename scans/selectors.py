"""Reads for scans. Ownership is enforced here, in the query: a doctor sees their own scans, an admin all.
Another doctor's scan is simply not in the queryset, so views answer 404."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.utils import timezone

from inference.ml.labels import TAMPERED
from inference.models import InferenceJob, SliceResult
from scans.models import Scan, ScanFile, ScanSlice

# Filter value meaning "no verdict yet" (no job, or the latest job has not succeeded).
VERDICT_PENDING = "pending"

# Filter values of the radiologist's review of the latest analysis (reviews.Review).
REVIEW_AWAITING = "awaiting"  # the latest job succeeded and has no review
REVIEW_CONFIRMED = "confirmed"  # its newest review gave the detector's verdict
REVIEW_OVERRULED = "overruled"  # its newest review gave another verdict

# Filter values of the DICOM header checks (inference.ml.provenance, Scan.metadata["header_checks"]).
HEADERS_WARNINGS = "warnings"  # the checks found signs of editing
HEADERS_CLEAN = "clean"  # checked, no sign of editing (notices allowed)
HEADERS_UNCHECKED = "unchecked"  # DICOM uploaded before the checks (python manage.py check_dicom_headers)

# Filter value of the comparison with other stored copies of the same DICOM instances (scan_copies).
COPIES_ALTERED = "altered"  # another stored scan holds one of its instances with other pixels
COPIES_PACS_DIFFERS = "pacs"  # its latest comparison with the PACS's copy found slices altered or missing there


def scan_visible_to(*, user) -> QuerySet[Scan]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Scan.objects.none()
    if user.is_portal_admin:
        return Scan.objects.all()
    return Scan.objects.filter(owner=user)


def _latest_review():
    from reviews.models import Review

    return Review.objects.filter(job_id=OuterRef("latest_job_id")).order_by("-created_at", "-id")


def _with_latest_job(qs: QuerySet[Scan]) -> QuerySet[Scan]:
    latest = InferenceJob.objects.filter(scan=OuterRef("pk")).order_by("-created_at", "-id")
    return qs.annotate(
        latest_job_id=Subquery(latest.values("id")[:1]),
        latest_job_status=Subquery(latest.values("status")[:1]),
        latest_verdict=Subquery(latest.values("verdict")[:1]),
        latest_confidence=Subquery(latest.values("confidence")[:1]),
    ).annotate(
        # the newest radiologist's review of that job (reviews.Review)
        latest_review_id=Subquery(_latest_review().values("id")[:1]),
        latest_review_verdict=Subquery(_latest_review().values("verdict")[:1]),
        latest_review_agrees=Subquery(_latest_review().annotate(
            agrees=ExpressionWrapper(Q(verdict=F("detector_verdict")), output_field=BooleanField())
        ).values("agrees")[:1]),
        # slices of that job read as tampered: a series can hold one such slice under a scan verdict that is not
        latest_tampered_slices=Coalesce(Subquery(
            SliceResult.objects.filter(job_id=OuterRef("latest_job_id"), verdict__in=TAMPERED)
            .order_by().values("job_id").annotate(n=Count("id")).values("n")[:1]
        ), 0),
    )


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def scan_list_for(*, user, filters: dict | None = None) -> QuerySet[Scan]:
    """The scans `user` may see, newest first, each annotated with its latest job's id, status, verdict and
    confidence (`latest_job_*`, `latest_verdict`, `latest_confidence`), how many of that job's slices were read
    as tampered (`latest_tampered_slices`) and its newest radiologist's review (`latest_review_id`,
    `latest_review_verdict`, `latest_review_agrees`; None when it has none).

    filters: `q` (text, `scan_search`), `verdict` (a verdict, or "pending"), `review` ("awaiting": analysed, not
    reviewed; "confirmed"; "overruled"), `headers` (the DICOM header checks: "warnings", "clean", "unchecked"),
    `copies` ("altered": another stored copy of one of its DICOM instances has other pixels; every scan is
    annotated `has_altered_copy`; "pacs": its latest comparison with the PACS's copy of its series found slices
    altered or missing there), `date_from`, `date_to` (dates, inclusive, in TIME_ZONE).
    """
    filters = filters or {}
    qs = _with_latest_job(scan_visible_to(user=user).select_related("owner")).annotate(
        has_altered_copy=altered_copy_exists())
    if filters.get("copies") == COPIES_ALTERED:
        qs = qs.filter(has_altered_copy=True)
    elif filters.get("copies") == COPIES_PACS_DIFFERS:
        qs = qs.filter(pacs_copy_differs())
    if filters.get("q"):
        qs = qs.filter(scan_search(filters["q"], by_owner=user.is_portal_admin))
    verdict = filters.get("verdict")
    if verdict == VERDICT_PENDING:
        qs = qs.filter(Q(latest_job_status__isnull=True) | ~Q(latest_job_status=InferenceJob.Status.SUCCEEDED))
    elif verdict:
        qs = qs.filter(latest_verdict=verdict, latest_job_status=InferenceJob.Status.SUCCEEDED)
    review = filters.get("review")
    if review == REVIEW_AWAITING:
        qs = qs.filter(latest_job_status=InferenceJob.Status.SUCCEEDED, latest_review_id__isnull=True)
    elif review == REVIEW_CONFIRMED:
        qs = qs.filter(latest_review_agrees=True)
    elif review == REVIEW_OVERRULED:
        qs = qs.filter(latest_review_agrees=False)
    headers = filters.get("headers")
    checked = Q(kind=Scan.Kind.DICOM, metadata__has_key="header_checks")
    if headers == HEADERS_WARNINGS:
        qs = qs.filter(metadata__header_checks__status="warnings")
    elif headers == HEADERS_CLEAN:
        qs = qs.filter(checked).exclude(metadata__header_checks__status="warnings")
    elif headers == HEADERS_UNCHECKED:
        qs = qs.filter(kind=Scan.Kind.DICOM).exclude(metadata__has_key="header_checks")
    if filters.get("date_from"):
        qs = qs.filter(created_at__gte=_day_start(filters["date_from"]))
    if filters.get("date_to"):
        qs = qs.filter(created_at__lt=_day_start(filters["date_to"] + timedelta(days=1)))
    return qs.order_by("-created_at", "-id")


SHA256_PREFIX = re.compile(r"[0-9a-f]{6,64}")
SCAN_NUMBER = re.compile(r"#?(\d{1,9})")


def scan_search(text: str, *, by_owner: bool = False) -> Q:
    """Scans matching the search box: ``text`` (case-insensitive) within the file name, the series description
    or the protocol name; a scan number ("12" or "#12"); the start of the SHA-256 of the uploaded bytes (6 hex
    digits or more); with ``by_owner`` (an admin's list), the owner's user name."""
    text = text.strip()
    match = (Q(original_name__icontains=text) | Q(metadata__series_description__icontains=text)
             | Q(metadata__protocol_name__icontains=text))
    if SHA256_PREFIX.fullmatch(text.lower()):
        match |= Q(sha256__startswith=text.lower())
    number = SCAN_NUMBER.fullmatch(text)
    if number:
        match |= Q(pk=int(number.group(1)))
    if by_owner:
        match |= Q(owner__username__icontains=text)
    return match


def scan_get_for(*, user, pk: int) -> Scan:
    """The scan, if `user` may see it; Http404 otherwise (also for another doctor's scan)."""
    return get_object_or_404(_with_latest_job(scan_visible_to(user=user).select_related("owner")), pk=pk)


def scan_files(*, scan: Scan) -> QuerySet[ScanFile]:
    return scan.files.order_by("position")


def scan_file_get(*, scan: Scan, file_id: int) -> ScanFile:
    return get_object_or_404(scan.files, pk=file_id)


def scan_slices(*, scan: Scan) -> QuerySet[ScanSlice]:
    return scan.slices.order_by("index")


def scan_slice_get(*, scan: Scan, index: int) -> ScanSlice:
    return get_object_or_404(scan.slices, index=index)


@dataclass(frozen=True)
class ScanCopy:
    """Another stored scan holding instances with the same SOP Instance UIDs as this one. ``altered_slices``: this
    scan's slices (0-based) whose instance has other pixels there: two versions of one image, so one was altered
    (or the other scan's). ``lossy_slices``: other pixels where one of the two was lossily compressed, which changes
    pixels: no evidence either way. ``visible``: whether the viewer may open that scan (else it is named by date
    only)."""

    scan_id: int
    created_at: object
    origin: str
    shared: int
    altered_slices: tuple[int, ...]
    visible: bool
    lossy_slices: tuple[int, ...] = ()
    # where the altered slices differ ({"<slice>": region}, scans.services.record_copy_changes); empty for copies
    # found before 2026-12-07 or whose originals could not be read
    changes: dict = field(default_factory=dict, compare=False)

    @property
    def source_text(self) -> str:
        return f"scan #{self.scan_id}" if self.visible else "a scan of another user"

    @property
    def identical(self) -> bool:
        return not self.altered_slices

    @property
    def warning_text(self) -> str:
        """The warning in words, without markup (the PDF report)."""
        where = f"scan #{self.scan_id}" if self.visible else "a scan of another user"
        return (f"{self.altered_text.capitalize()} here {self.differs_text} in {where} ({self.origin} on "
                f"{timezone.localtime(self.created_at):%Y-%m-%d %H:%M}). One image cannot have two versions: one of "
                "the two copies was altered after it was made, whatever the detector reads.")

    @property
    def differs_text(self) -> str:
        if len(self.altered_slices) == 1:
            return "shows other pixels than the same DICOM instance (same SOP Instance UID)"
        return "show other pixels than the same DICOM instances (same SOP Instance UIDs)"

    @property
    def altered_text(self) -> str:
        """"slice 4" or "slices 4, 9-11" (numbered from 1, as on the page)."""
        from scans.dicom_text import slices_text

        return slices_text(list(self.altered_slices))

    @property
    def lossy_text(self) -> str:
        from scans.dicom_text import slices_text

        return slices_text(list(self.lossy_slices)) if self.lossy_slices else ""


def altered_copy_exists() -> Exists:
    """For a Scan queryset: whether another stored scan holds one of its DICOM instances (same SOP Instance UID) with
    other pixels, neither of the two lossily compressed."""
    from scans.models import DicomInstance

    other_version = (DicomInstance.objects.filter(sop_instance_uid=OuterRef("sop_instance_uid"), lossy=False)
                     .exclude(scan_id=OuterRef("scan_id")).exclude(pixels_sha256=OuterRef("pixels_sha256")))
    return Exists(DicomInstance.objects.filter(scan_id=OuterRef("pk"), lossy=False).filter(Exists(other_version)))


def pacs_copy_differs() -> Q:
    """For a Scan queryset: the latest comparison with the PACS's copy found slices altered or missing there
    (``metadata["pacs_comparison"]["matches"]``, scans.services.scan_compare_with_pacs)."""
    return Q(metadata__pacs_comparison__matches=False)


def scan_copies(*, scan: Scan, user) -> list[ScanCopy]:
    """Every other stored scan that shares DICOM instances (by UID) with ``scan``, newest first, with the slices
    whose pixels differ. Compared across all scans, whoever uploaded them: a copy with other pixels is evidence
    wherever it is; the viewer gets the link only to scans they may see."""
    from scans.dicom_text import origin_text
    from scans.models import DicomInstance

    mine = {uid: (pixels, first, n, lossy) for uid, pixels, first, n, lossy in
            DicomInstance.objects.filter(scan=scan).values_list("sop_instance_uid", "pixels_sha256", "first_slice",
                                                                "n_frames", "lossy")}
    if not mine:
        return []
    by_scan: dict[int, list[tuple[str, str, bool]]] = {}
    for scan_id, uid, pixels, lossy in (DicomInstance.objects.filter(sop_instance_uid__in=list(mine))
                                        .exclude(scan=scan)
                                        .values_list("scan_id", "sop_instance_uid", "pixels_sha256", "lossy")):
        by_scan.setdefault(scan_id, []).append((uid, pixels, lossy))
    visible = set(scan_visible_to(user=user).filter(pk__in=list(by_scan)).values_list("pk", flat=True))
    copies = []
    for other in Scan.objects.filter(pk__in=list(by_scan)).order_by("-created_at", "-pk"):
        shared = by_scan[other.pk]

        def differing(lossy_either: bool) -> tuple[int, ...]:
            return tuple(sorted({mine[uid][1] + k for uid, pixels, lossy in shared if pixels != mine[uid][0]
                                 and (lossy or mine[uid][3]) == lossy_either for k in range(mine[uid][2])}))

        label, text = origin_text(other.metadata)
        copies.append(ScanCopy(scan_id=other.pk, created_at=other.created_at,
                               origin=f"{label.lower()} {text}".strip(), shared=len({u for u, *_ in shared}),
                               altered_slices=differing(False), visible=other.pk in visible,
                               lossy_slices=differing(True),
                               changes=(scan.metadata or {}).get("copy_changes", {}).get(str(other.pk), {})))
    return copies


@dataclass(frozen=True)
class SliceChange:
    """One slice whose image another copy holds with other pixels (the PACS's, or another stored scan's), where they
    differ (``region``: inference.ml.imaging.changed_regions' entry) and how much of it the detector's regions of the
    latest analysis cover (``coverage``: share of the changed pixels, label value covering most; None when not
    measured: no finished analysis, or a change that is not local)."""

    index: int
    source: str
    region: dict
    coverage: tuple[float, int | None] | None
    copy_id: int | None = None  # the other stored scan's id; None for the PACS's copy
    # the other copy's version of this slice, for the viewer to show in place (a stored copy the viewer may open):
    # {scan, slice, image_url, image16_url (or None), scale, offset}
    other: dict | None = None

    @property
    def text(self) -> str:
        from scans.dicom_text import change_text

        return change_text(self.region, self.coverage)

    @property
    def line(self) -> str:
        """"Slice 12, against the PACS's copy: 612 pixels differ ...", for lists (the page, the PDF report)."""
        return f"Slice {self.index + 1}, against {self.source}: {self.text}."

    def as_json(self) -> dict:
        """What the viewer draws and says on the slice (static/js/viewer.js)."""
        return {"source": self.source, "text": self.text, "box": self.region.get("box"),
                "mask_rle": self.region.get("mask_rle"), "other": self.other}

    def as_api(self) -> dict:
        """The API's entry (scans.serializers.SliceChangeSerializer)."""
        return {"slice": self.index, **{k: self.region.get(k) for k in CHANGE_FIELDS}, "text": self.text}


CHANGE_FIELDS = ("pixels", "fraction", "box", "max_difference", "spread", "mask_rle", "sizes", "other_slice")


PACS_SOURCE = "the PACS's copy"


def slice_changes_for(*, scan: Scan, copies: list[ScanCopy], comparison: dict | None, job=None) -> list[SliceChange]:
    """Every slice of ``scan`` another copy holds with other pixels, where they differ, in slice order: from the
    latest comparison with the PACS (``comparison``) and from the other stored copies (``copies``, scan_copies).
    With ``job`` (the latest analysis, when it succeeded) each local change says how much of it the detector's
    regions cover: a pixel-exact account of an edit beside what the detector showed."""
    found = [(int(i), None, PACS_SOURCE, region) for i, region in ((comparison or {}).get("changes") or {}).items()]
    for copy in copies:
        found += [(int(i), copy.scan_id, copy.source_text, region) for i, region in copy.changes.items()
                  if int(i) in copy.altered_slices]
    labels = _label_maps(job, {i for i, _, _, region in found if region.get("mask_rle")})
    versions = _other_versions(scan, {c.scan_id for c in copies if c.visible})
    out = []
    for index, copy_id, source, region in sorted(found, key=lambda f: (f[0], f[1] is not None, f[1] or 0)):
        coverage = None
        if job is not None and region.get("mask_rle"):
            coverage = _coverage(region["mask_rle"], labels.get(index))
        other = None
        if copy_id in versions and region.get("other_slice") is not None:
            other = versions[copy_id](int(region["other_slice"]))
        out.append(SliceChange(index=index, source=source, region=region, coverage=coverage, copy_id=copy_id,
                               other=other))
    return out


def _other_versions(scan: Scan, visible_ids: set[int]) -> dict:
    """Per other stored scan the viewer may open: slice -> where its version of that slice is (the 8-bit PNG; and
    the 16-bit one with its scale and offset when both scans have native pixels, so the viewer shows it in this
    scan's window rather than the other's)."""
    from django.urls import reverse

    out = {}
    for pk, scale, offset in Scan.objects.filter(pk__in=visible_ids).values_list("pk", "pixel_scale",
                                                                                  "pixel_offset"):
        native = scale is not None and scan.has_native_pixels

        def version(index: int, pk=pk, scale=scale, offset=offset, native=native) -> dict:
            return {"scan": pk, "slice": index, "image_url": reverse("scans:slice_image", args=[pk, index]),
                    "image16_url": reverse("scans:slice_image16", args=[pk, index]) if native else None,
                    "scale": scale, "offset": offset}
        out[pk] = version
    return out


def scan_slice_changes(*, scan: Scan, user, copies: list[ScanCopy] | None = None,
                       pacs_status: PacsCompareStatus | None = None) -> list[SliceChange]:
    """``slice_changes_for`` with what it needs looked up: the scan's other copies as ``user`` may see them, its
    latest comparison with the PACS, and its latest analysis when that succeeded (the scan page, the API)."""
    if scan.kind != Scan.Kind.DICOM:
        return []
    if copies is None:
        copies = scan_copies(scan=scan, user=user)
    if pacs_status is None:
        pacs_status = pacs_compare_status(scan)
    job = scan.jobs.order_by("-created_at", "-id").first()
    return slice_changes_for(scan=scan, copies=copies, comparison=pacs_status.comparison,
                             job=job if job is not None and job.status == InferenceJob.Status.SUCCEEDED else None)


def changes_by_slice(changes: list[SliceChange]) -> dict[int, list[dict]]:
    """0-based slice -> what the viewer draws and says there (SliceChange.as_json)."""
    out: dict[int, list[dict]] = {}
    for change in changes:
        out.setdefault(change.index, []).append(change.as_json())
    return out


def _label_maps(job, indices: set[int]) -> dict:
    """0-based slice -> the label map the analysis stored (None where it showed no region)."""
    from reports.overlay import read_png

    if job is None or not indices:
        return {}
    return {r.index: (read_png(r.mask) if r.mask else None)
            for r in SliceResult.objects.filter(job=job, index__in=sorted(indices))}


def _coverage(mask_rle: dict, labels) -> tuple[float, int | None]:
    import numpy as np

    from inference.ml.coco import rle_to_mask

    changed = rle_to_mask(mask_rle)
    if labels is None or labels.shape != changed.shape or not changed.any():
        return 0.0, None
    inside = labels[changed]
    values = inside[inside > 0]
    if not values.size:
        return 0.0, None
    return values.size / inside.size, int(np.bincount(values).argmax())


# A comparison with the PACS queued after an upload and not made after this long: say that no worker took it.
PACS_COMPARE_WAITING_MINUTES = 10


def _trigger_text(trigger: str | None, by: str) -> str:
    """Who or what made (or queued) a comparison, as the page says it (scans.services.TRIGGERS)."""
    return {"upload": "after the upload", "schedule": "on the periodic recheck",
            "command": "by the compare_with_pacs command"}.get(trigger or "", f"by {by or '?'}")


@dataclass(frozen=True)
class PacsCompareStatus:
    """Where a scan stands with the PACS's copy of its series (scans.services.scan_compare_with_pacs), for the scan
    page, its live update, the PDF report and the API. ``state``: none (never compared), queued (waiting for a
    worker: after the upload, or the periodic recheck), done or failed (the latest attempt); ``trigger``: what
    started it; ``comparison``: the latest comparison made (kept when a later attempt failed); ``text``: the state
    in words, as the page shows it."""

    state: str
    at: datetime | None
    by: str
    trigger: str
    error: str
    waiting_long: bool
    comparison: dict | None

    @property
    def differs(self) -> bool:
        """The latest comparison made found slices altered or missing in the PACS's copy."""
        from scans.dicom_text import pacs_comparison_matches

        return self.comparison is not None and not pacs_comparison_matches(self.comparison)

    @property
    def comparison_text(self) -> str:
        from scans.dicom_text import pacs_comparison_text

        return pacs_comparison_text(self.comparison) if self.comparison else ""

    @property
    def comparison_when(self) -> str:
        """"compared 2026-12-07 14:05 UTC by doctor_a" ("... after the upload", "... on the periodic recheck")."""
        if not self.comparison:
            return ""
        at = _local(self.comparison.get("at"))
        if at is None:
            return ""
        trigger = self.comparison.get("trigger")  # none before 2026-12-07: "by" whoever it was
        return f"compared {at:%Y-%m-%d %H:%M} {at.tzname()} {_trigger_text(trigger, self.comparison.get('by', ''))}"

    @property
    def text(self) -> str:
        """The state in words (without the comparison's outcome, which comparison_text gives)."""
        if self.at is None:
            return "Not compared yet."
        when = f"{self.at:%Y-%m-%d %H:%M} {self.at.tzname()}"
        who = _trigger_text(self.trigger, self.by)
        if self.state == "queued":
            if self.waiting_long:
                return (f"Queued for a worker at {when} ({who}) and not made yet: no worker has taken it. Compare "
                        "with the PACS to make it now.")
            again = " again" if self.comparison else ""
            return f"Being compared with the PACS{again} (queued at {when}, {who})."
        if self.state == "failed":
            earlier = " The outcome above is the latest comparison made." if self.comparison else ""
            return f"The comparison at {when} ({who}) could not be made: {self.error}{earlier}"
        return ""


def _local(text) -> datetime | None:
    try:
        return timezone.localtime(datetime.fromisoformat(text))
    except (TypeError, ValueError):
        return None


def pacs_compare_status(scan: Scan) -> PacsCompareStatus:
    metadata = scan.metadata or {}
    record = metadata.get("pacs_compare") or {}
    comparison = metadata.get("pacs_comparison")
    at = _local(record.get("at"))
    state = record.get("state") or ("done" if comparison else "none")
    if at is None and comparison:  # compared before the state was kept (2026-12-07)
        at, state = _local(comparison.get("at")), "done"
    waiting = state == "queued" and at is not None and (
        timezone.now() - at > timedelta(minutes=PACS_COMPARE_WAITING_MINUTES))
    return PacsCompareStatus(state=state if at else "none", at=at,
                             by=record.get("by") or (comparison or {}).get("by", ""),
                             trigger=record.get("trigger") or "request",
                             error=record.get("error", ""), waiting_long=waiting, comparison=comparison)
