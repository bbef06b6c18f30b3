from django.urls import path

from reports import api

urlpatterns = [
    path("scans/<int:pk>/report.pdf", api.ScanReportPdfApi.as_view(), name="api-scan-report-pdf"),
    path("scans/<int:pk>/results.csv", api.ScanReportCsvApi.as_view(), name="api-scan-report-csv"),
    path("scans/<int:pk>/seg.dcm", api.ScanReportSegApi.as_view(), name="api-scan-report-seg"),
    path("scans/<int:pk>/report.dcm", api.ScanReportPdfDicomApi.as_view(), name="api-scan-report-pdf-dicom"),
    path("scans/<int:pk>/sr.dcm", api.ScanReportSrApi.as_view(), name="api-scan-report-sr"),
    path("scans/<int:pk>/pacs-transfers/", api.ScanPacsTransfersApi.as_view(), name="api-scan-pacs-transfers"),
    path("reports/results.csv", api.ResultsCsvApi.as_view(), name="api-results-csv"),
]
