"""verify_audit_log against edits made directly in PostgreSQL, with the append-only trigger
disabled the way a database superuser could."""
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import actions
from audit.services import audit_record


@pytest.fixture
def five_events(db):
    return [audit_record(action=actions.SCAN_VIEWED, details={"n": n}) for n in range(5)]


def _as_superuser_without_trigger(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_update_delete")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_no_update_delete")


def test_intact_log_passes(five_events, capsys):
    call_command("verify_audit_log")
    assert "intact: 5 event(s)" in capsys.readouterr().out


def test_an_edited_row_is_reported(five_events):
    _as_superuser_without_trigger("UPDATE audit_auditevent SET actor_username = 'someone_else' WHERE seq = 3")
    with pytest.raises(CommandError, match=r"event #3 .*altered") as excinfo:
        call_command("verify_audit_log")
    assert excinfo.value.returncode == 1  # the process exit status


def test_an_edited_details_field_is_reported(five_events):
    _as_superuser_without_trigger("""UPDATE audit_auditevent SET details = '{"n": 99}' WHERE seq = 2""")
    with pytest.raises(CommandError, match=r"event #2 .*altered"):
        call_command("verify_audit_log")


def test_a_deleted_row_is_reported(five_events):
    _as_superuser_without_trigger("DELETE FROM audit_auditevent WHERE seq = 4")
    with pytest.raises(CommandError, match=r"event #4 is missing"):
        call_command("verify_audit_log")


def test_a_row_rewritten_with_a_fresh_hash_breaks_the_next_link(five_events):
    # Re-hashing the edited row is not enough: the next row still names the old hash.
    from audit.chain import HASHED_FIELDS, event_hash
    from audit.models import AuditEvent

    row = AuditEvent.objects.filter(seq=2).values(*HASHED_FIELDS, "prev_hash").get()
    row["outcome"] = "failure"
    forged = event_hash(row, row["prev_hash"])
    _as_superuser_without_trigger("UPDATE audit_auditevent SET outcome = 'failure', hash = %s WHERE seq = 2", [forged])
    with pytest.raises(CommandError, match=r"event #3 .*does not link"):
        call_command("verify_audit_log")


def test_rows_cut_off_the_end_are_reported(five_events):
    _as_superuser_without_trigger("DELETE FROM audit_auditevent WHERE seq = 5")
    with pytest.raises(CommandError, match=r"chain head names event #5"):
        call_command("verify_audit_log")


@pytest.mark.django_db(transaction=True)
def test_the_command_as_a_process_exits_0_when_intact_and_1_when_broken():
    import os
    import subprocess
    import sys
    from pathlib import Path

    for n in range(3):
        audit_record(action=actions.SCAN_VIEWED, details={"n": n})
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"}
    manage = Path(__file__).resolve().parents[2] / "manage.py"

    def run():
        return subprocess.run([sys.executable, str(manage), "verify_audit_log"], env=env, capture_output=True,
                              text=True, timeout=120)

    intact = run()
    assert intact.returncode == 0, intact.stderr
    assert "intact: 3 event(s)" in intact.stdout

    _as_superuser_without_trigger("UPDATE audit_auditevent SET object_label = 'forged' WHERE seq = 2")
    broken = run()
    assert broken.returncode == 1
    assert "event #2" in broken.stderr and "altered" in broken.stderr


def test_a_recorded_head_catches_a_cut_and_rehashed_tail(five_events, capsys):
    call_command("verify_audit_log")
    head = capsys.readouterr().out.split("head ")[1].split()[0].rstrip(";")
    assert head == f"5:{five_events[-1].hash}"
    call_command("verify_audit_log", expect=[head])

    # A superuser removes the last two events and repairs the chain head: the chain alone is consistent...
    _as_superuser_without_trigger("DELETE FROM audit_auditevent WHERE seq > 3")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditchainhead SET seq = 3, hash = %s", [five_events[2].hash])
    call_command("verify_audit_log")
    # ...but not against the head recorded before.
    with pytest.raises(CommandError, match=r"event #5, recorded earlier, is gone"):
        call_command("verify_audit_log", expect=[head])
    with pytest.raises(CommandError, match="SEQ:HASH"):
        call_command("verify_audit_log", expect=["five"])
