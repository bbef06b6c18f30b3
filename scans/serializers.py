from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inference.ml.sequence import DECLARABLE
from scans.models import Scan, ScanFile, ScanSlice


def _absolute(request, url: str) -> str:
    return request.build_absolute_uri(url) if request is not None else url


class ErrorSerializer(serializers.Serializer):
    """The body of every 4xx answer of the scans API."""

    error = serializers.CharField(help_text="What was wrong, for a person.")
    detail = serializers.JSONField(
        allow_null=True, help_text='Specifics: for an upload, a list of {"file", "error"}; for filters, field errors.'
    )


class LatestJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    verdict = serializers.CharField(allow_blank=True)
    confidence = serializers.FloatField(allow_null=True)
    tampered_slices = serializers.IntegerField(
        help_text="Slices of this job read as fake_added or fake_removed (a series can hold some under another "
                  "scan verdict)."
    )


class LatestReviewSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    verdict = serializers.CharField(help_text="The radiologist's verdict.")
    agrees = serializers.BooleanField(help_text="It is the detector's verdict (confirmed); false: overruled.")


class ScanFileSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ScanFile
        fields = ["id", "position", "original_name", "sha256", "size_bytes", "download_url"]

    def get_download_url(self, obj) -> str:
        return _absolute(self.context.get("request"), reverse("api-scan-file", args=[obj.scan_id, obj.pk]))


class ScanSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    latest_job = serializers.SerializerMethodField()
    latest_review = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()
    slices_url = serializers.SerializerMethodField()
    original_url = serializers.SerializerMethodField()

    class Meta:
        model = Scan
        fields = [
            "id", "uid", "owner", "created_at", "kind", "original_name", "sha256", "size_bytes", "metadata",
            "n_slices", "width", "height", "pixel_dtype", "pixel_scale", "pixel_offset", "window_low", "window_high",
            "latest_job", "latest_review", "page_url", "slices_url", "original_url",
        ]
        read_only_fields = fields

    @extend_schema_field(LatestJobSerializer(allow_null=True))
    def get_latest_job(self, obj):
        job_id = getattr(obj, "latest_job_id", None)
        if job_id is None:
            return None
        return {"id": job_id, "status": obj.latest_job_status, "verdict": obj.latest_verdict or "",
                "confidence": obj.latest_confidence, "tampered_slices": getattr(obj, "latest_tampered_slices", 0)}

    @extend_schema_field(LatestReviewSerializer(allow_null=True))
    def get_latest_review(self, obj):
        """The newest radiologist's review of the latest job (all of them: /api/scans/<id>/reviews/)."""
        review_id = getattr(obj, "latest_review_id", None)
        if review_id is None:
            return None
        return {"id": review_id, "verdict": obj.latest_review_verdict, "agrees": bool(obj.latest_review_agrees)}

    def get_page_url(self, obj) -> str:
        return _absolute(self.context.get("request"), reverse("scans:detail", args=[obj.pk]))

    def get_slices_url(self, obj) -> str:
        return _absolute(self.context.get("request"), reverse("api-scan-slices", args=[obj.pk]))

    def get_original_url(self, obj) -> str:
        return _absolute(self.context.get("request"), reverse("api-scan-original", args=[obj.pk]))


class SliceChangeSerializer(serializers.Serializer):
    """Where another copy of one of the scan's images has other pixels (scans.selectors.SliceChange.as_api)."""

    slice = serializers.IntegerField(help_text="the scan's slice (0-based)")
    pixels = serializers.IntegerField(allow_null=True, help_text="how many pixels differ; null when the two copies "
                                      "have other sizes (``sizes``)")
    fraction = serializers.FloatField(allow_null=True, help_text="of the image's pixels")
    box = serializers.ListField(child=serializers.IntegerField(), allow_null=True, help_text=(
        "[x, y, width, height] of the changed pixels, 0-based, from the top left corner"))
    max_difference = serializers.FloatField(allow_null=True, help_text="the largest change of a pixel value")
    spread = serializers.BooleanField(help_text="over a quarter of the image changed: a change of the whole image "
                                      "(contrast, scaling, re-encoding) rather than a local edit")
    mask_rle = serializers.JSONField(allow_null=True, help_text=(
        "COCO RLE ({size: [h, w], counts}) of the changed pixels, for a local change; null otherwise"))
    sizes = serializers.JSONField(required=False, allow_null=True, help_text="[[h, w] here, [h, w] there] when "
                                  "the two copies have other sizes")
    other_slice = serializers.IntegerField(required=False, allow_null=True, help_text=(
        "the other stored scan's slice (0-based) holding the same image; absent for the PACS's copy"))
    text = serializers.CharField(help_text="in words, with how much of it the detector's regions of the latest "
                                 "analysis cover")


class ScanCopySerializer(serializers.Serializer):
    scan = serializers.IntegerField(allow_null=True, help_text="the other scan's id; null when the caller may not "
                                                               "open it (another user's)")
    created_at = serializers.DateTimeField()
    shared_instances = serializers.IntegerField(help_text="DICOM instances (SOP Instance UIDs) the two scans share")
    altered_slices = serializers.ListField(child=serializers.IntegerField(), help_text=(
        "this scan's slices (0-based) whose instance has other pixels in the other scan: one of the copies was "
        "altered"))
    lossy_slices = serializers.ListField(child=serializers.IntegerField(), help_text=(
        "this scan's slices whose pixels differ where one of the two copies was lossily compressed: no evidence "
        "either way"))
    changes = SliceChangeSerializer(many=True, help_text="where the altered slices differ, pixel for pixel (empty "
                                    "for copies found before 2026-12-07)")


class ScanDetailSerializer(ScanSerializer):
    files = ScanFileSerializer(many=True, read_only=True)
    copies = serializers.SerializerMethodField(help_text="other stored scans holding the same DICOM instances, and "
                                                         "where their pixels differ")

    class Meta(ScanSerializer.Meta):
        fields = [*ScanSerializer.Meta.fields, "files", "copies"]
        read_only_fields = fields

    @extend_schema_field(ScanCopySerializer(many=True))
    def get_copies(self, obj) -> list[dict]:
        from scans.selectors import scan_copies, scan_slice_changes

        request = self.context.get("request")
        if request is None or obj.kind != Scan.Kind.DICOM:
            return []
        copies = scan_copies(scan=obj, user=request.user)
        changes = scan_slice_changes(scan=obj, user=request.user, copies=copies) if copies else []
        return [{"scan": c.scan_id if c.visible else None, "created_at": c.created_at, "shared_instances": c.shared,
                 "altered_slices": list(c.altered_slices), "lossy_slices": list(c.lossy_slices),
                 "changes": [change.as_api() for change in changes if change.copy_id == c.scan_id]}
                for c in copies]


class ScanSliceSerializer(serializers.ModelSerializer):
    image_url = serializers.SerializerMethodField(help_text="8-bit PNG after the windowing rule.")
    image16_url = serializers.SerializerMethodField(
        help_text="16-bit PNG of native values (native = png16 * pixel_scale + pixel_offset), or null for 8-bit "
        "sources."
    )

    class Meta:
        model = ScanSlice
        fields = ["index", "image_url", "image16_url"]

    def get_image_url(self, obj) -> str:
        return _absolute(self.context.get("request"), reverse("api-scan-slice-image", args=[obj.scan_id, obj.index]))

    @extend_schema_field(OpenApiTypes.URI)
    def get_image16_url(self, obj):
        if not obj.image16:
            return None
        url = reverse("api-scan-slice-image", args=[obj.scan_id, obj.index]) + "?bits=16"
        return _absolute(self.context.get("request"), url)


class ScanUploadRequestSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(),
        help_text="One scan: DICOM file(s) of one series, a zip of one DICOM series, one NIfTI, or one "
        "PNG/JPEG/TIFF. Send each file as a `files` part.",
    )
    sequence = serializers.ChoiceField(
        choices=list(DECLARABLE), required=False,
        help_text="The MRI sequence, where the file does not say (PNG, JPEG, TIFF, most NIfTI). DICOM acquisition "
        "parameters outrank it. The detector was trained on `flair` and `t1_post_contrast`.",
    )


class ScanUploadResponseSerializer(serializers.Serializer):
    created = serializers.BooleanField(help_text="False: these exact bytes were uploaded before; `scan` is that scan.")
    message = serializers.CharField()
    scan = ScanDetailSerializer()
