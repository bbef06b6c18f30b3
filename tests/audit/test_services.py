import threading

import pytest
from django.db import connection, transaction
from django.test import RequestFactory

from audit import actions
from audit.chain import GENESIS_HASH
from audit.models import AppendOnlyError, AuditChainHead, AuditEvent
from audit.selectors import audit_chain_verify
from audit.services import audit_record


@pytest.fixture
def rf_request(doctor_a):
    request = RequestFactory().get(
        "/scans/1/", HTTP_USER_AGENT="pytest-browser/1.0", HTTP_X_REQUEST_ID="req-abc-123", REMOTE_ADDR="10.1.2.3"
    )
    request.user = doctor_a
    return request


def test_record_takes_actor_ip_agent_and_request_id_from_the_request(rf_request, doctor_b):
    event = audit_record(action=actions.SCAN_VIEWED, request=rf_request, obj=doctor_b, details={"slice": 3})

    event = AuditEvent.objects.get(pk=event.pk)
    assert event.actor_id == rf_request.user.pk
    assert event.actor_username == "doctor_a"
    assert event.actor_role == "doctor"
    assert event.action == "scan.viewed"
    assert event.object_type == "accounts.user"
    assert event.object_id == str(doctor_b.pk)
    assert event.object_label == "doctor_b"
    assert event.ip_address == "10.1.2.3"
    assert event.user_agent == "pytest-browser/1.0"
    assert event.request_id == "req-abc-123"
    assert event.outcome == "success"
    assert event.details == {"slice": 3}
    assert event.seq == 1 and event.prev_hash == GENESIS_HASH and len(event.hash) == 64


def test_a_malformed_request_id_is_replaced(doctor_a):
    request = RequestFactory().get("/", HTTP_X_REQUEST_ID="bad id; drop table")
    request.user = doctor_a
    event = audit_record(action=actions.SCAN_VIEWED, request=request)
    assert event.request_id != "bad id; drop table"
    assert len(event.request_id) == 32


def test_explicit_actor_wins_and_no_request_is_fine(admin_user):
    event = audit_record(action=actions.JOB_FAILED, actor=admin_user, outcome=actions.FAILURE,
                         details={"error": "out of memory"})
    assert (event.actor_username, event.actor_role, event.ip_address, event.request_id) == ("admin_1", "admin", "", "")


def test_each_event_links_to_the_previous_and_the_head_follows(db):
    first = audit_record(action=actions.LOGIN_FAILED, outcome=actions.FAILURE, details={"username": "x"})
    second = audit_record(action=actions.LOGIN_FAILED, outcome=actions.FAILURE, details={"username": "y"})
    assert second.seq == first.seq + 1
    assert second.prev_hash == first.hash
    head = AuditChainHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (second.seq, second.hash)
    assert audit_chain_verify().ok


def test_details_survive_the_database_round_trip_for_verification(db):
    audit_record(action=actions.EVALUATION_RECORDED, details={
        "big": 1e20, "small": 1.5e-10, "third": 0.1 + 0.2, "whole": 2.0, "nan": float("nan"),
        "text": "Größe ≥ 3 mm", "nested": {"b": [1, 2.5], "a": None},
    })
    check = audit_chain_verify()
    assert check.ok, check.problem


def test_bad_action_or_outcome_is_refused(db):
    with pytest.raises(ValueError):
        audit_record(action="Scan Viewed")
    with pytest.raises(ValueError):
        audit_record(action=actions.SCAN_VIEWED, outcome="maybe")
    assert AuditEvent.objects.count() == 0


def test_orm_cannot_change_or_delete_an_event(db):
    event = audit_record(action=actions.SCAN_VIEWED)
    event.action = actions.SCAN_DELETED
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action=actions.SCAN_DELETED)
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.bulk_create([AuditEvent(seq=99, action="x.y", hash="h", prev_hash="p")])
    assert AuditEvent.objects.get(pk=event.pk).action == actions.SCAN_VIEWED


@pytest.mark.parametrize("sql", [
    "UPDATE audit_auditevent SET action = 'scan.deleted'",
    "DELETE FROM audit_auditevent",
    "TRUNCATE audit_auditevent",
])
def test_postgresql_refuses_update_delete_and_truncate(db, sql):
    assert connection.vendor == "postgresql"
    audit_record(action=actions.SCAN_VIEWED)
    with pytest.raises(Exception, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert AuditEvent.objects.filter(action=actions.SCAN_VIEWED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_do_not_fork_the_chain():
    writers, per_writer = 4, 8
    errors = []

    def write(n):
        try:
            for i in range(per_writer):
                audit_record(action=actions.SCAN_VIEWED, details={"writer": n, "i": i})
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, writers * per_writer + 1))
    check = audit_chain_verify()
    assert check.ok, check.problem
