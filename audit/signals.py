"""Log-in, log-out, failed log-in and lockout events, from Django's and django-axes' signals."""
from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit import actions
from audit.services import audit_record


@receiver(user_logged_in, dispatch_uid="audit.login")
def on_login(sender, request, user, **kwargs):
    audit_record(action=actions.LOGIN, request=request, actor=user, obj=user)


@receiver(user_logged_out, dispatch_uid="audit.logout")
def on_logout(sender, request, user, **kwargs):
    if user is None:  # logging out while not logged in is not an act
        return
    audit_record(action=actions.LOGOUT, request=request, actor=user, obj=user)


def _attempted_username(credentials: dict | None, request) -> str:
    # Django masks the password in `credentials`; only the username is kept.
    username = (credentials or {}).get("username")
    if not username and request is not None:
        username = request.POST.get("username", "") if hasattr(request, "POST") else ""
    return str(username or "")[:150]


@receiver(user_login_failed, dispatch_uid="audit.login_failed")
def on_login_failed(sender, credentials=None, request=None, **kwargs):
    audit_record(
        action=actions.LOGIN_FAILED,
        request=request,
        outcome=actions.FAILURE,
        details={"username": _attempted_username(credentials, request)},
    )


@receiver(user_locked_out, dispatch_uid="audit.locked_out")
def on_locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    # axes sends this when the failure limit is reached, and again for each attempt during the lock, which
    # restarts the cool-off (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT): each event is a lock (re)started.
    audit_record(
        action=actions.LOCKED_OUT,
        request=request,
        outcome=actions.DENIED,
        details={"username": str(username or "")[:150],
                 "failures": getattr(request, "axes_failures_since_start", None)},
    )
