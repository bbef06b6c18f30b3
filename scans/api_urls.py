from django.urls import path

from scans import api

urlpatterns = [
    path("scans/", api.ScanListCreateApi.as_view(), name="api-scan-list"),
    path("scans/pacs-import/", api.PacsImportApi.as_view(), name="api-scan-pacs-import"),
    path("scans/<int:pk>/pacs-comparison/", api.ScanPacsComparisonApi.as_view(), name="api-scan-pacs-comparison"),
    path("pacs/studies/", api.PacsStudiesApi.as_view(), name="api-pacs-studies"),
    path("scans/<int:pk>/", api.ScanDetailApi.as_view(), name="api-scan-detail"),
    path("scans/<int:pk>/slices/", api.ScanSlicesApi.as_view(), name="api-scan-slices"),
    path("scans/<int:pk>/slices/<int:index>/image/", api.ScanSliceImageApi.as_view(), name="api-scan-slice-image"),
    path("scans/<int:pk>/original/", api.ScanOriginalApi.as_view(), name="api-scan-original"),
    path("scans/<int:pk>/files/<int:file_id>/", api.ScanFileApi.as_view(), name="api-scan-file"),
]
