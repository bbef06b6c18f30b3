"""Which audited events call for an alert, and what it says (alerts.rules: pure functions, hand-made events)."""
from types import SimpleNamespace

from alerts.rules import alert_for


def _event(action, details, outcome="success", object_type="scans.scan", object_id="12"):
    return SimpleNamespace(action=action, details=details, outcome=outcome, object_type=object_type,
                           object_id=object_id)


def test_a_pacs_copy_that_changed_names_the_slices_before_and_after():
    alert = alert_for(_event("pacs.copy_changed", {
        "destination": "ORTHANC@pacs:4242", "previous_at": "2026-12-06T23:00:05+00:00", "altered_slices": [10],
        "missing_slices": [], "previous_altered_slices": [], "previous_missing_slices": []}))
    assert (alert.kind, alert.scan_id) == ("pacs_changed", 12)
    assert alert.subject == "The PACS's copy of scan #12 changed since its last comparison"
    assert alert.lines[0] == "The PACS ORTHANC@pacs:4242 now holds: slice 11 with other pixels than the portal's copy."
    assert alert.lines[1] == ("At the previous comparison (2026-12-06 23:00 UTC) it held: every image the same as "
                              "the portal's copy.")


def test_a_comparison_that_differs_alerts_once():
    details = {"destination": "ORTHANC@pacs:4242", "instances": 22, "same": 20, "altered_slices": [3],
               "missing_slices": [7], "matches": False}
    alert = alert_for(_event("pacs.compared", details))
    assert alert.kind == "pacs_differs"
    assert alert.lines[0] == ("The PACS ORTHANC@pacs:4242 holds slice 4 with other pixels than the portal's copy; "
                              "slice 8 missing (20 of 22 images the same).")
    assert alert_for(_event("pacs.compared", {**details, "first": True})).kind == "pacs_differs"
    assert alert_for(_event("pacs.compared", {**details, "first": False})) is None  # told before, or copy_changed
    assert alert_for(_event("pacs.compared", {**details, "matches": True})) is None
    assert alert_for(_event("pacs.compared", {"error": "Connection refused"}, outcome="failure")) is None


def test_an_altered_copy_and_a_tampered_verdict_alert_and_other_events_do_not():
    alert = alert_for(_event("scan.altered_copy_found", {"scan_id": 12, "copies": [
        {"scan_id": 7, "shared_instances": 22, "altered_slices": [4, 5]}]}))
    assert (alert.kind, alert.lines[0]) == ("altered_copy", "Scan #7 holds 22 of the same DICOM instances; slices 5, "
                                                            "6 of scan #12 differ from it.")
    # where, when the event says (recorded since 2026-12-07): one line per slice, in slice order
    changes = {"5": {"pixels": 90, "fraction": 90 / 65536, "box": [30, 40, 10, 9], "max_difference": 120,
                     "spread": False},
               "4": {"pixels": 60000, "fraction": 0.92, "box": [0, 0, 256, 256], "max_difference": 3, "spread": True}}
    alert = alert_for(_event("scan.altered_copy_found", {"scan_id": 12, "copies": [
        {"scan_id": 7, "shared_instances": 22, "altered_slices": [4, 5], "changes": changes}]}))
    assert alert.lines[1:3] == (
        "Slice 5: 92.0 % of the pixels differ, across the image (by up to 3): a change of the whole image (contrast, "
        "scaling, re-encoding), not of one place.",
        "Slice 6: 90 pixels differ (0.1 % of the image) within x 30-39, y 40-48 (a 10 × 9 px box, counted from the "
        "top left corner), by up to 120.")
    assert alert.lines[-1].startswith("One image cannot have two versions")
    job = {"scan_id": 12, "job_id": 40, "verdict": "fake_removed", "confidence": 0.934, "model": "r18 0.9.0"}
    alert = alert_for(_event("job.succeeded", job, object_type="inference.inferencejob", object_id="40"))
    assert (alert.kind, alert.scan_id, alert.subject) == ("tampered_verdict", 12,
                                                          "The detector read scan #12 as tampered")
    assert alert.lines[0] == "Verdict: Fake: tumor removed (confidence 93 %), by r18 0.9.0."
    assert alert_for(_event("job.succeeded", {**job, "verdict": "real_tumor"})) is None
    assert alert_for(_event("scan.viewed", {})) is None
    assert alert_for(_event("auth.login", {}, object_type="accounts.user")) is None
