from django.urls import path

from reports import views

app_name = "reports"
urlpatterns = [
    path("model/", views.model_page, name="model"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("results.csv", views.results_csv, name="results_csv"),
    path("scans/<int:pk>/report.pdf", views.scan_report_pdf, name="scan_pdf"),
    path("scans/<int:pk>/results.csv", views.scan_report_csv, name="scan_csv"),
    path("scans/<int:pk>/seg.dcm", views.scan_report_seg, name="scan_seg"),
    path("scans/<int:pk>/report.dcm", views.scan_report_pdf_dicom, name="scan_pdf_dicom"),
    path("scans/<int:pk>/sr.dcm", views.scan_report_sr, name="scan_sr"),
    path("scans/<int:pk>/send-to-pacs/", views.scan_send_to_pacs, name="scan_send_to_pacs"),
]
