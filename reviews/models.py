"""The radiologist's review of a detector verdict: the human decision the portal's verdict is a prompt for.

A `Review` is one radiologist's reading of one finished analysis (`inference.InferenceJob`) of a scan: their own
verdict (one of the four), the detector's verdict it was given against, and a note. Reviews are append-only, like
the audit log: a later review of the same analysis supersedes an earlier one on every page, and the earlier one
stays in the scan's review history. Nothing is edited or deleted.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from inference.ml.labels import VERDICTS
from inference.models import VERDICT_CHOICES, verdict_label

NOTE_MAX_CHARS = 2000


class ReviewImmutable(Exception):
    """A stored review cannot be changed or deleted; record a new one instead."""


class Review(models.Model):
    scan = models.ForeignKey("scans.Scan", on_delete=models.PROTECT, related_name="reviews")
    job = models.ForeignKey("inference.InferenceJob", on_delete=models.PROTECT, related_name="reviews",
                            help_text="The analysis whose verdict was reviewed.")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    verdict = models.CharField(max_length=16, choices=VERDICT_CHOICES, help_text="The radiologist's verdict.")
    detector_verdict = models.CharField(max_length=16, choices=VERDICT_CHOICES,
                                        help_text="The analysis's scan verdict when it was reviewed.")
    note = models.TextField(blank=True, max_length=NOTE_MAX_CHARS)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["job", "-created_at"], name="review_job_created")]
        constraints = [
            models.CheckConstraint(condition=Q(verdict__in=VERDICTS), name="review_verdict_valid"),
            models.CheckConstraint(condition=Q(detector_verdict__in=VERDICTS), name="review_detector_verdict_valid"),
        ]

    def __str__(self) -> str:
        return f"Review {self.pk} of scan {self.scan_id}: {self.verdict}"

    @property
    def agrees(self) -> bool:
        """The radiologist gave the detector's verdict."""
        return self.verdict == self.detector_verdict

    @property
    def decision_label(self) -> str:
        return "Confirmed" if self.agrees else "Overruled"

    @property
    def verdict_label(self) -> str:
        return verdict_label(self.verdict)

    @property
    def detector_verdict_label(self) -> str:
        return verdict_label(self.detector_verdict)

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ReviewImmutable("A review is never changed; record a new one.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ReviewImmutable("A review is never deleted; record a new one.")
