"""The API (DRF), mounted under /api/. Each app contributes its own api_urls."""
from django.urls import include, path

urlpatterns = [
    path("", include("accounts.api_urls")),
    path("", include("scans.api_urls")),
    path("", include("inference.api_urls")),
    path("", include("reports.api_urls")),
    path("", include("audit.api_urls")),
    path("", include("reviews.api_urls")),
]
