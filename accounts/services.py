"""Writes about users: creation, changes, (de)activation, passwords, API tokens.

The browser pages, the API and the management commands all go through these functions. Each change a
portal admin makes to an account is recorded in the audit log (log-ins, log-outs, failures and lockouts are
recorded by the audit app from Django's and axes' signals, not here).
"""
import secrets

from audit import actions
from audit.services import audit_record
from axes.utils import reset as axes_reset
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework.authtoken.models import Token

from .models import User
from .selectors import active_admin_count

EDITABLE_FIELDS = ("first_name", "last_name", "email", "role")


def generate_password() -> str:
    """A random initial password that passes the validators (about 100 bits)."""
    return secrets.token_urlsafe(16)


def _is_admin_role(*, role: str, is_superuser: bool) -> bool:
    return role == User.Role.ADMIN or is_superuser


@transaction.atomic
def user_create(
    *,
    actor: User | None,
    username: str,
    password: str,
    role: str = User.Role.DOCTOR,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    request=None,
) -> User:
    """Create an account. The password is checked against the validators; usernames are unique ignoring case."""
    username = username.strip()
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": f"A user named “{username}” already exists."})
    user = User(username=username, email=email.strip(), first_name=first_name.strip(),
                last_name=last_name.strip(), role=role)
    user.full_clean(exclude=["password"])
    validate_password(password, user=user)
    user.set_password(password)
    user.save()
    audit_record(action=actions.USER_CREATED, request=request, actor=actor, obj=user,
           details={"username": user.username, "role": user.role})
    return user


@transaction.atomic
def user_update(*, actor: User, user: User, data: dict, request=None) -> User:
    """Change name, e-mail or role. An admin cannot take the admin role from themselves or the last admin."""
    user = User.objects.select_for_update().get(pk=user.pk)
    changes = {}
    for field in EDITABLE_FIELDS:
        if field in data:
            new = data[field].strip() if isinstance(data[field], str) else data[field]
            old = getattr(user, field)
            if new != old:
                changes[field] = [old, new]
                setattr(user, field, new)
    if not changes:
        return user
    if "role" in changes and user.is_superuser and user.role != User.Role.ADMIN:
        raise ValidationError({"role": "A Django superuser is always an admin."})
    if "role" in changes and not _is_admin_role(role=user.role, is_superuser=user.is_superuser):
        if user.pk == actor.pk:
            raise ValidationError({"role": "You cannot remove your own admin role; ask another admin."})
        if user.is_active and active_admin_count() <= 1:
            raise ValidationError({"role": "This is the last active admin; make another admin first."})
    user.full_clean(exclude=["password"])
    user.save(update_fields=list(changes))
    action = actions.USER_ROLE_CHANGED if "role" in changes else actions.USER_UPDATED
    audit_record(action=action, request=request, actor=actor, obj=user, details={"changes": changes})
    return user


@transaction.atomic
def user_deactivate(*, actor: User, user: User, request=None) -> User:
    """Disable an account: it can no longer log in, its sessions and API token stop working. Nothing is deleted."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.pk == actor.pk:
        raise ValidationError("You cannot deactivate your own account.")
    if not user.is_active:
        return user
    if _is_admin_role(role=user.role, is_superuser=user.is_superuser) and active_admin_count() <= 1:
        raise ValidationError("This is the last active admin; make another admin first.")
    user.is_active = False
    user.save(update_fields=["is_active"])
    # Sessions of an inactive user are refused by the auth backend on their next request; the token goes now.
    Token.objects.filter(user=user).delete()
    audit_record(action=actions.USER_DISABLED, request=request, actor=actor, obj=user,
                 details={"username": user.username})
    return user


@transaction.atomic
def user_reactivate(*, actor: User, user: User, request=None) -> User:
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active:
        return user
    user.is_active = True
    user.save(update_fields=["is_active"])
    axes_reset(username=user.username)
    audit_record(action=actions.USER_ENABLED, request=request, actor=actor, obj=user,
                 details={"username": user.username})
    return user


@transaction.atomic
def user_set_password(*, actor: User | None, user: User, password: str, request=None) -> User:
    """Set a new password: by an admin (a reset, which also lifts a lockout) or by the user themselves.

    Other sessions of the user end (Django ties sessions to the password hash) and the API token is revoked.
    """
    validate_password(password, user=user)
    user.set_password(password)
    user.save(update_fields=["password"])
    Token.objects.filter(user=user).delete()
    by_self = actor is not None and actor.pk == user.pk
    if not by_self:
        axes_reset(username=user.username)
    audit_record(action=actions.PASSWORD_CHANGED if by_self else actions.USER_PASSWORD_RESET, request=request,
                 actor=actor, obj=user, details={"username": user.username})
    return user


def token_issue(*, user: User, request=None) -> Token:
    """The user's API token (one per user), created on first use."""
    token, created = Token.objects.get_or_create(user=user)
    if created:
        audit_record(action=actions.API_TOKEN_CREATED, request=request, actor=user, obj=user)
    return token


def token_revoke(*, user: User, request=None) -> bool:
    deleted, _ = Token.objects.filter(user=user).delete()
    if deleted:
        audit_record(action=actions.API_TOKEN_REVOKED, request=request, actor=user, obj=user)
    return bool(deleted)
