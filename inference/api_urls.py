from django.urls import path

from inference import views

urlpatterns = [
    path("jobs/<int:job_id>/", views.JobDetailApi.as_view(), name="api-job-detail"),
    path("jobs/<int:job_id>/results/", views.JobResultsApi.as_view(), name="api-job-results"),
    path("jobs/<int:job_id>/retry/", views.JobRetryApi.as_view(), name="api-job-retry"),
    path("scans/<int:scan_id>/reanalyse/", views.ScanReanalyseApi.as_view(), name="api-scan-reanalyse"),
    path("scans/<int:scan_id>/latest-job/", views.ScanLatestJobApi.as_view(), name="api-scan-latest-job"),
]
