"""Django admin for reviews: read-only records (a review is recorded on the scan page or through the API, and
never changed or deleted)."""
from django.contrib import admin

from reviews.models import Review


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["id", "scan", "job", "reviewer", "created_at", "verdict", "detector_verdict"]
    list_filter = ["verdict", "detector_verdict"]
    search_fields = ["scan__original_name", "reviewer__username"]
    readonly_fields = ["scan", "job", "reviewer", "created_at", "verdict", "detector_verdict", "note"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
