"""Two-factor authentication: a six-digit code from an authenticator app (TOTP, RFC 6238; django-otp's TOTPDevice)
after the password.

- A user turns it on from their account page: the portal makes a secret, shows it as a QR code (and as text), and
  keeps it only once the user has typed a code the app made from it (``confirm``).
- From then on every browser log-in asks for a code before any page (accounts.middleware.TwoFactorMiddleware,
  ``verify``), and the API token is given only with one (``check_for_token``).
- ``MFA_REQUIRED``: admins (portal admins) or all (everyone) must set it up before any other page; they cannot turn
  it off, only set up a new phone.
- Recovery codes: turning it on makes ten one-time codes, shown once, each of which stands in for the app once (a
  phone left at home); the user can make a new set (``new_recovery_codes``), which voids the old one. A code is
  12 characters (60 random bits) and is kept only as a salted SHA-256 digest (``recovery_digest``) in django-otp's
  StaticToken: the database never holds one that could be typed in.
- A lost phone: a portal admin resets it (``reset``); the user sets it up again at the next log-in where required.
- Wrong codes wait 1, 2, 4, 8 ... seconds before the next try is even checked (django-otp's throttling), and a code
  is accepted once (a replayed code is refused).

Everything is audited: auth.mfa_enabled, auth.mfa_disabled, auth.mfa_verified, auth.mfa_failed, user.mfa_reset.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
from binascii import unhexlify
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import actions
from audit.services import audit_record

from .models import User

DEVICE_NAME = "authenticator app"
RECOVERY_NAME = "recovery codes"
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lower case: no 0/1 to mistake for o/l
RECOVERY_LENGTH = 12  # 60 random bits
DIGEST_LENGTH = 16  # StaticToken.token holds 16 characters: 64 bits of the digest


class TwoFactorError(Exception):
    """A code or a request the portal refuses; the message says why, for the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def required_for(user: User) -> bool:
    """Whether MFA_REQUIRED makes this user set up a second factor."""
    mode = settings.MFA_REQUIRED
    return mode == "all" or (mode == "admins" and user.is_portal_admin)


def device_for(user: User) -> TOTPDevice | None:
    """The user's confirmed authenticator (one per user), or None."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("-id").first()


def enabled_for(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def users_with_two_factor() -> set[int]:
    return set(TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True))


@dataclass(frozen=True)
class Setup:
    """What the set-up page shows: the secret as the app's QR code (an otpauth:// URL) and as text."""

    device: TOTPDevice
    secret: str  # base32, in groups of four, to type into an app that cannot scan
    url: str
    qr_svg: str  # an <svg> element


def start_setup(user: User) -> Setup:
    """A new secret for the user's authenticator app, kept unconfirmed until ``confirm`` (the same one on reloads
    of the page, so that a scanned code keeps working)."""
    import io

    import segno

    device = (TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
              or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False))
    secret = base64.b32encode(unhexlify(device.key)).decode("ascii").rstrip("=")
    buffer = io.BytesIO()
    segno.make(device.config_url, error="m").save(buffer, kind="svg", scale=5, border=2, xmldecl=False,
                                                  svgns=True, title="QR code for your authenticator app")
    return Setup(device=device, secret=" ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
                 url=device.config_url, qr_svg=buffer.getvalue().decode("utf-8"))


def _refuse_if_throttled(device) -> None:
    """TwoFactorError while the wait after wrong codes runs (django-otp's throttling), saying until when."""
    allowed, data = device.verify_is_allowed()
    if not allowed:
        until = (data or {}).get("locked_until")
        when = f" after {timezone.localtime(until):%H:%M:%S}" if isinstance(until, datetime) else " in a moment"
        raise TwoFactorError(f"Too many wrong codes: try again{when}.")


def _check(device: TOTPDevice, token: str) -> None:
    """Raise TwoFactorError unless ``token`` is the device's current code (throttled after wrong ones)."""
    token = (token or "").replace(" ", "").strip()
    _refuse_if_throttled(device)
    if not (token.isdigit() and len(token) == device.digits):
        device.throttle_increment()
        raise TwoFactorError(f"Enter the {device.digits}-digit code your authenticator app shows now.")
    if not device.verify_token(token):
        raise TwoFactorError("That code is not the one your authenticator app shows now (or it was used already): "
                             "enter the current one.")


def recovery_codes_left(user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__name=RECOVERY_NAME).count()


def _normalised(code: str) -> str:
    return code.replace("-", "").replace(" ", "").lower()


def recovery_digest(user_id: int, code: str) -> str:
    """What is stored for a recovery code: SHA-256 of the user's id and the code, 16 hex characters. Salted by the
    user, so that one table of digests does not serve every account; the code's 60 random bits make guessing it
    from the digest as hard as guessing it."""
    return hashlib.sha256(f"mri-tamper-recovery:{user_id}:{_normalised(code)}".encode()).hexdigest()[:DIGEST_LENGTH]


def new_recovery_codes(*, request) -> list[str]:
    """Ten new one-time recovery codes for the user ("abcd-efgh-ijkl"), replacing any earlier ones; shown once and
    stored only as digests."""
    user = request.user
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH)) for _ in range(RECOVERY_CODES)]
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
        StaticToken.objects.bulk_create(StaticToken(device=device, token=recovery_digest(user.pk, code))
                                        for code in codes)
        audit_record(action=actions.MFA_RECOVERY_CODES, request=request, actor=user, obj=user,
                     details={"username": user.username, "codes": len(codes)})
    return ["-".join(code[i:i + 4] for i in range(0, RECOVERY_LENGTH, 4)) for code in codes]


def _is_recovery_code(token: str) -> bool:
    """A recovery code has 12 characters ("abcd-efgh-ijkl"; 8 for the sets made before codes were stored as
    digests); an app's code has 6 digits."""
    return len(_normalised(token)) in (RECOVERY_LENGTH, 8)


def _use_recovery_code(user: User, token: str) -> int:
    """Use up one recovery code (raise TwoFactorError if it is not one of the user's); how many are left."""
    device = StaticDevice.objects.filter(user=user, name=RECOVERY_NAME).first()
    if device is None:
        raise TwoFactorError("This account has no recovery codes: use the code from your authenticator app.")
    _refuse_if_throttled(device)
    if not device.verify_token(recovery_digest(user.pk, token)):
        raise TwoFactorError("That is not one of your recovery codes, or it was used already.")
    return recovery_codes_left(user)


def confirm(*, request, token: str) -> TOTPDevice:
    """Turn two-factor authentication on: ``token`` must come from the secret ``start_setup`` showed. The session
    counts as verified; an earlier authenticator of the user is replaced. New recovery codes come with it
    (``new_recovery_codes``: the view shows them once)."""
    user = request.user
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    if device is None:
        raise TwoFactorError("Start the set-up again: the secret it showed is no longer valid.")
    _check(device, token)
    with transaction.atomic():
        replaced = TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()[0]
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        audit_record(action=actions.MFA_ENABLED, request=request, actor=user, obj=user,
                     details={"username": user.username, "replaced": bool(replaced)})
    otp_login(request, device)
    return device


def verify(*, request, token: str) -> int | None:
    """The log-in's second step: ``token`` from the user's authenticator, or one of their recovery codes (used up);
    the session counts as verified. How many recovery codes are left when one was used, else None."""
    user = request.user
    device = device_for(user)
    if device is None:
        raise TwoFactorError("This account has no authenticator app set up.")
    token = (token or "").strip()
    recovery = _is_recovery_code(token)
    try:
        left = _use_recovery_code(user, token) if recovery else None
        if not recovery:
            _check(device, token)
    except TwoFactorError as exc:
        audit_record(action=actions.MFA_FAILED, request=request, actor=user, obj=user, outcome="failure",
                     details={"username": user.username, "where": "log-in", "failures": _failures(user),
                              **({"with": "recovery code"} if recovery else {})})
        raise TwoFactorError(exc.message) from None
    otp_login(request, device)
    audit_record(action=actions.MFA_VERIFIED, request=request, actor=user, obj=user, details={
        "username": user.username, **({"with": "recovery code", "recovery_codes_left": left} if recovery else {})})
    return left


def _failures(user: User) -> int:
    """Wrong codes in a row (the app's and the recovery codes')."""
    return sum(d.throttling_failure_count for model in (TOTPDevice, StaticDevice)
               for d in model.objects.filter(user=user))


def check_for_token(*, user: User, token: str | None, request=None) -> None:
    """The API token's second factor: nothing for a user without one; else ``token`` must be the current code."""
    device = device_for(user)
    if device is None:
        return
    if not token:
        raise TwoFactorError("This account uses two-factor authentication: send the 6-digit code from the "
                             "authenticator app as otp_token.")
    try:
        _check(device, token)
    except TwoFactorError as exc:
        audit_record(action=actions.MFA_FAILED, request=request, actor=user, obj=user, outcome="failure",
                     details={"username": user.username, "failures": _failures(user), "where": "api token"})
        raise TwoFactorError(exc.message) from None


def disable(*, request, token: str) -> None:
    """Turn it off, with a current code; refused where MFA_REQUIRED requires it of the user."""
    user = request.user
    if required_for(user):
        raise TwoFactorError("Two-factor authentication is required for your account (MFA_REQUIRED): it cannot be "
                             "turned off. To move it to a new phone, set it up again.")
    device = device_for(user)
    if device is None:
        raise TwoFactorError("Two-factor authentication is not on for your account.")
    _check(device, token)
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    audit_record(action=actions.MFA_DISABLED, request=request, actor=user, obj=user,
                 details={"username": user.username})


def reset(*, actor: User, user: User, request=None) -> bool:
    """A portal admin removes a user's authenticator (a lost phone); the user signs in with the password alone,
    and sets one up again where MFA_REQUIRED requires it. Whether there was one."""
    removed = TOTPDevice.objects.filter(user=user).delete()[0]
    StaticDevice.objects.filter(user=user).delete()
    if removed:
        audit_record(action=actions.USER_MFA_RESET, request=request, actor=actor, obj=user,
                     details={"username": user.username})
    return bool(removed)
