"""Reads about users."""
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.shortcuts import get_object_or_404

from .models import User


def user_list(*, filters: dict | None = None) -> QuerySet[User]:
    """All users, for admins. filters: q (username, name or e-mail contains), role, status (active|inactive),
    two_factor (on|off: whether they have an authenticator app set up)."""
    filters = filters or {}
    users = User.objects.all()
    if q := (filters.get("q") or "").strip():
        users = users.filter(
            Q(username__icontains=q) | Q(first_name__icontains=q) | Q(last_name__icontains=q) | Q(email__icontains=q)
        )
    if role := filters.get("role"):
        users = users.filter(role=role)
    status = filters.get("status")
    if status == "active":
        users = users.filter(is_active=True)
    elif status == "inactive":
        users = users.filter(is_active=False)
    two_factor = filters.get("two_factor")
    if two_factor in ("on", "off"):
        from django_otp.plugins.otp_totp.models import TOTPDevice

        with_app = Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True))
        users = users.filter(with_app if two_factor == "on" else ~with_app)
    return users.order_by("username")


def two_factor_summary() -> dict:
    """For the Users page: how many active users, and active admins, have two-factor authentication on."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    active = User.objects.filter(is_active=True)
    with_app = Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True))
    admins = active.filter(Q(role=User.Role.ADMIN) | Q(is_superuser=True))
    return {"users": active.count(), "users_on": active.filter(with_app).count(),
            "admins": admins.count(), "admins_on": admins.filter(with_app).count()}


def user_get(*, user_id: int) -> User:
    """One user, for admins; a 404 when there is none."""
    return get_object_or_404(User, pk=user_id)


def active_admin_count() -> int:
    return User.objects.filter(is_active=True).filter(Q(role=User.Role.ADMIN) | Q(is_superuser=True)).count()
