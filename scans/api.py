"""The scans API (DRF). Thin: the same selectors and upload service as the pages.

Every 4xx answer has the body {"error": "...", "detail": ...}; another doctor's scan is a 404.
"""
from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from scans import selectors, serving, services
from scans.forms import (COPIES_FILTER_CHOICES, HEADERS_FILTER_CHOICES, REVIEW_FILTER_CHOICES, VERDICT_FILTER_CHOICES,
                         PacsImportForm, PacsSearchForm, ScanFilterForm)
from scans.ingest import UploadRejected
from scans.services import TRIGGERS
from scans.serializers import (
    ErrorSerializer,
    ScanDetailSerializer,
    ScanSerializer,
    ScanSliceSerializer,
    ScanUploadRequestSerializer,
    ScanUploadResponseSerializer,
    SliceChangeSerializer,
)
from scans.views import request_refused_message

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Bad input; `error` says what, `detail` the specifics."),
    403: OpenApiResponse(ErrorSerializer, description="Not logged in."),
    404: OpenApiResponse(ErrorSerializer, description="No such scan, or not yours."),
}
BINARY = {
    (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file."),
    302: OpenApiResponse(description="Object storage: a redirect to a short-lived signed URL."),
}


def error_response(message: str, detail=None, *, status_code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"error": message, "detail": detail}, status=status_code)


class ScansErrorsMixin:
    """Bad input of any kind is a 400 with {"error", "detail"}; other errors keep their status, same body."""

    def handle_exception(self, exc):
        if isinstance(exc, UploadRejected):
            return error_response(exc.message, exc.errors)
        if isinstance(exc, (RequestDataTooBig, SuspiciousOperation)):
            return error_response(request_refused_message(exc))
        if isinstance(exc, (exceptions.ParseError, exceptions.UnsupportedMediaType, exceptions.ValidationError)):
            message = "The request could not be read." if not isinstance(exc, exceptions.ValidationError) else (
                "Invalid parameters.")
            if isinstance(exc, exceptions.UnsupportedMediaType):
                message = "Send the files as multipart/form-data, each in a part named `files`."
            return error_response(message, exc.detail)
        if isinstance(exc, Http404):
            exc = exceptions.NotFound("No such scan (or it is not yours).")
        response = super().handle_exception(exc)
        if response is not None and isinstance(response.data, dict) and "error" not in response.data:
            response.data = {"error": str(response.data.get("detail", "")), "detail": None}
        return response


class ScanPagination(PageNumberPagination):
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 200


class SlicePagination(PageNumberPagination):
    page_size = 500
    page_size_query_param = "page_size"
    max_page_size = 2000


class ScanListCreateApi(ScansErrorsMixin, GenericAPIView):
    serializer_class = ScanSerializer
    pagination_class = ScanPagination
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        summary="List scans",
        description="Your scans (all scans for an admin), newest first, with the latest job's status and verdict.",
        parameters=[
            OpenApiParameter("q", str, description="Search: part of the file name, series description or protocol "
                             "name; a scan number (`12` or `#12`); the start of the SHA-256 (6 hex digits or more); "
                             "for an admin also the owner's user name."),
            OpenApiParameter("verdict", str, enum=[c[0] for c in VERDICT_FILTER_CHOICES if c[0]],
                             description="The latest job's verdict; `pending`: no verdict yet."),
            OpenApiParameter("review", str, enum=[c[0] for c in REVIEW_FILTER_CHOICES if c[0]],
                             description="The radiologist's review of the latest analysis: `awaiting` (analysed, "
                             "not reviewed), `confirmed` or `overruled` (its newest review)."),
            OpenApiParameter("headers", str, enum=[c[0] for c in HEADERS_FILTER_CHOICES if c[0]],
                             description="The DICOM header checks: `warnings` (signs of editing), `clean` (checked, "
                             "no sign), `unchecked` (DICOM uploaded before the checks)."),
            OpenApiParameter("copies", str, enum=[c[0] for c in COPIES_FILTER_CHOICES if c[0]],
                             description="`altered`: scans of which another stored copy (the same DICOM instances, "
                             "by UID) has other pixels; `pacs`: scans whose latest comparison with the PACS found "
                             "images altered or missing in the PACS's copy of the series."),
            OpenApiParameter("date_from", OpenApiTypes.DATE, description="Uploaded on or after (inclusive)."),
            OpenApiParameter("date_to", OpenApiTypes.DATE, description="Uploaded on or before (inclusive)."),
        ],
        responses={200: ScanSerializer(many=True), 400: ERRORS[400], 403: ERRORS[403]},
    )
    def get(self, request):
        form = ScanFilterForm(request.query_params)
        if not form.is_valid():
            return error_response("Invalid filter.", form.errors.get_json_data())
        scans = selectors.scan_list_for(user=request.user, filters=form.cleaned_data)
        page = self.paginate_queryset(scans)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="Upload a scan",
        description="One upload = one scan. The same bytes uploaded again return the existing scan (200, "
        "`created: false`). The detector job is queued when the upload is stored.",
        request={"multipart/form-data": ScanUploadRequestSerializer},
        responses={201: ScanUploadResponseSerializer, 200: ScanUploadResponseSerializer, 400: ERRORS[400],
                   403: ERRORS[403]},
    )
    def post(self, request):
        # An oversized body never gets here: scans.middleware.UploadSizeLimitMiddleware refuses it unread.
        result = services.scan_upload(user=request.user, files=request.FILES.getlist("files"), request=request,
                                      sequence=request.data.get("sequence") or None)
        scan = selectors.scan_get_for(user=request.user, pk=result.scan.pk)
        body = {
            "created": result.created,
            "message": result.message,
            "scan": ScanDetailSerializer(scan, context=self.get_serializer_context()).data,
        }
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class ScanDetailApi(ScansErrorsMixin, GenericAPIView):
    serializer_class = ScanDetailSerializer

    @extend_schema(summary="A scan", responses={200: ScanDetailSerializer, 403: ERRORS[403], 404: ERRORS[404]})
    def get(self, request, pk: int):
        scan = selectors.scan_get_for(user=request.user, pk=pk)
        services.scan_viewed(scan=scan, request=request)
        return Response(self.get_serializer(scan).data)


class ScanSlicesApi(ScansErrorsMixin, GenericAPIView):
    serializer_class = ScanSliceSerializer
    pagination_class = SlicePagination

    @extend_schema(summary="A scan's slices, in display order, with image URLs",
                   responses={200: ScanSliceSerializer(many=True), 403: ERRORS[403], 404: ERRORS[404]})
    def get(self, request, pk: int):
        scan = selectors.scan_get_for(user=request.user, pk=pk)
        page = self.paginate_queryset(selectors.scan_slices(scan=scan))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class ScanSliceImageApi(ScansErrorsMixin, GenericAPIView):
    @extend_schema(
        summary="One slice as PNG",
        parameters=[OpenApiParameter("bits", int, enum=[8, 16], description="16: native values (if not 8-bit).")],
        responses={(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY), 302: BINARY[302], 400: ERRORS[400],
                   404: ERRORS[404]},
    )
    def get(self, request, pk: int, index: int):
        bits = request.query_params.get("bits", "8")
        if bits not in ("8", "16"):
            return error_response("`bits` must be 8 or 16.", {"bits": bits})
        scan = selectors.scan_get_for(user=request.user, pk=pk)
        return serving.slice_image_response(selectors.scan_slice_get(scan=scan, index=index), bits=int(bits))


class ScanOriginalApi(ScansErrorsMixin, GenericAPIView):
    @extend_schema(summary="Download the original upload (one file as is; several files as a zip)",
                   responses={**BINARY, 403: ERRORS[403], 404: ERRORS[404]})
    def get(self, request, pk: int):
        scan = selectors.scan_get_for(user=request.user, pk=pk)
        files = list(selectors.scan_files(scan=scan))
        if not files:
            raise Http404
        services.scan_original_downloaded(scan=scan, request=request,
                                          scan_file=files[0] if len(files) == 1 else None)
        return serving.originals_response(scan, files)


class ScanFileApi(ScansErrorsMixin, GenericAPIView):
    @extend_schema(summary="Download one original file", responses={**BINARY, 403: ERRORS[403], 404: ERRORS[404]})
    def get(self, request, pk: int, file_id: int):
        scan = selectors.scan_get_for(user=request.user, pk=pk)
        scan_file = selectors.scan_file_get(scan=scan, file_id=file_id)
        services.scan_original_downloaded(scan=scan, request=request, scan_file=scan_file)
        return serving.original_file_response(scan_file)


# --- The PACS: search it and import a series (scans.services.pacs_search / scan_import_from_pacs) -------------

class PacsSeriesSerializer(serializers.Serializer):
    study_uid = serializers.CharField()
    series_uid = serializers.CharField()
    modality = serializers.CharField()
    number = serializers.CharField()
    description = serializers.CharField()
    instances = serializers.IntegerField(allow_null=True)
    is_image = serializers.BooleanField(help_text="false for reports, segmentations and other non-image series")


class PacsStudySerializer(serializers.Serializer):
    study_uid = serializers.CharField()
    date = serializers.CharField(source="date_text")
    accession_number = serializers.CharField()
    description = serializers.CharField()
    modalities = serializers.CharField()
    series = PacsSeriesSerializer(many=True)


class PacsSearchResponseSerializer(serializers.Serializer):
    studies = PacsStudySerializer(many=True)
    more = serializers.BooleanField(help_text="the PACS matched more studies than are listed (the newest are)")


class PacsImportRequestSerializer(serializers.Serializer):
    study_uid = serializers.CharField()
    series_uid = serializers.CharField()
    sequence = serializers.CharField(required=False, allow_blank=True)


def _pacs_failure(exc) -> Response:
    from reports.pacs import PacsError

    if isinstance(exc, services.PacsImportUnavailable):
        return error_response(str(exc), status_code=status.HTTP_409_CONFLICT)
    if isinstance(exc, PacsError):
        return error_response(exc.message, status_code=status.HTTP_502_BAD_GATEWAY)
    raise exc


class PacsStudiesApi(ScansErrorsMixin, GenericAPIView):
    serializer_class = PacsSearchResponseSerializer

    @extend_schema(
        summary="Search the PACS",
        description="The studies of the configured PACS (`PACS_DESTINATION`, DICOM C-FIND) that match every key "
        "given (`*` and `?` are wildcards), newest first, each with its series. 409 when no PACS is configured, "
        "502 when it fails. Audited without the searched values.",
        parameters=[OpenApiParameter("patient_id", str), OpenApiParameter("accession_number", str),
                    OpenApiParameter("study_date", str, description="YYYY-MM-DD (the first day)"),
                    OpenApiParameter("study_date_to", str, description="YYYY-MM-DD (the last day; default: "
                                     "study_date alone)")],
        responses={200: PacsSearchResponseSerializer, 400: ERRORS[400], 403: ERRORS[403], 409: ERRORS[400],
                   502: ERRORS[400]},
    )
    def get(self, request):
        from reports.pacs import PacsError

        form = PacsSearchForm(request.query_params)
        if not form.is_valid():
            return error_response("Invalid search.", form.errors.get_json_data())
        try:
            found = services.pacs_search(request=request, keys=form.keys())
        except (PacsError, services.PacsImportUnavailable) as exc:
            return _pacs_failure(exc)
        return Response(PacsSearchResponseSerializer(found).data)


class PacsImportApi(ScansErrorsMixin, GenericAPIView):
    serializer_class = ScanUploadResponseSerializer

    @extend_schema(
        summary="Import a series from the PACS",
        description="Retrieves one series (DICOM C-GET) and stores it as a scan exactly as an upload is (its "
        "checks, limits and detector job; the same series again returns the existing scan, 200). 400 when the "
        "files are not a scan the portal takes, 409 without a PACS, 502 when the PACS fails; nothing is stored "
        "then.",
        request=PacsImportRequestSerializer,
        responses={201: ScanUploadResponseSerializer, 200: ScanUploadResponseSerializer, 400: ERRORS[400],
                   403: ERRORS[403], 409: ERRORS[400], 502: ERRORS[400]},
    )
    def post(self, request):
        from reports.pacs import PacsError

        form = PacsImportForm(request.data)
        if not form.is_valid():
            return error_response("Invalid parameters.", form.errors.get_json_data())
        try:
            result = services.scan_import_from_pacs(
                user=request.user, study_uid=form.cleaned_data["study_uid"],
                series_uid=form.cleaned_data["series_uid"], sequence=form.cleaned_data["sequence"] or None,
                request=request)
        except (PacsError, services.PacsImportUnavailable) as exc:
            return _pacs_failure(exc)
        scan = selectors.scan_get_for(user=request.user, pk=result.scan.pk)
        body = {"created": result.created, "message": result.message,
                "scan": ScanDetailSerializer(scan, context=self.get_serializer_context()).data}
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class PacsComparisonSerializer(serializers.Serializer):
    destination = serializers.CharField()
    at = serializers.DateTimeField()
    by = serializers.CharField()
    instances = serializers.IntegerField(help_text="the scan's DICOM instances")
    same = serializers.IntegerField(help_text="of them, held by the PACS with the same pixels")
    altered_slices = serializers.ListField(child=serializers.IntegerField(), help_text=(
        "the scan's slices (0-based) whose instance the PACS holds with other pixels: one copy was altered"))
    lossy_slices = serializers.ListField(child=serializers.IntegerField(), required=False, help_text=(
        "the scan's slices whose pixels differ where one of the two copies was lossily compressed: no evidence "
        "either way"))
    missing_slices = serializers.ListField(child=serializers.IntegerField(), help_text=(
        "the scan's slices whose instance the PACS does not hold"))
    extra_in_pacs = serializers.IntegerField(help_text="instances of the series the PACS holds and the scan lacks")
    changes = SliceChangeSerializer(many=True, required=False, help_text=(
        "where each altered slice differs from the PACS's copy, pixel for pixel (comparisons before 2026-12-07 "
        "lack it)"))
    matches = serializers.BooleanField(required=False, help_text="no slice altered or missing in the PACS's copy")
    trigger = serializers.ChoiceField(choices=TRIGGERS, required=False, help_text=(
        "what made it: request (a user), upload (PACS_COMPARE_UPLOADS), schedule (PACS_RECHECK_HOURS), command "
        "(manage.py compare_with_pacs)"))
    seconds = serializers.FloatField()
    text = serializers.CharField(help_text="the outcome in words, as on the scan page")


class PacsCompareStatusSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["none", "queued", "done", "failed"], help_text=(
        "none: never compared; queued: waiting for a worker (after the upload, or the periodic recheck); done or "
        "failed: the latest attempt"))
    at = serializers.DateTimeField(allow_null=True, help_text="when the latest attempt was queued or made")
    by = serializers.CharField(allow_blank=True)
    trigger = serializers.ChoiceField(choices=TRIGGERS, help_text="what started the latest attempt")
    error = serializers.CharField(allow_blank=True, help_text="why the latest attempt failed")
    waiting_long = serializers.BooleanField(help_text="queued for more than 10 minutes: no worker has taken it")
    text = serializers.CharField(allow_blank=True, help_text="the state in words, as on the scan page")
    differs = serializers.BooleanField(help_text="the latest comparison made found slices altered or missing")
    comparison = serializers.SerializerMethodField(help_text="the latest comparison made (kept when a later "
                                                   "attempt failed), or null")
    comparison_when = serializers.CharField(allow_blank=True)
    slice_changes = serializers.SerializerMethodField(help_text=(
        "0-based slice -> where another copy of its image (the PACS's, another stored scan's) has other pixels: "
        "[{source, text, box, mask_rle}], what the scan page's viewer outlines"))

    @extend_schema_field(PacsComparisonSerializer(allow_null=True))
    def get_comparison(self, status) -> dict | None:
        if not status.comparison:
            return None
        return PacsComparisonSerializer(_comparison_body(status.comparison, self.context.get("changes", []))).data

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_slice_changes(self, status) -> dict:
        return selectors.changes_by_slice(self.context.get("changes", []))


def _comparison_body(comparison: dict, changes: list) -> dict:
    """A comparison as PacsComparisonSerializer gives it: in words, and its changes with what the detector covers
    (``changes``: scans.selectors.scan_slice_changes)."""
    from scans.dicom_text import pacs_comparison_text

    return {**comparison, "text": pacs_comparison_text(comparison),
            "changes": [c.as_api() for c in changes if c.copy_id is None]}


class ScanPacsComparisonApi(ScansErrorsMixin, GenericAPIView):
    serializer_class = PacsComparisonSerializer

    @extend_schema(
        summary="Where the scan stands with the PACS's copy of its series",
        description="The latest comparison made and how the latest attempt went: queued after the upload "
        "(PACS_COMPARE_UPLOADS), done, or failed with the reason. The scan page polls it while one is queued. "
        "404 for a scan you may not see.",
        responses={200: PacsCompareStatusSerializer, 403: ERRORS[403], 404: ERRORS[404]},
    )
    def get(self, request, pk: int):
        scan = selectors.scan_get_for(user=request.user, pk=pk)
        status_ = selectors.pacs_compare_status(scan)
        changes = selectors.scan_slice_changes(scan=scan, user=request.user, pacs_status=status_)
        return Response(PacsCompareStatusSerializer(status_, context={"changes": changes}).data)

    @extend_schema(
        summary="Compare the scan with the PACS's copy of its series",
        description="Retrieves the scan's series from the PACS (DICOM C-GET, by its Study and Series Instance UIDs) "
        "and compares every instance's pixels with the stored originals; nothing from the PACS is stored. The "
        "outcome is kept with the scan (`metadata.pacs_comparison`; a failure in the state `GET` gives) and "
        "audited. 404 for a scan you may not see, 409 without a PACS or for a scan that is not DICOM, 502 when the "
        "PACS fails or does not hold the series.",
        request=None,
        responses={200: PacsComparisonSerializer, 403: ERRORS[403], 404: ERRORS[404], 409: ERRORS[400],
                   502: ERRORS[400]},
    )
    def post(self, request, pk: int):
        from reports.pacs import PacsError

        scan = selectors.scan_get_for(user=request.user, pk=pk)
        try:
            comparison = services.scan_compare_with_pacs(scan=scan, request=request)
        except (PacsError, services.PacsImportUnavailable) as exc:
            return _pacs_failure(exc)
        changes = selectors.scan_slice_changes(scan=scan, user=request.user)
        return Response(PacsComparisonSerializer(_comparison_body(comparison, changes)).data)
