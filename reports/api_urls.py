from django.urls import path

from reports import api

urlpatterns = [
    path("scans/<int:pk>/report.pdf", api.ScanReportPdfApi.as_view(), name="api-scan-report-pdf"),
    path("scans/<int:pk>/results.csv", api.ScanReportCsvApi.as_view(), name="api-scan-report-csv"),
]
