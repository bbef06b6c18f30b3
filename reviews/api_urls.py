from django.urls import path

from reviews import api

urlpatterns = [
    path("scans/<int:pk>/reviews/", api.ScanReviewsApi.as_view(), name="api-scan-reviews"),
]
