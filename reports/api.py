"""API downloads of the per-scan reports and the results CSV (session or token auth; same code path and the
same audit as the pages). Another doctor's scan is a 404; a scan with no finished analysis a 409."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from reports import services
from reports.models import PacsTransfer
from reports.selectors import NoFinishedAnalysis

from reports.views import report_file_response


def _conflict(request, exc):
    return Response({"detail": str(exc)}, status=409)


def _schema(media: str, what: str, operation_id: str):
    return extend_schema(operation_id=operation_id, responses={
        (200, media): OpenApiResponse(OpenApiTypes.BINARY, description=what),
        404: OpenApiResponse(description="No such scan, or another doctor's."),
        409: OpenApiResponse(description="The scan has no finished analysis yet."),
    })


class ScanReportPdfApi(APIView):
    @_schema("application/pdf", "The scan's PDF report.", "scan_report_pdf")
    def get(self, request, pk: int):
        return report_file_response(request=request, scan_pk=pk, kind="pdf", on_missing=_conflict)


class ScanReportCsvApi(APIView):
    @_schema("text/csv", "One row per slice of the scan's latest finished analysis.", "scan_report_csv")
    def get(self, request, pk: int):
        return report_file_response(request=request, scan_pk=pk, kind="csv", on_missing=_conflict)


class ScanReportSegApi(APIView):
    @_schema("application/dicom", "The scan's masks as a DICOM Segmentation referencing the uploaded series "
                                  "(DICOM uploads only; 409 otherwise).", "scan_report_seg")
    def get(self, request, pk: int):
        return report_file_response(request=request, scan_pk=pk, kind="seg", on_missing=_conflict)


class ScanReportPdfDicomApi(APIView):
    @_schema("application/dicom", "The scan's PDF report as a DICOM Encapsulated PDF in the source study, for a "
                                  "PACS (DICOM uploads only; 409 otherwise).", "scan_report_pdf_dicom")
    def get(self, request, pk: int):
        return report_file_response(request=request, scan_pk=pk, kind="pdf-dicom", on_missing=_conflict)


class ScanReportSrApi(APIView):
    @_schema("application/dicom", "The analysis as a DICOM Structured Report (TID 1500): the coded verdicts, their "
                                  "probabilities and the regions, referencing the SEG (DICOM uploads only; 409 "
                                  "otherwise).", "scan_report_sr")
    def get(self, request, pk: int):
        return report_file_response(request=request, scan_pk=pk, kind="sr", on_missing=_conflict)


class PacsTransferSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    outcome = serializers.CharField(source="outcome_text", read_only=True,
                                    help_text="What a sent transfer stored, or when one waiting to try again "
                                              "(status retrying) is tried again, in words; empty otherwise.")

    class Meta:
        model = PacsTransfer
        fields = ["id", "scan", "job", "requested_by", "created_at", "finished_at", "destination", "status", "detail",
                  "instances", "outcome", "attempts", "next_attempt_at"]


class ScanPacsTransfersApi(APIView):
    @extend_schema(operation_id="scan_pacs_transfers", summary="The scan's transfers to the PACS, newest first",
                   responses={200: PacsTransferSerializer(many=True), 404: OpenApiResponse(description="No such scan.")})
    def get(self, request, pk: int):
        from reports.selectors import pacs_transfers_for
        from scans.selectors import scan_get_for

        scan = scan_get_for(user=request.user, pk=pk)
        return Response(PacsTransferSerializer(pacs_transfers_for(scan=scan), many=True).data)

    @extend_schema(operation_id="scan_send_to_pacs", summary="Send the scan's analysis to the PACS",
                   description="Queues sending the newest finished analysis (its masks as DICOM SEG and its report as "
                               "DICOM Encapsulated PDF, in the source study) to the configured PACS by C-STORE. Poll "
                               "the returned transfer's `status`: queued, sending, sent or failed (`detail` says why).",
                   request=None,
                   responses={202: PacsTransferSerializer, 404: OpenApiResponse(description="No such scan."),
                              409: OpenApiResponse(description="No finished analysis, no PACS configured, or not a "
                                                               "DICOM upload.")})
    def post(self, request, pk: int):
        try:
            transfer = services.pacs_send_request(request=request, scan_pk=pk)
        except (NoFinishedAnalysis, services.PacsUnavailable) as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(PacsTransferSerializer(transfer).data, status=status.HTTP_202_ACCEPTED)


class ResultsCsvApi(APIView):
    @extend_schema(
        operation_id="results_csv",
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description=(
                "One row per scan the user may see, with its latest job and its newest review. Filters as the scans "
                "list: q, verdict, review, headers, date_from, date_to.")),
            400: OpenApiResponse(description="Invalid filter (nothing exported)."),
        },
        parameters=[OpenApiParameter(name, OpenApiTypes.DATE if name.startswith("date_") else str,
                                     description=f"As the scans list's `{name}`.")
                    for name in ("q", "verdict", "review", "headers", "date_from", "date_to")],
    )
    def get(self, request):
        from reports.views import results_csv_response

        return results_csv_response(request, on_invalid=_invalid_filter)


def _invalid_filter(request, errors):
    from scans.api import error_response

    return error_response("Invalid filter.", errors)
