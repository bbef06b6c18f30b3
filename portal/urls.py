from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from portal.views import health

urlpatterns = [
    path("", include("scans.urls")),
    path("accounts/", include("accounts.urls")),
    path("inference/", include("inference.urls")),
    path("reports/", include("reports.urls")),
    path("audit/", include("audit.urls")),
    path("reviews/", include("reviews.urls")),
    path("api/", include("portal.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("django-admin/", admin.site.urls),
    path("healthz/", health, name="health"),
]
