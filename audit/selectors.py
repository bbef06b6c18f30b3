"""Reading the audit log: filtered lists for the admin pages, an object's history, and the check
of the whole hash chain."""
from dataclasses import dataclass
from datetime import datetime, time

from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.chain import GENESIS_HASH, HASHED_FIELDS, event_hash
from audit.models import AuditChainHead, AuditEvent


def audit_event_list(*, filters: dict | None = None) -> QuerySet[AuditEvent]:
    """Events, newest first. filters: user (username, substring), action, object_type, object_id,
    outcome, date_from / date_to (dates, inclusive, in the portal's time zone)."""
    filters = filters or {}
    qs = AuditEvent.objects.all().order_by("-seq")
    if filters.get("user"):
        qs = qs.filter(actor_username__icontains=filters["user"])
    if filters.get("action"):
        qs = qs.filter(action=filters["action"])
    if filters.get("object_type"):
        qs = qs.filter(object_type=filters["object_type"])
    if filters.get("object_id"):
        qs = qs.filter(object_id=str(filters["object_id"]))
    if filters.get("outcome"):
        qs = qs.filter(outcome=filters["outcome"])
    tz = timezone.get_current_timezone()
    if filters.get("date_from"):
        qs = qs.filter(created_at__gte=timezone.make_aware(datetime.combine(filters["date_from"], time.min), tz))
    if filters.get("date_to"):
        qs = qs.filter(created_at__lte=timezone.make_aware(datetime.combine(filters["date_to"], time.max), tz))
    return qs


def audit_object_history(*, obj) -> QuerySet[AuditEvent]:
    """Every event about one object (e.g. a scan), newest first."""
    return AuditEvent.objects.filter(object_type=obj._meta.label_lower, object_id=str(obj.pk)).order_by("-seq")


def audit_scan_history(*, scan) -> QuerySet[AuditEvent]:
    """Who did what to one scan, newest first: events about the scan itself, and events about its jobs,
    results and reports, which carry `details={"scan_id": <pk>}`."""
    return AuditEvent.objects.filter(
        Q(object_type=scan._meta.label_lower, object_id=str(scan.pk)) | Q(details__scan_id=scan.pk)
    ).order_by("-seq")


@dataclass
class ChainCheck:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str = ""


def audit_chain_verify() -> ChainCheck:
    """Walk the log in chain order and report the first broken link.

    Catches: an edited row (its hash no longer matches its content), a deleted row (a gap in seq,
    and the next row's prev_hash names a row that is gone), an inserted or reordered row (prev_hash
    mismatch), and rows cut off the end (the chain head names a later row)."""
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    fields = ["id", "prev_hash", "hash", *HASHED_FIELDS]
    for row in AuditEvent.objects.order_by("seq").values(*fields).iterator(chunk_size=2000):
        seq = row["seq"]
        if seq != expected_seq:
            return ChainCheck(False, checked, seq, row["hash"], expected_seq,
                              f"event #{expected_seq} is missing (next present is #{seq}): a row was deleted")
        if row["prev_hash"] != prev_hash:
            return ChainCheck(False, checked, seq, row["hash"], seq,
                              f"event #{seq} (id {row['id']}) does not link to event #{seq - 1}: prev_hash differs")
        recomputed = event_hash(row, row["prev_hash"])
        if recomputed != row["hash"]:
            return ChainCheck(False, checked, seq, row["hash"], seq,
                              f"event #{seq} (id {row['id']}, {row['action']}) was altered: its content no longer "
                              f"matches its hash")
        prev_hash, expected_seq, checked = row["hash"], seq + 1, checked + 1

    last_seq = expected_seq - 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and (head.seq, head.hash) != (last_seq, prev_hash):
        return ChainCheck(False, checked, last_seq, prev_hash, last_seq + 1,
                          f"the chain head names event #{head.seq} but the log ends at #{last_seq}: "
                          f"rows were removed from the end or the head was edited")
    if head is None and last_seq > 0:
        return ChainCheck(False, checked, last_seq, prev_hash, None, "the chain head row is missing")
    return ChainCheck(True, checked, last_seq, prev_hash)
