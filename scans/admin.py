from django.contrib import admin

from portal.admin_base import ReadOnlyAdmin
from scans.models import Scan, ScanFile, ScanSlice


class ScanFileInline(admin.TabularInline):
    model = ScanFile
    extra = 0
    can_delete = False
    readonly_fields = ["position", "original_name", "sha256", "size_bytes", "file"]


@admin.register(Scan)
class ScanAdmin(ReadOnlyAdmin):
    """Read-only: scans change only through the upload service."""

    list_display = ["id", "original_name", "owner", "kind", "n_slices", "created_at"]
    list_filter = ["kind", "created_at"]
    search_fields = ["original_name", "sha256", "owner__username"]
    inlines = [ScanFileInline]  # not deletable here: originals are evidence, and would orphan files and results


@admin.register(ScanSlice)
class ScanSliceAdmin(ReadOnlyAdmin):
    list_display = ["scan", "index"]
    raw_id_fields = ["scan"]
