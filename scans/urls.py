from django.urls import path
from django.views.generic import RedirectView

from scans import views

app_name = "scans"
urlpatterns = [
    path("", views.scan_list, name="list"),
    path("scans/", RedirectView.as_view(pattern_name="scans:list", query_string=True)),
    path("scans/upload/", views.scan_upload, name="upload"),
    path("scans/import/", views.pacs_import, name="pacs_import"),
    path("scans/<int:pk>/", views.scan_detail, name="detail"),
    path("scans/<int:pk>/compare-pacs/", views.scan_compare_pacs, name="compare_pacs"),
    path("scans/<int:pk>/original/", views.scan_download_original, name="download_original"),
    path("scans/<int:pk>/original/<int:file_id>/", views.scan_download_file, name="download_file"),
    path("scans/<int:pk>/slices/<int:index>.png", views.scan_slice_image, name="slice_image"),
    path("scans/<int:pk>/slices/<int:index>-16bit.png", views.scan_slice_image, {"bits": 16}, name="slice_image16"),
]
