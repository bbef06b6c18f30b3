"""CSV rows of the audit log, safe to open in a spreadsheet."""
import csv
import json

COLUMNS = ("seq", "time_utc", "actor", "role", "action", "outcome", "object_type", "object_id", "object_label",
           "ip_address", "user_agent", "request_id", "details", "prev_hash", "hash")

# Cells a spreadsheet would run as a formula (attacker-chosen usernames and user agents end up here).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class _Echo:
    def write(self, value):
        return value


def csv_lines(events):
    """Yield the CSV text line by line (for a streaming response)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for e in events:
        yield writer.writerow([spreadsheet_safe(v) for v in (
            e.seq, e.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), e.actor_username, e.actor_role, e.action,
            e.outcome, e.object_type, e.object_id, e.object_label, e.ip_address, e.user_agent, e.request_id,
            json.dumps(e.details, sort_keys=True, ensure_ascii=False), e.prev_hash, e.hash,
        )])
