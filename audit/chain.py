"""The one definition of an audit event's hash (used to write and to verify)."""
import hashlib
import json
from datetime import timezone

GENESIS_HASH = "0" * 64

# The fields an event's hash covers, in addition to prev_hash.
HASHED_FIELDS = (
    "seq",
    "created_at",
    "actor_id",
    "actor_username",
    "actor_role",
    "action",
    "object_type",
    "object_id",
    "object_label",
    "ip_address",
    "user_agent",
    "request_id",
    "outcome",
    "details",
)


def _timestamp(value) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(value):
    # PostgreSQL jsonb keeps numbers as numeric: 1e20 comes back as an integer, so integral
    # floats are hashed as integers on both sides.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def event_hash(values: dict, prev_hash: str) -> str:
    """SHA-256 over a canonical JSON of the event's fields and the previous event's hash."""
    payload = {name: values[name] for name in HASHED_FIELDS}
    payload["details"] = _canonical(payload["details"])
    payload["created_at"] = _timestamp(payload["created_at"])
    payload["prev_hash"] = prev_hash
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
