"""Writing the audit log. `audit_record` is the only way a row gets in."""
import ipaddress
import json
import logging
import math
import re
import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import actions
from audit.chain import GENESIS_HASH, event_hash
from audit.models import AuditChainHead, AuditEvent

log = logging.getLogger(__name__)

_ACTION_FORMAT = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
_REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_for(request) -> str:
    """The request's id: set by RequestIdMiddleware, else taken from X-Request-ID, else a new one."""
    if request is None:
        return ""
    existing = getattr(request, "id", None)
    if isinstance(existing, str) and existing:
        return existing
    header = request.META.get("HTTP_X_REQUEST_ID", "")
    request.id = header if _REQUEST_ID_FORMAT.match(header) else uuid.uuid4().hex
    return request.id


def _client_ip(request) -> str:
    if request is None:
        return ""
    from axes.helpers import get_client_ip_address  # the same resolution axes uses for lockouts

    try:
        raw = get_client_ip_address(request) or ""
    except Exception:  # a bare HttpRequest (force_login, tests) has no REMOTE_ADDR
        raw = request.META.get("REMOTE_ADDR", "") or ""
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return ""


def _plain_json(value):
    """Details as plain JSON types (dates, UUIDs, Decimals to strings; NaN/inf to None)."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.loads(json.dumps(clean(value or {}), cls=DjangoJSONEncoder))


def _object_fields(obj) -> dict:
    if obj is None:
        return {"object_type": "", "object_id": "", "object_label": ""}
    meta = getattr(obj, "_meta", None)
    object_type = meta.label_lower if meta is not None else type(obj).__name__.lower()
    object_id = getattr(obj, "pk", None)
    return {
        "object_type": object_type[:100],
        "object_id": "" if object_id is None else str(object_id)[:64],
        "object_label": str(obj)[:255],
    }


def audit_record(
    *,
    action: str,
    request=None,
    actor=None,
    obj=None,
    outcome: str = actions.SUCCESS,
    details: dict | None = None,
) -> AuditEvent:
    """Append one event to the hash-chained log and return it.

    `actor` defaults to the request's authenticated user; `obj` is any model instance (its type,
    primary key and str() are kept). Runs in its own transaction (or the caller's): the chain head
    row is locked until commit, so concurrent writers queue in order.
    """
    if not _ACTION_FORMAT.match(action or ""):
        raise ValueError(f"audit action {action!r} must look like 'area.verb' (see audit/actions.py)")
    if action not in actions.LABELS:
        log.warning("audit action %r is not listed in audit/actions.py", action)
    if outcome not in actions.OUTCOMES:
        raise ValueError(f"audit outcome must be one of {actions.OUTCOMES}, not {outcome!r}")

    if actor is None and request is not None:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            actor = user
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:512] if request is not None else ""

    values = {
        "created_at": timezone.now(),
        "actor_id": actor.pk if actor is not None else None,
        "actor_username": actor.get_username()[:150] if actor is not None else "",
        "actor_role": (getattr(actor, "role", "") or "")[:16] if actor is not None else "",
        "action": action,
        **_object_fields(obj),
        "ip_address": _client_ip(request),
        "user_agent": user_agent,
        "request_id": request_id_for(request),
        "outcome": outcome,
        "details": _plain_json(details),
    }

    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
        if head is None:
            # First event (or first after a flush): create the head; a concurrent creator loses on
            # the primary key and retries with the lock.
            try:
                with transaction.atomic():
                    AuditChainHead.objects.create(pk=1, seq=0, hash=GENESIS_HASH)
            except IntegrityError:
                pass
            head = AuditChainHead.objects.select_for_update().get(pk=1)
        values["seq"] = head.seq + 1
        values["prev_hash"] = head.hash
        values["hash"] = event_hash(values, head.hash)
        event = AuditEvent.objects.create(**values)
        head.seq, head.hash = event.seq, event.hash
        head.save(update_fields=["seq", "hash"])
    return event
