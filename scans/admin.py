from django.contrib import admin

from scans.models import Scan, ScanFile, ScanSlice


class ScanFileInline(admin.TabularInline):
    model = ScanFile
    extra = 0
    can_delete = False
    readonly_fields = ["position", "original_name", "sha256", "size_bytes", "file"]


@admin.register(Scan)
class ScanAdmin(admin.ModelAdmin):
    """Read-only: scans change only through the upload service."""

    list_display = ["id", "original_name", "owner", "kind", "n_slices", "created_at"]
    list_filter = ["kind", "created_at"]
    search_fields = ["original_name", "sha256", "owner__username"]
    inlines = [ScanFileInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # originals are evidence; deleting one here would orphan its stored files and results


@admin.register(ScanSlice)
class ScanSliceAdmin(admin.ModelAdmin):
    list_display = ["scan", "index"]
    raw_id_fields = ["scan"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
