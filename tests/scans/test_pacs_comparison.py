"""Compare a scan with the PACS's copy of its series: a real Orthanc holds the BRAINIX slices; the portal retrieves
them (C-GET) and compares each instance's pixels with the stored originals. The same series matches; a copy with one
image altered is caught at that slice; a scan of which the PACS holds only part, or nothing, is told so; the outcome
is kept, shown and audited, and nothing from the PACS is stored."""
import csv
import io

import pydicom
import pytest
from django.urls import reverse

from audit import actions
from audit.models import AuditEvent
from scans.models import Scan
from scans.services import scan_upload
from tests.reports.conftest import brainix_paths
from tests.reports.orthanc import free_port, post_instance, running_orthanc
from tests.scans.scanfiles import brainix_flair_upload, brainix_series, uploads_from

INDICES = (9, 10, 11)


def _files(paint: int | None = None):
    return brainix_flair_upload(INDICES, paint=paint)


@pytest.fixture
def pacs(tmp_path, settings):
    with running_orthanc(tmp_path, dicom=True) as server:
        for path in brainix_paths(INDICES[:2]):  # the PACS holds two of the three slices
            post_instance(server["http"], path.read_bytes())
        settings.PACS_DESTINATION = server["destination"]
        yield server


def test_a_scan_is_compared_with_the_pacs_copy_slice_by_slice(client_a, doctor_a, pacs):
    scan = scan_upload(user=doctor_a, files=_files()).scan
    response = client_a.post(reverse("scans:compare_pacs", args=[scan.pk]), follow=True)
    page = response.content.decode()
    scan.refresh_from_db()
    comparison = scan.metadata["pacs_comparison"]
    assert (comparison["instances"], comparison["same"], comparison["altered_slices"], comparison["extra_in_pacs"]) \
        == (3, 2, [], 0)
    missing = comparison["missing_slices"]
    assert len(missing) == 1
    assert f"2 of 3 images have the same pixels as in the PACS {pacs['destination']}." in page
    assert f"The PACS does not hold slice {missing[0] + 1} (no instance with that UID in the series)." in page
    assert "data-pacs-comparison-warning" in page and "compared " in page and " by doctor_a" in page
    assert Scan.objects.count() == 1  # nothing from the PACS was stored
    assert comparison["matches"] is False and scan.metadata["pacs_compare"]["state"] == "done"
    listed = client_a.get(reverse("scans:list"), {"copies": "pacs"}).content.decode()
    assert f'href="{reverse("scans:detail", args=[scan.pk])}"' in listed and "data-pacs-flag" in listed

    post_instance(pacs["http"], brainix_paths(INDICES)[2].read_bytes())  # now it holds the whole series
    api = client_a.post(reverse("api-scan-pacs-comparison", args=[scan.pk])).json()
    assert (api["same"], api["missing_slices"], api["altered_slices"]) == (3, [], [])
    assert api["text"] == f"All 3 images have the same pixels as in the PACS {pacs['destination']}."
    page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert "data-pacs-comparison-warning" not in page and "All 3 images have the same pixels" in page
    assert client_a.get(reverse("api-scan-list"), {"copies": "pacs"}).json()["count"] == 0  # it matches now

    altered = scan_upload(user=doctor_a, files=_files(paint=1)).scan
    api = client_a.post(reverse("api-scan-pacs-comparison", args=[altered.pk])).json()
    painted = pydicom.dcmread(brainix_paths(INDICES)[1], stop_before_pixels=True).SOPInstanceUID
    index = altered.instances.get(sop_instance_uid=painted).first_slice
    assert (api["same"], api["altered_slices"]) == (2, [index])
    assert (f"Slice {index + 1} has other pixels than the PACS's copy of the same instance: one of the two was "
            "altered.") in api["text"]
    [change] = api["changes"]  # where: the painted square, pixel for pixel
    assert (change["slice"], change["pixels"], change["box"], change["spread"]) == (index, 400, [100, 100, 20, 20],
                                                                                 False)
    assert change["mask_rle"]["size"] == [altered.height, altered.width]
    status = client_a.get(reverse("api-scan-pacs-comparison", args=[altered.pk])).json()
    assert status["comparison"]["changes"] == api["changes"]
    assert [(c["source"], c["box"]) for c in status["slice_changes"][str(index)]] == [
        ("the PACS's copy", [100, 100, 20, 20]), (f"scan #{scan.pk}", [100, 100, 20, 20])]  # and the stored copy
    page = client_a.get(reverse("scans:detail", args=[altered.pk])).content.decode()
    assert f"Slice {index + 1}, against the PACS&#x27;s copy: 400 pixels differ" in page
    events = AuditEvent.objects.filter(action=actions.PACS_COMPARED).order_by("seq")
    assert [e.details["same"] for e in events] == [2, 3, 2] and {e.outcome for e in events} == {"success"}
    assert "PatientID" not in str(events.last().details) and events.last().object_id == str(altered.pk)
    assert events.last().details["changes"] == {str(index): {
        "pixels": 400, "fraction": change["fraction"], "box": [100, 100, 20, 20],
        "max_difference": change["max_difference"], "spread": False}}  # no mask in the log
    assert [r["id"] for r in client_a.get(reverse("api-scan-list"), {"copies": "pacs"}).json()["results"]] == [altered.pk]
    rows = {r["scan_id"]: r for r in csv.DictReader(io.StringIO(
        client_a.get(reverse("reports:results_csv")).content.decode()))}
    assert (rows[str(scan.pk)]["pacs_copy"], rows[str(altered.pk)]["pacs_copy"]) == ("same", "differs")
    board = client_a.get(reverse("reports:dashboard")).content.decode()
    assert f'href="{reverse("scans:list")}?copies=pacs">1</a>' in board


def test_no_copy_no_pacs_or_another_users_scan_is_refused_with_the_reason(client_a, client_b, doctor_a, settings,
                                                                          tmp_path):
    from tests.scans.scanfiles import SAMPLE_TIFF

    scan = scan_upload(user=doctor_a, files=_files()).scan
    image = scan_upload(user=doctor_a, files=uploads_from([SAMPLE_TIFF])).scan
    url = reverse("api-scan-pacs-comparison", args=[scan.pk])
    settings.PACS_DESTINATION = ""
    assert client_a.post(url).status_code == 409
    with running_orthanc(tmp_path, dicom=True) as server:  # a PACS that does not hold the series
        settings.PACS_DESTINATION = server["destination"]
        none = client_a.post(url)
        assert none.status_code == 502 and "does not hold this series" in none.json()["error"]
        assert client_a.post(reverse("api-scan-pacs-comparison", args=[image.pk])).status_code == 409
        assert client_b.post(url).status_code == 404
    settings.PACS_DESTINATION, settings.PACS_TIMEOUT_SECONDS = f"ORTHANC@127.0.0.1:{free_port()}", 3
    down = client_a.post(reverse("scans:compare_pacs", args=[scan.pk]), follow=True).content.decode()
    assert "Could not connect to the PACS" in down
    failures = AuditEvent.objects.filter(action=actions.PACS_COMPARED, outcome="failure")
    assert failures.count() == 2
    scan.refresh_from_db()
    assert "pacs_comparison" not in scan.metadata
    state = scan.metadata["pacs_compare"]
    assert (state["state"], state["by"], state["trigger"]) == ("failed", "doctor_a", "request")
    assert state["error"].startswith("Could not connect to the PACS")
    page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert "(by doctor_a) could not be made: Could not connect to the PACS" in page
    api = client_a.get(url).json()
    assert (api["state"], api["comparison"], api["differs"]) == ("failed", None, False)
    assert client_b.get(url).status_code == 404
    assert client_a.get(reverse("scans:compare_pacs", args=[scan.pk])).status_code == 405


def test_with_pacs_compare_uploads_an_upload_is_compared_by_a_worker(doctor_a, pacs, settings,
                                                                      django_capture_on_commit_callbacks):
    import uuid

    import redis
    from django.conf import settings as django_settings

    from scans.services import compare_queued

    post_instance(pacs["http"], brainix_paths(INDICES)[2].read_bytes())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        plain = scan_upload(user=doctor_a, files=_files()).scan
    assert len(callbacks) == 1  # the detector job only: comparing uploads is off by default

    settings.PACS_COMPARE_UPLOADS, settings.PACS_QUEUE = True, f"test-compare-{uuid.uuid4().hex}"
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            altered = scan_upload(user=doctor_a, files=_files(paint=0)).scan
        assert len(callbacks) == 2
        callbacks[-1]()  # the comparison's task, on the PACS queue
        assert broker.llen(settings.PACS_QUEUE) == 1
        assert "scans.compare_with_pacs" in broker.lindex(settings.PACS_QUEUE, 0).decode()
    finally:
        broker.delete(settings.PACS_QUEUE)
    comparison = compare_queued(altered.pk)  # the worker's work
    assert (comparison["by"], comparison["same"], len(comparison["altered_slices"])) == ("doctor_a", 2, 1)
    altered.refresh_from_db()
    assert altered.metadata["pacs_comparison"] == comparison
    plain.refresh_from_db()
    assert "pacs_comparison" not in plain.metadata

    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # came from the PACS: not compared
        scan_upload(user=doctor_a, files=_files(paint=2), origin={"pacs": pacs["destination"]})
    assert len(callbacks) == 1


def test_a_failed_attempt_keeps_what_the_earlier_comparison_found(client_a, doctor_a, pacs, settings):
    scan = scan_upload(user=doctor_a, files=_files(paint=0)).scan
    client_a.post(reverse("api-scan-pacs-comparison", args=[scan.pk]))
    settings.PACS_DESTINATION, settings.PACS_TIMEOUT_SECONDS = f"ORTHANC@127.0.0.1:{free_port()}", 3
    assert client_a.post(reverse("api-scan-pacs-comparison", args=[scan.pk])).status_code == 502
    api = client_a.get(reverse("api-scan-pacs-comparison", args=[scan.pk])).json()
    assert api["state"] == "failed" and api["differs"] is True
    assert (api["comparison"]["same"], api["comparison"]["matches"]) == (1, False)
    assert api["text"].endswith("The outcome above is the latest comparison made.")
    page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert "data-pacs-comparison-warning" in page and "1 of 3 images have the same pixels" in page
    assert "could not be made: Could not connect to the PACS" in page

    from tests.reports.conftest import report_pdf_text, store_analysis  # the PDF report says both

    store_analysis(scan, verdicts={0: "no_tumor", 1: "no_tumor", 2: "no_tumor"}, regions={}, scan_verdict="no_tumor")
    text = report_pdf_text(client_a, scan.pk)
    assert "The PACS's copy of this series differs: 1 of 3 images have the same pixels" in text, text
    assert "(by doctor_a) could not be made: Could not connect to the PACS" in " ".join(text.split())


def test_the_comparison_after_an_upload_is_queued_then_done_or_failed_and_said_so(client_a, doctor_a, pacs,
                                                                                  settings):
    import uuid
    from datetime import timedelta

    import redis
    from django.conf import settings as django_settings
    from django.utils import timezone

    from scans.services import compare_queued

    settings.PACS_COMPARE_UPLOADS, settings.PACS_QUEUE = True, f"test-compare-{uuid.uuid4().hex}"
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    try:
        scan = scan_upload(user=doctor_a, files=_files(paint=1)).scan
        # and a series the PACS does not hold
        elsewhere = scan_upload(user=doctor_a, files=uploads_from(brainix_series("T1")[:2])).scan
    finally:
        broker.delete(settings.PACS_QUEUE)
    url = reverse("api-scan-pacs-comparison", args=[scan.pk])
    api = client_a.get(url).json()
    assert (api["state"], api["by"], api["trigger"], api["comparison"]) == ("queued", "doctor_a", "upload", None)
    assert api["text"].startswith("Being compared with the PACS (queued at ")
    page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert 'data-state="queued"' in page and "Being compared with the PACS" in page
    assert 'class="alert alert-warning hidden" role="note" data-pacs-comparison-warning' in page

    compare_queued(scan.pk)  # the worker's work
    api = client_a.get(url).json()
    assert (api["state"], api["differs"], api["comparison"]["trigger"]) == ("done", True, "upload")
    assert api["text"] == "" and " after the upload" in api["comparison_when"]
    assert "has other pixels than the PACS's copy" in api["comparison"]["text"]
    page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert 'class="alert alert-warning" role="note" data-pacs-comparison-warning' in page

    assert compare_queued(elsewhere.pk) is None
    api = client_a.get(reverse("api-scan-pacs-comparison", args=[elsewhere.pk])).json()
    assert (api["state"], api["trigger"]) == ("failed", "upload")
    assert "(after the upload) could not be made: The PACS" in api["text"]
    assert "does not hold this series" in api["error"]

    stale = (timezone.now() - timedelta(minutes=11)).isoformat()  # queued, and no worker took it
    Scan.objects.filter(pk=elsewhere.pk).update(metadata={**Scan.objects.get(pk=elsewhere.pk).metadata,
                                                          "pacs_compare": {"state": "queued", "at": stale,
                                                                           "by": "doctor_a", "trigger": "upload"}})
    api = client_a.get(reverse("api-scan-pacs-comparison", args=[elsewhere.pk])).json()
    assert api["waiting_long"] is True and "no worker has taken it" in api["text"]


def test_comparisons_kept_before_matches_was_recorded_get_it(doctor_a):
    import importlib

    from django.apps import apps

    from scans.selectors import pacs_copy_differs

    migration = importlib.import_module("scans.migrations.0003_pacs_comparison_state")
    old = {"instances": 3, "same": 2, "altered_slices": [], "missing_slices": [1], "extra_in_pacs": 0}
    differs = scan_upload(user=doctor_a, files=_files()).scan
    same = scan_upload(user=doctor_a, files=_files(paint=2)).scan
    Scan.objects.filter(pk=differs.pk).update(metadata={**differs.metadata, "pacs_comparison": old})
    Scan.objects.filter(pk=same.pk).update(metadata={**same.metadata, "pacs_comparison": {
        **old, "same": 3, "missing_slices": [], "extra_in_pacs": 2}})
    migration.fill(apps, None)
    assert Scan.objects.get(pk=differs.pk).metadata["pacs_comparison"]["matches"] is False
    assert Scan.objects.get(pk=same.pk).metadata["pacs_comparison"]["matches"] is True
    assert list(Scan.objects.filter(pacs_copy_differs()).values_list("pk", flat=True)) == [differs.pk]
    assert Scan.objects.get(pk=differs.pk).pacs_checked_at is None  # the old record had no time: left unset


def _replace_in_orthanc(server, path, data: bytes) -> None:
    """Alter an image in the archive: delete the instance, store the new bytes under the same SOP Instance UID."""
    import urllib.request

    instance = post_instance(server["http"], path.read_bytes())["ID"]  # already stored: Orthanc names it
    urllib.request.urlopen(urllib.request.Request(f"{server['http']}/instances/{instance}", method="DELETE"),
                           timeout=30).read()
    assert post_instance(server["http"], data)["Status"] == "Success"


def test_the_periodic_recheck_finds_an_image_altered_in_the_pacs_after_the_comparison(
        client_a, doctor_a, doctor_b, pacs, settings):
    import uuid
    from datetime import timedelta

    import redis
    from django.conf import settings as django_settings
    from django.utils import timezone

    from scans.services import compare_queued, pacs_recheck_due, pacs_recheck_queue

    post_instance(pacs["http"], brainix_paths(INDICES)[2].read_bytes())  # the PACS holds the whole series
    compared = scan_upload(user=doctor_a, files=_files()).scan
    client_a.post(reverse("api-scan-pacs-comparison", args=[compared.pk]))
    imported = scan_upload(user=doctor_b, files=_files(), origin={"pacs": pacs["destination"]}).scan
    never = scan_upload(user=doctor_a, files=_files(paint=2)).scan  # uploaded, never compared: not rechecked
    settings.PACS_RECHECK_HOURS, settings.PACS_QUEUE = 24, f"test-recheck-{uuid.uuid4().hex}"
    assert list(pacs_recheck_due()) == []  # compared or received just now
    two_days_ago = timezone.now() - timedelta(days=2)
    Scan.objects.filter(pk=compared.pk).update(pacs_checked_at=two_days_ago)
    Scan.objects.update(created_at=two_days_ago - timedelta(hours=1))
    assert [s.pk for s in pacs_recheck_due()] == [imported.pk, compared.pk]  # the longest waiting first
    settings.PACS_RECHECK_HOURS = 0
    assert list(pacs_recheck_due()) == []  # off
    settings.PACS_RECHECK_HOURS = 24

    # Someone alters slice 2 of the series in the archive, keeping its UIDs.
    path = brainix_paths(INDICES)[1]
    altered = next(f for f in _files(paint=1) if f.name == path.name).read()
    _replace_in_orthanc(pacs, path, altered)

    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    try:
        settings.PACS_RECHECK_BATCH = 1
        assert pacs_recheck_queue() == 1 and pacs_recheck_queue() == 1 and pacs_recheck_queue() == 0
        assert broker.llen(settings.PACS_QUEUE) == 2
    finally:
        broker.delete(settings.PACS_QUEUE)
    api = client_a.get(reverse("api-scan-pacs-comparison", args=[compared.pk])).json()
    assert (api["state"], api["trigger"], api["differs"]) == ("queued", "schedule", False)
    assert api["text"].startswith("Being compared with the PACS again (queued at ")
    assert api["text"].endswith(", on the periodic recheck).")

    for scan in (compared, imported):
        compare_queued(scan.pk, "schedule")  # the worker's work
    index = compared.instances.get(sop_instance_uid=pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
                                   ).first_slice
    api = client_a.get(reverse("api-scan-pacs-comparison", args=[compared.pk])).json()
    assert (api["state"], api["differs"], api["comparison"]["altered_slices"]) == ("done", True, [index])
    assert " on the periodic recheck" in api["comparison_when"]
    changed = AuditEvent.objects.filter(action=actions.PACS_COPY_CHANGED)
    assert [(e.object_id, e.details["previous_altered_slices"], e.details["altered_slices"]) for e in changed] == [
        (str(compared.pk), [], [index])]  # the imported scan had no earlier comparison to change from
    assert changed.get().details["changes"][str(index)]["box"] == [100, 100, 20, 20]  # where the archive's changed
    recheck = {e.object_id: (e.details["first"], e.details["changed"], e.details["trigger"]) for e in
               AuditEvent.objects.filter(action=actions.PACS_COMPARED).order_by("seq")}
    assert recheck == {str(compared.pk): (False, True, "schedule"), str(imported.pk): (True, False, "schedule")}
    imported.refresh_from_db()
    assert imported.metadata["pacs_comparison"]["altered_slices"] == [index]
    never.refresh_from_db()
    assert "pacs_compare" not in never.metadata and never.pacs_checked_at is None
    board = client_a.get(reverse("reports:dashboard")).content.decode()
    assert f'href="{reverse("scans:list")}?copies=pacs">1</a>' in board  # found today, whenever it was uploaded


def test_the_compare_with_pacs_command(doctor_a, pacs, settings):
    import io as _io

    from django.core.management import CommandError, call_command

    from tests.scans.scanfiles import SAMPLE_TIFF, uploads_from

    post_instance(pacs["http"], brainix_paths(INDICES)[2].read_bytes())
    same = scan_upload(user=doctor_a, files=_files()).scan
    out = _io.StringIO()
    call_command("compare_with_pacs", "--scan", str(same.pk), stdout=out)
    assert f"scan {same.pk} ({same.original_name}): same: All 3 images have the same pixels" in out.getvalue()
    assert "1 scan: 1 the same as in the PACS, 0 differing, 0 not compared." in out.getvalue()
    same.refresh_from_db()
    assert same.metadata["pacs_compare"]["trigger"] == "command"

    painted = scan_upload(user=doctor_a, files=_files(paint=0)).scan
    with pytest.raises(CommandError) as caught:
        call_command("compare_with_pacs", "--scan", str(painted.pk), "--scan", str(same.pk), stdout=_io.StringIO())
    assert caught.value.returncode == 2 and "1 scan(s) differ from the PACS's copy" in str(caught.value)

    out = _io.StringIO()
    call_command("compare_with_pacs", "--due", "--older-than", "1", stdout=out)  # all compared just now
    assert out.getvalue().strip() == "0 scans: 0 the same as in the PACS, 0 differing, 0 not compared."

    image = scan_upload(user=doctor_a, files=uploads_from([SAMPLE_TIFF])).scan
    for args, message in [((), "Say which scans"), (("--due",), "--due needs --older-than HOURS"),
                          (("--scan", "999999"), "No scan with ID 999999."),
                          (("--scan", str(image.pk)), "is not DICOM")]:
        with pytest.raises(CommandError, match=message):
            call_command("compare_with_pacs", *args, stdout=_io.StringIO())
    settings.PACS_DESTINATION = ""
    with pytest.raises(CommandError, match="No PACS is configured"):
        call_command("compare_with_pacs", "--scan", str(same.pk), stdout=_io.StringIO())


def test_an_image_the_pacs_keeps_lossily_compressed_is_neither_same_nor_altered(client_a, doctor_a, pacs):
    """A PACS that archives images with lossy compression (here JPEG-LS near-lossless, flagged Lossy Image
    Compression 01 as the standard asks) changes their pixels: the comparison says so instead of calling it an
    edit."""
    import io as _io

    from pydicom.uid import JPEGLSNearLossless

    path = brainix_paths(INDICES)[2]
    ds = pydicom.dcmread(path)
    original = ds.pixel_array.copy()
    ds.compress(JPEGLSNearLossless, jls_error=3, generate_instance_uid=False)
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_14495_1"
    assert (ds.pixel_array != original).any()  # the compression changed pixels
    buffer = _io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    post_instance(pacs["http"], buffer.getvalue())

    scan = scan_upload(user=doctor_a, files=_files()).scan
    api = client_a.post(reverse("api-scan-pacs-comparison", args=[scan.pk])).json()
    index = scan.instances.get(sop_instance_uid=ds.SOPInstanceUID).first_slice
    assert (api["same"], api["altered_slices"], api["lossy_slices"], api["matches"]) == (2, [], [index], True)
    assert (f"Slice {index + 1} differs from the PACS's copy, but one of the two copies was lossily compressed "
            "(JPEG), which changes pixels: there the comparison can neither show nor rule out an edit.") in api["text"]
    assert api["text"].startswith("2 of 3 images have the same pixels")
    page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert "data-pacs-comparison-warning" not in page  # no evidence of an edit: no warning


def test_a_comparison_that_finds_new_pixel_evidence_sends_a_sent_analysis_again(client_a, doctor_a, pacs,
                                                                                django_capture_on_commit_callbacks):
    from reports.models import PacsTransfer
    from tests.reports.conftest import store_analysis

    scan = scan_upload(user=doctor_a, files=_files(paint=1)).scan
    job = store_analysis(scan, verdicts={0: "no_tumor", 1: "fake_added", 2: "no_tumor"}, regions={},
                         scan_verdict="fake_added").job
    client_a.post(reverse("api-scan-pacs-comparison", args=[scan.pk]))
    assert not PacsTransfer.objects.exists()  # never sent: the evidence does not send it
    sent = PacsTransfer.objects.create(scan=scan, job=job, requested_by=doctor_a, destination=pacs["destination"],
                                       status=PacsTransfer.Status.SENT)  # as if it had gone before the comparison
    scan.refresh_from_db()
    scan.metadata.pop("pacs_comparison")
    scan.save(update_fields=["metadata"])
    with django_capture_on_commit_callbacks(execute=False):
        client_a.post(reverse("api-scan-pacs-comparison", args=[scan.pk]))
    resend = PacsTransfer.objects.exclude(pk=sent.pk).get()
    assert (resend.job, resend.requested_by, resend.status) == (job, doctor_a, "queued")
    event = AuditEvent.objects.filter(action=actions.PACS_SEND_REQUESTED).latest("id")
    assert event.details["reason"] == "pacs comparison"
    with django_capture_on_commit_callbacks(execute=False):
        client_a.post(reverse("api-scan-pacs-comparison", args=[scan.pk]))  # the same evidence: nothing new to send
    assert PacsTransfer.objects.count() == 2
