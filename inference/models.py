"""Detector jobs and their results.

An `InferenceJob` row is the truth about a job: the Celery task only moves it forward
(`inference.services.job_run`). One job analyses every slice of one scan with one model version and
stores, per slice, a `SliceResult` (verdict, calibrated scores, a PNG label map) and the detected
`SliceInstance`s (class, score, box, COCO RLE of the mask); the scan-level verdict sits on the job.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from inference.ml.labels import CATEGORIES, VERDICTS

# What a doctor reads, on every page (the scan page's viewer.js uses the same words).
VERDICT_LABELS = {
    "real_tumor": "Real tumor",
    "no_tumor": "No tumor",
    "fake_added": "Fake added",
    "fake_removed": "Fake removed",
}


def verdict_label(verdict: str) -> str:
    """A verdict or region class in the words every page uses ("fake_added" -> "Fake added"); others unchanged."""
    return VERDICT_LABELS.get(verdict, verdict)


def percent(value) -> str:
    """0.527 -> "52.7%", 0.01 -> "1%" (one decimal at most: viewer.js's pct)."""
    return f"{round(float(value) * 100, 1):g}%"


def scores_text(scores: dict) -> str:
    """Verdict probabilities in a doctor's words, most probable first: "Real tumor 52.7% · Fake added 46.3% · ..."
    (viewer.js writes the same line when the job finishes while the page is open)."""
    ranked = sorted(scores.items(), key=lambda kv: (-float(kv[1]), kv[0]))
    return " · ".join(f"{verdict_label(name)} {percent(value)}" for name, value in ranked)


def scan_rule_text(rule: dict | None) -> str:
    """How a job's slices became its scan verdict, in a doctor's words (viewer.js gets it from the job's API)."""
    if not rule:
        return ("each verdict's highest probability on any slice (a tumour-free scan: its lowest), the most probable "
                "verdict wins")
    n = int(rule["min_slices"])
    ordinal = {1: "", 2: "2nd-", 3: "3rd-"}.get(n, f"{n}th-")
    which = f"{ordinal}highest slice tamper score"
    text = (f"the scan's probability of being tampered (were tampered and authentic scans equally common) rises "
            f"with its {which}, passing 50% at "
            f"{percent(rule['threshold'])}; the most probable of the four verdicts wins")
    if rule.get("chosen_on"):
        text += f"; chosen on {rule['chosen_on']}"
    return text


def scan_rule_brief(job) -> str:
    """A job's scan rule in a few characters, for tables and DICOM (CSV ``scan_rule``, the SR's algorithm
    parameters): "max" (the max rule), "threshold 0.96; slice 1; slope 1.04", or "" before a verdict."""
    if job is None or job.status != "succeeded":
        return ""
    rule = job.scan_rule or {}
    if not rule:
        return "max"
    return f"threshold {rule['threshold']:g}; slice {rule['min_slices']}; slope {rule.get('slope', 1.0):g}"


def fine_percent(value) -> str:
    """A probability that may be tiny, as a percentage: 0.527 -> "52.7%", 0.00033 -> "0.033%" (two significant
    figures under 1%), under one in a million -> "under 0.0001%"."""
    value = float(value)
    if value * 100 >= 1 or value == 0:
        return percent(value)
    if value < 1e-6:
        return "under 0.0001%"
    return f"{float(f'{value * 100:.2g}'):g}%"


def tamper_odds(job, site_prevalence=None) -> dict | None:
    """How likely a job's scan is tampered at a realistic share of tampered scans, or None (no verdict yet, or a
    verdict by the max rule, whose scores are not a calibrated probability). The scan rule's probability (the job's
    tamper score) holds were tampered and authentic scans equally common; `scan_rule.at_prevalence` restates it
    at the site's share (settings.TAMPER_PREVALENCE) or, where none is set, at 1 in 10, 100 and 1000. The verdict
    is not moved. {"even_odds", "site_prevalence", "at": [{"prevalence", "probability"}...], "text"}."""
    from inference.ml.scan_rule import REFERENCE_PREVALENCES, at_prevalence, one_in

    if job is None or job.status != "succeeded" or not job.scan_rule or job.tamper_score is None:
        return None
    if site_prevalence is None:
        site_prevalence = getattr(settings, "TAMPER_PREVALENCE", None)
    q = float(job.tamper_score)
    shares = (site_prevalence,) if site_prevalence else REFERENCE_PREVALENCES
    at = [{"prevalence": float(p), "probability": at_prevalence(q, p)} for p in shares]
    text = f"{fine_percent(q)} if tampered and authentic scans were equally common; "
    if site_prevalence:
        text += (f"{fine_percent(at[0]['probability'])} at the share of tampered scans this site expects "
                 f"({one_in(site_prevalence)})")
    else:
        text += "; ".join(f"{fine_percent(a['probability'])} if {one_in(a['prevalence'])}"
                          + (" scans were tampered" if i == 0 else "") for i, a in enumerate(at))
    return {"even_odds": q, "site_prevalence": float(site_prevalence) if site_prevalence else None, "at": at,
            "text": text + ". These do not change the verdict."}


def tamper_odds_text(job) -> str:
    odds = tamper_odds(job)
    return odds["text"] if odds else ""


VERDICT_CHOICES = [(v, VERDICT_LABELS[v]) for v in VERDICTS]
INSTANCE_LABEL_CHOICES = [(name, VERDICT_LABELS[name]) for name in CATEGORIES.values()]

# Pixel values of the stored mask PNGs (a label map): 0 background, then the COCO category ids.
MASK_BACKGROUND = 0
MASK_VALUES = dict(CATEGORIES)  # {1: "real_tumor", 2: "fake_added", 3: "fake_removed"}


def stale_after() -> timedelta:
    """How long a running job may go without a heartbeat before it counts as abandoned (worker died)."""
    return timedelta(seconds=getattr(settings, "INFERENCE_STALE_AFTER_SECONDS", 300))


class InferenceJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    scan = models.ForeignKey("scans.Scan", on_delete=models.CASCADE, related_name="jobs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)

    # Progress, in slices.
    slices_done = models.PositiveIntegerField(default=0)
    slices_total = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written by the worker after every batch; a running job whose heartbeat is older than
    # stale_after() was abandoned by a dead worker (see services.jobs_reap_stale).
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    # Timings of the last attempt, seconds.
    model_load_seconds = models.FloatField(null=True, blank=True)
    seconds_per_slice = models.FloatField(null=True, blank=True, help_text="Mean model time per slice.")
    seconds_total = models.FloatField(null=True, blank=True, help_text="Start of the attempt to its end.")

    # The model that made the results (every stored prediction names its model version).
    model_name = models.CharField(max_length=100, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    model_sha256 = models.CharField(max_length=64, blank=True)
    device = models.CharField(max_length=32, blank=True)

    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker started this job.")
    celery_task_id = models.CharField(max_length=255, blank=True)

    # The scan-level result (inference.ml.predictor.volume_verdict).
    verdict = models.CharField(max_length=16, choices=VERDICT_CHOICES, blank=True)
    confidence = models.FloatField(null=True, blank=True, help_text="The probability of the verdict.")
    tamper_score = models.FloatField(null=True, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    # How the slices became the scan verdict: {} the max rule, else the model's scan rule (threshold, min_slices,
    # chosen_on), as Predictor.scan_rule held it when the job ran.
    scan_rule = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["scan", "-created_at"], name="inference_job_scan_created")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed"]), name="inference_job_status_valid"
            ),
            models.CheckConstraint(condition=Q(slices_done__lte=F("slices_total")), name="inference_job_progress_le_total"),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | ~Q(verdict=""), name="inference_job_succeeded_has_verdict"
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status}) for scan {self.scan_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def progress(self) -> float:
        return self.slices_done / self.slices_total if self.slices_total else 0.0

    def is_stale(self, now=None) -> bool:
        if self.status != self.Status.RUNNING:
            return False
        beat = self.heartbeat_at or self.started_at or self.created_at
        return beat < (now or timezone.now()) - stale_after()


def mask_upload_to(instance: "SliceResult", filename: str) -> str:
    return f"masks/scan-{instance.job.scan_id}/job-{instance.job_id}/slice-{instance.index:04d}.png"


class SliceResult(models.Model):
    job = models.ForeignKey(InferenceJob, on_delete=models.CASCADE, related_name="slice_results")
    index = models.PositiveIntegerField(help_text="0-based position of the slice in the scan's volume.")
    # The slice the model read (its 8-bit image); null only if the scan's slices were rebuilt since.
    scan_slice = models.ForeignKey(
        "scans.ScanSlice", on_delete=models.SET_NULL, null=True, blank=True, related_name="results"
    )
    verdict = models.CharField(max_length=16, choices=VERDICT_CHOICES)
    confidence = models.FloatField(help_text="The probability of the verdict.")
    scores = models.JSONField(default=dict)
    tamper_score = models.FloatField()
    # A PNG label map the size of the slice: 0 background, 1 real_tumor, 2 fake_added, 3 fake_removed.
    # Empty when the model showed no region on this slice.
    mask = models.FileField(upload_to=mask_upload_to, max_length=255, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="inference_slice_result_unique_index")]

    def __str__(self) -> str:
        return f"Slice {self.index} of job {self.job_id}: {self.verdict}"


class SliceInstance(models.Model):
    slice_result = models.ForeignKey(SliceResult, on_delete=models.CASCADE, related_name="instances")
    label = models.CharField(max_length=16, choices=INSTANCE_LABEL_CHOICES)
    score = models.FloatField()
    # x0, y0, x1, y1 in slice pixels.
    box = models.JSONField()
    # COCO run-length encoding of the instance mask: {"size": [h, w], "counts": "<compressed string>"}
    # (pycocotools.mask.decode reads it).
    mask_rle = models.JSONField()
    area = models.PositiveIntegerField(help_text="Mask pixels.")

    class Meta:
        ordering = ["slice_result", "-score"]

    def __str__(self) -> str:
        return f"{self.label} {self.score:.2f} on slice result {self.slice_result_id}"
