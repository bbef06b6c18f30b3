"""Base classes of the Django admin pages: records that change only through the portal's services."""
from django.contrib import admin


class NoEditAdmin(admin.ModelAdmin):
    """Shown, never added or changed here (the services write them); deleting stays possible."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(NoEditAdmin):
    """Shown only: records that are evidence (originals, reviews, transfers) are never deleted here either."""

    def has_delete_permission(self, request, obj=None):
        return False
