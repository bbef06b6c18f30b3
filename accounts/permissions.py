"""Who may reach the admin-only parts of the portal (user management, the audit log).

One rule, used by pages and the API alike: a portal admin is an active user with the admin role, or a Django
superuser. Anonymous visitors of a page are sent to the log-in page; a logged-in doctor gets 403 (the page
exists, it is not for them). Objects that belong to another doctor are a 404, decided in each app's selectors.
"""
from functools import wraps

from django.contrib.auth.mixins import UserPassesTestMixin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from audit import actions
from audit.services import audit_record


def is_portal_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_portal_admin)


class PortalAdminRequiredMixin(UserPassesTestMixin):
    """Class-based views: anonymous -> log-in page, logged-in non-admin -> 403, recorded as access.denied."""

    def test_func(self):
        return is_portal_admin(self.request.user)

    def handle_no_permission(self):
        if self.request.user.is_authenticated:
            audit_record(action=actions.ACCESS_DENIED, request=self.request, outcome=actions.DENIED,
                         details={"path": self.request.path[:200]})
        return super().handle_no_permission()


def portal_admin_required(view):
    """Function views: anonymous -> log-in page, logged-in non-admin -> 403."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_portal_admin:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


class IsPortalAdmin(BasePermission):
    """DRF: unauthenticated -> 401/403 by DRF's rules, authenticated non-admin -> 403."""

    message = "Only portal administrators may do this."

    def has_permission(self, request, view):
        return is_portal_admin(request.user)
