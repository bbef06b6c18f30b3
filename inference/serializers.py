"""API representations of detector jobs and their per-slice results."""
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inference.models import InferenceJob, SliceInstance, SliceResult


class JobProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    fraction = serializers.FloatField()


class JobTimingsSerializer(serializers.Serializer):
    model_load_seconds = serializers.FloatField(allow_null=True)
    seconds_per_slice = serializers.FloatField(allow_null=True, help_text="Mean model time per slice.")
    seconds_total = serializers.FloatField(allow_null=True, help_text="Start of the attempt to its end.")


class JobModelSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    sha256 = serializers.CharField()
    device = serializers.CharField()


class JobLinksSerializer(serializers.Serializer):
    self = serializers.CharField()
    results = serializers.CharField()
    retry = serializers.CharField()
    masks_zip = serializers.CharField()
    scan_page = serializers.CharField()


class VerdictReadingSerializer(serializers.Serializer):
    verdict = serializers.CharField(help_text="A verdict the model gave in its measured evaluation.")
    evaluation_split = serializers.CharField(help_text="The split that evaluation measured (test: patient-disjoint).")
    said = serializers.IntegerField(help_text="Slices of that evaluation the model gave this verdict.")
    right = serializers.IntegerField(help_text="Of those, the slices that truly were it.")
    precision = serializers.FloatField(help_text="right / said.")
    others = serializers.DictField(child=serializers.IntegerField(),
                                   help_text="For the rest: what they truly were (verdict: slices).")
    text = serializers.CharField(help_text="The same in one sentence, as the scan page and the PDF report say it.")


class ScanRuleSerializer(serializers.Serializer):
    threshold = serializers.FloatField(allow_null=True, help_text="The slice tamper score at which the scan's "
                                       "probability of being tampered is 50% (null: the max rule).")
    min_slices = serializers.IntegerField(allow_null=True, help_text="The rule reads the tamper score of the scan's "
                                          "min_slices-th most suspicious slice.")
    slope = serializers.FloatField(allow_null=True, help_text="How fast the scan's tamper probability rises with "
                                   "that score's log-odds (fitted on validation series).")
    chosen_on = serializers.CharField(help_text="The series the rule was chosen on.")
    text = serializers.CharField(help_text="The rule in one sentence, as the scan page and the PDF report say it.")


class TamperOddsAtSerializer(serializers.Serializer):
    prevalence = serializers.FloatField(help_text="A share of scans that are tampered (0.01: 1 in 100).")
    probability = serializers.FloatField(help_text="The scan's probability of being tampered at that share.")


class TamperOddsSerializer(serializers.Serializer):
    even_odds = serializers.FloatField(help_text="The scan rule's tamper probability (the job's tamper_score): it "
                                       "holds were tampered and authentic scans equally common.")
    site_prevalence = serializers.FloatField(allow_null=True, help_text="The share of tampered scans this site "
                                             "expects (setting TAMPER_PREVALENCE), null where none is set.")
    at = TamperOddsAtSerializer(many=True, help_text="The probability at the site's share, or where none is set at "
                                "1 in 10, 100 and 1000 (Bayes' rule; the verdict does not change).")
    text = serializers.CharField(help_text="The same in one sentence, as the scan page and the PDF report say it.")


class JobSerializer(serializers.ModelSerializer):
    scan = serializers.IntegerField(source="scan_id", read_only=True)
    scan_rule = serializers.SerializerMethodField(
        help_text="How the slices' verdicts became the scan verdict: the model's scan rule (chosen on the "
                  "validation split's whole series by evaluate_series), or the max rule where it has none.")
    tamper_odds = serializers.SerializerMethodField(
        help_text="Once the job succeeded under a scan rule: how likely the scan is tampered where tampered scans "
                  "are rarer than authentic ones; null under the max rule (its scores are not a calibrated "
                  "probability) and before a verdict.")
    false_alarm_note = serializers.SerializerMethodField(
        help_text="Once the job succeeded with a verdict of tampering: how often the same weights and scan rule "
                  "flagged authentic series, as read and after the processing the input check misses most (the "
                  "series evaluation shipped beside the weights); null otherwise.")
    progress = serializers.SerializerMethodField()
    timings = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    verdict_readings = serializers.SerializerMethodField(
        help_text="Once the job succeeded: for each verdict the installed model gave in its measured evaluation "
                  "(the one its model page shows), how often it was right; empty when the job's verdicts came "
                  "from other weights than that evaluation measured, or nothing was measured.")
    can_retry = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = InferenceJob
        fields = [
            "id",
            "scan",
            "status",
            "progress",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "attempts",
            "error_message",
            "verdict",
            "confidence",
            "tamper_score",
            "scores",
            "scan_rule",
            "tamper_odds",
            "false_alarm_note",
            "timings",
            "model",
            "verdict_readings",
            "can_retry",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(VerdictReadingSerializer(many=True))
    def get_verdict_readings(self, job):
        if job.status != InferenceJob.Status.SUCCEEDED:
            return []
        from reports.selectors import verdict_guide_text, verdict_guides_for

        return [
            {"verdict": verdict, "evaluation_split": guide.split, "said": guide.said, "right": guide.right,
             "precision": round(guide.precision, 4), "others": dict(guide.others), "text": verdict_guide_text(guide)}
            for verdict, guide in verdict_guides_for(job).items()
        ]

    @extend_schema_field(ScanRuleSerializer)
    def get_scan_rule(self, job):
        from inference.models import scan_rule_text

        rule = job.scan_rule or {}
        return {"threshold": rule.get("threshold"), "min_slices": rule.get("min_slices"),
                "slope": rule.get("slope", 1.0) if rule else None,
                "chosen_on": rule.get("chosen_on", ""), "text": scan_rule_text(rule)}

    @extend_schema_field(TamperOddsSerializer(allow_null=True))
    def get_tamper_odds(self, job):
        from inference.models import tamper_odds

        odds = tamper_odds(job)
        if odds is None:
            return None
        return {**odds, "even_odds": round(odds["even_odds"], 6),
                "at": [{"prevalence": a["prevalence"], "probability": round(a["probability"], 8)} for a in odds["at"]]}

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_false_alarm_note(self, job):
        from reports.selectors import processed_caveat_for

        return processed_caveat_for(job) or None

    @extend_schema_field(JobProgressSerializer)
    def get_progress(self, job):
        return {"done": job.slices_done, "total": job.slices_total, "fraction": round(job.progress, 4)}

    @extend_schema_field(JobTimingsSerializer)
    def get_timings(self, job):
        return {
            "model_load_seconds": job.model_load_seconds,
            "seconds_per_slice": job.seconds_per_slice,
            "seconds_total": job.seconds_total,
        }

    @extend_schema_field(JobModelSerializer)
    def get_model(self, job):
        return {"name": job.model_name, "version": job.model_version, "sha256": job.model_sha256, "device": job.device}

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_can_retry(self, job):
        return job.status == InferenceJob.Status.FAILED

    @extend_schema_field(JobLinksSerializer)
    def get_links(self, job):
        return {
            "self": reverse("api-job-detail", args=[job.pk]),
            "results": reverse("api-job-results", args=[job.pk]),
            "retry": reverse("api-job-retry", args=[job.pk]),
            "masks_zip": reverse("inference:masks-zip", args=[job.pk]),
            "scan_page": reverse("scans:detail", args=[job.scan_id]),
        }


class SliceInstanceSerializer(serializers.ModelSerializer):
    box = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, help_text="x0, y0, x1, y1")
    mask_rle = serializers.JSONField(help_text='COCO RLE {"size": [h, w], "counts": "..."} (pycocotools.mask.decode)')

    class Meta:
        model = SliceInstance
        fields = ["label", "score", "box", "area", "mask_rle"]
        read_only_fields = fields


class SliceResultSerializer(serializers.ModelSerializer):
    mask_url = serializers.SerializerMethodField()
    instances = SliceInstanceSerializer(many=True, read_only=True)

    class Meta:
        model = SliceResult
        fields = ["id", "index", "verdict", "confidence", "tamper_score", "scores", "mask_url", "instances"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_mask_url(self, result):
        """The PNG label map (0 background, 1 real_tumor, 2 fake_added, 3 fake_removed), or null: no region."""
        return reverse("inference:mask", args=[result.pk]) if result.mask else None
