from django.urls import path

from inference import views

app_name = "inference"
urlpatterns = [
    path("jobs/<int:job_id>/retry/", views.job_retry, name="job-retry"),
    path("scans/<int:scan_id>/reanalyse/", views.scan_reanalyse, name="scan-reanalyse"),
    path("jobs/<int:job_id>/masks.zip", views.masks_zip, name="masks-zip"),
    path("results/<int:result_id>/mask.png", views.mask_download, name="mask"),
]
