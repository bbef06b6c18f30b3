"""Which audited events are evidence of tampering that someone should hear of at once, and what to tell them.

Pure functions of an audit event (no database, no settings): `alert_for(event)` gives the alert's subject and body
lines, or None. The e-mail names scans by number and links to them; it never names a patient (nor a file name,
which may hold one).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

TAMPERED_VERDICTS = {"fake_added": "Fake: tumor added", "fake_removed": "Fake: tumor removed"}


@dataclass(frozen=True)
class Alert:
    kind: str  # pacs_changed, pacs_differs, altered_copy, tampered_verdict
    subject: str
    lines: tuple[str, ...]
    scan_id: int | None


def _slices(indices) -> str:
    """[3, 4, 9] -> "slices 4, 5, 10" (numbered from 1, as on the page)."""
    indices = list(indices or [])
    return f"slice{'s' if len(indices) != 1 else ''} {', '.join(str(i + 1) for i in indices)}"


def _differences(altered, missing) -> str:
    parts = []
    if altered:
        parts.append(f"{_slices(altered)} with other pixels than the portal's copy")
    if missing:
        parts.append(f"{_slices(missing)} missing")
    return "; ".join(parts) if parts else "every image the same as the portal's copy"


def _where(changes) -> tuple[str, ...]:
    """Where each altered slice differs (the audited scans.services.slice_changes), one line per slice."""
    from scans.dicom_text import change_text

    lines = []
    for index, region in sorted((changes or {}).items(), key=lambda item: int(item[0])):
        try:
            lines.append(f"Slice {int(index) + 1}: {change_text(region)}.")
        except (KeyError, TypeError, ValueError):  # an event written before its fields were
            continue
    return tuple(lines)


def _when(text) -> str:
    """An ISO time as "2026-12-07 12:14 UTC"."""
    try:
        at = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return "time not recorded"
    return f"{at.astimezone(timezone.utc) if at.tzinfo else at:%Y-%m-%d %H:%M} UTC"


def _scan_id(event) -> int | None:
    details = event.details or {}
    if event.object_type == "scans.scan" and str(event.object_id).isdigit():
        return int(event.object_id)
    value = details.get("scan_id")
    return int(value) if isinstance(value, int) or str(value or "").isdigit() else None


def alert_for(event) -> Alert | None:
    """The alert an audit event calls for, or None. ``event``: an audit.models.AuditEvent (or anything with its
    action, outcome, object_type, object_id and details)."""
    details = event.details or {}
    if event.outcome != "success":
        return None
    scan = _scan_id(event)
    if event.action == "pacs.copy_changed":
        return Alert("pacs_changed", f"The PACS's copy of scan #{scan} changed since its last comparison", (
            f"The PACS {details.get('destination', '')} now holds: "
            f"{_differences(details.get('altered_slices'), details.get('missing_slices'))}.",
            f"At the previous comparison ({_when(details.get('previous_at'))}) it held: "
            f"{_differences(details.get('previous_altered_slices'), details.get('previous_missing_slices'))}.",
            *_where(details.get("changes")),
            "The portal's copy is what the portal received; an image that changed in the archive since was altered, "
            "restored or deleted there.",
        ), scan)
    if event.action == "pacs.compared" and details.get("matches") is False and details.get("first", True):
        # the scan's first comparison (a later one that differs otherwise is pacs.copy_changed; one that differs
        # as before was alerted then)
        return Alert("pacs_differs", f"The PACS's copy of scan #{scan} differs from the portal's", (
            f"The PACS {details.get('destination', '')} holds "
            f"{_differences(details.get('altered_slices'), details.get('missing_slices'))}"
            f" ({details.get('same', '?')} of {details.get('instances', '?')} images the same).",
            *_where(details.get("changes")),
            "One of the two copies was altered after the images were made, whatever the detector reads.",
        ), scan)
    if event.action == "scan.altered_copy_found":
        copies = details.get("copies") or []
        lines = []
        for c in copies:
            lines.append(f"Scan #{c.get('scan_id')} holds {c.get('shared_instances', '?')} of the same DICOM "
                         f"instances; {_slices(c.get('altered_slices'))} of scan #{scan} "
                         f"{'differs' if len(c.get('altered_slices') or []) == 1 else 'differ'} from it.")
            lines.extend(_where(c.get("changes")))
        return Alert("altered_copy", f"Another stored copy of scan #{scan}'s images has other pixels", tuple(
            lines) + ("One image cannot have two versions: one of the copies was altered after it was made.",), scan)
    if event.action == "job.succeeded" and details.get("verdict") in TAMPERED_VERDICTS:
        confidence = details.get("confidence")
        share = f" (confidence {confidence * 100:.0f} %)" if isinstance(confidence, (int, float)) else ""
        return Alert("tampered_verdict", f"The detector read scan #{scan} as tampered", (
            f"Verdict: {TAMPERED_VERDICTS[details['verdict']]}{share}, by {details.get('model', 'the detector')}.",
            "A verdict is a prompt for a radiologist's review, not a diagnosis: the scan page shows the slices and "
            "the region, and how often the model is right at that confidence.",
        ), scan)
    return None
