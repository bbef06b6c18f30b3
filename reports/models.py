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
