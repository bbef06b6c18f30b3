from rest_framework import serializers

from inference.models import VERDICT_CHOICES
from reviews.models import NOTE_MAX_CHARS, Review


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)
    job = serializers.IntegerField(source="job_id", read_only=True, help_text="The analysis reviewed.")
    agrees = serializers.BooleanField(read_only=True, help_text="The radiologist gave the detector's verdict.")
    current = serializers.SerializerMethodField(
        help_text="The review in force: the newest one of the scan's newest analysis.")

    class Meta:
        model = Review
        fields = ["id", "job", "reviewer", "created_at", "verdict", "detector_verdict", "agrees", "note", "current"]
        read_only_fields = fields

    def get_current(self, obj) -> bool:
        return obj.pk == self.context.get("current_id")


class ReviewCreateSerializer(serializers.Serializer):
    """The request body of a review (the checks are the page form's, reviews.forms.ReviewForm)."""

    job = serializers.IntegerField(help_text="The id of the analysis you reviewed: the scan's newest job, succeeded.")
    verdict = serializers.ChoiceField(choices=VERDICT_CHOICES, help_text="Your verdict.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=NOTE_MAX_CHARS,
                                 help_text="Needed when your verdict differs from the detector's: why.")
