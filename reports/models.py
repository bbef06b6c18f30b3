from django.conf import settings
from django.db import models


class EvaluationRun(models.Model):
    """One run of `evaluate_detector`: which model, on which data, and the whole metrics.json.

    The model page and the comparison of runs read these rows; nothing shown there is typed in by
    hand. The headline numbers are copied out of `metrics` for sorting and listing."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    model_name = models.CharField(max_length=200)
    model_version = models.CharField(max_length=100)
    model_sha256 = models.CharField(max_length=64, db_index=True)
    dataset_dir = models.CharField(max_length=1024)
    dataset_sha256 = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of DATASET_DIR/annotations.json when it was readable."
    )
    split = models.CharField(max_length=32, blank=True)
    out_dir = models.CharField(max_length=1024)
    n_images = models.PositiveIntegerField()
    accuracy = models.FloatField()
    macro_f1 = models.FloatField()
    mean_iou = models.FloatField(null=True, blank=True)
    tamper_auc = models.FloatField(null=True, blank=True)
    metrics = models.JSONField()
    breakdown = models.JSONField(
        default=dict, blank=True,
        help_text="breakdown.json of the run: accuracy by tampering method, source, site and region size.",
    )
    intervals = models.JSONField(
        default=dict, blank=True,
        help_text="intervals.json of the run: confidence intervals of the headline figures, resampling patients.",
    )
    confidence = models.JSONField(
        default=dict, blank=True,
        help_text="confidence.json of the run: how often the model is right at each confidence it shows "
                  "(expected calibration error, Brier score, reliability bins).",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]

    def __str__(self):
        split = f" [{self.split}]" if self.split else ""
        return f"{self.model_name} {self.model_version} on {self.dataset_dir}{split} ({self.created_at:%Y-%m-%d %H:%M})"


class PacsTransfer(models.Model):
    """One request to send a scan's analysis to the PACS (settings.PACS_DESTINATION) as DICOM: the masks as a SEG,
    the PDF report as an Encapsulated PDF and the verdict as a structured report, all in the source study. Sent by a Celery task
    (reports.tasks.send_to_pacs); the row is the truth about how it went."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Waiting to try again"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    scan = models.ForeignKey("scans.Scan", on_delete=models.CASCADE, related_name="pacs_transfers")
    job = models.ForeignKey("inference.InferenceJob", on_delete=models.CASCADE, related_name="pacs_transfers",
                            help_text="the analysis that was sent")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="pacs_transfers")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    destination = models.CharField(max_length=300, help_text="AE_TITLE@host:port at the time of the request")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    detail = models.TextField(blank=True, help_text="why it failed, in words")
    # per instance sent: {"what": "seg"|"report"|"sr", "sop_class_uid", "sop_instance_uid", "status": "0x0000"}
    instances = models.JSONField(default=list, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="sends tried so far")
    attempted_at = models.DateTimeField(null=True, blank=True, help_text="when the last send began")
    next_attempt_at = models.DateTimeField(null=True, blank=True,
                                           help_text="when a transfer waiting to try again is sent again")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["scan", "-created_at"], name="pacs_transfer_scan_created")]

    WHAT_LABELS = {"seg": "DICOM SEG", "report": "report", "sr": "structured report"}

    @property
    def outcome_text(self) -> str:
        """What a sent transfer stored, in words: "3 objects stored (DICOM SEG, report and structured report)"; for
        one waiting to try again, when ("attempt 1 of 5 failed, trying again at 14:05 UTC"); empty otherwise (the
        page and pacs.js, via the API's ``outcome``, show the same words)."""
        if self.status == self.Status.RETRYING and self.next_attempt_at is not None:
            from django.utils import timezone

            total = len(settings.PACS_RETRY_MINUTES) + 1
            at = timezone.localtime(self.next_attempt_at)
            return f"attempt {self.attempts} of {total} failed, trying again at {at:%H:%M} {at.tzname()}"
        if self.status != self.Status.SENT:
            return ""
        labels = [self.WHAT_LABELS.get(i.get("what"), str(i.get("what"))) for i in self.instances]
        listed = ", ".join(labels[:-1]) + " and " + labels[-1] if len(labels) > 1 else "".join(labels)
        return f"{len(labels)} object{'' if len(labels) == 1 else 's'} stored ({listed})"

    def __str__(self) -> str:
        return f"PACS transfer {self.pk} of scan {self.scan_id} ({self.status})"
