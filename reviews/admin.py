"""Django admin for reviews: read-only records (a review is recorded on the scan page or through the API, and
never changed or deleted)."""
from django.contrib import admin

from portal.admin_base import ReadOnlyAdmin
from reviews.models import Review


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ["id", "scan", "job", "reviewer", "created_at", "verdict", "detector_verdict"]
    list_filter = ["verdict", "detector_verdict"]
    search_fields = ["scan__original_name", "reviewer__username"]
    readonly_fields = ["scan", "job", "reviewer", "created_at", "verdict", "detector_verdict", "note"]
