"""Django admin for reports: PACS transfers, read-only (made by "Send to PACS", finished by the worker)."""
from django.contrib import admin

from portal.admin_base import ReadOnlyAdmin
from reports.models import PacsTransfer


@admin.register(PacsTransfer)
class PacsTransferAdmin(ReadOnlyAdmin):
    list_display = ["id", "scan", "job", "requested_by", "created_at", "finished_at", "destination", "status"]
    list_filter = ["status", "destination"]
    search_fields = ["scan__original_name", "requested_by__username", "detail"]
    readonly_fields = ["scan", "job", "requested_by", "created_at", "finished_at", "destination", "status", "detail",
                       "instances"]
