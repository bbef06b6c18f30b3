"""Send to PACS: the scan's analysis (the masks as DICOM SEG, the report as DICOM Encapsulated PDF) stored by
C-STORE into a real Orthanc, started here with its DICOM server on; what happens when the PACS is not there or
refuses the portal; the page, the API, the audit and the settings check.

The task is run by the real service (reports.services.pacs_transfer_run) in the test process, standing in for
the worker; one test checks that the request puts a real message on the Redis broker after the commit."""
import io
import json
import os
import subprocess
import urllib.request
import uuid
from datetime import timedelta

import pydicom
import pytest
import redis
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from audit import actions
from audit.models import AuditEvent
from reports import services
from reports.models import PacsTransfer
from reports.pacs import PacsDestination, parse_destination
from tests.reports.conftest import brainix_paths
from tests.reports.orthanc import free_port, get_json, post_instance, running_orthanc

SOURCE_INDICES = (9, 10, 11)  # analysed_scan's files


@pytest.fixture
def pacs(tmp_path):
    """A real Orthanc with its DICOM server on (AE title ORTHANC, checking the called AE title)."""
    with running_orthanc(tmp_path, dicom=True) as server:
        yield server


def _send(client, scan, callbacks_fixture):
    """POST the scan page's button; the commit's callback (the broker) is not run: the test runs the task."""
    with callbacks_fixture(execute=False):
        response = client.post(reverse("reports:scan_send_to_pacs", args=[scan.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("scans:detail", args=[scan.pk])
    return PacsTransfer.objects.get(scan=scan)


def test_send_to_pacs_stores_the_seg_and_the_report_in_the_source_study(
        client_a, analysed_scan, pacs, settings, django_capture_on_commit_callbacks):
    settings.PACS_DESTINATION = pacs["destination"]
    sources = [post_instance(pacs["http"], p.read_bytes()) for p in brainix_paths(SOURCE_INDICES)]
    page = client_a.get(reverse("scans:detail", args=[analysed_scan.scan.pk])).content.decode()
    assert "data-send-to-pacs" in page and pacs["destination"] in page

    transfer = _send(client_a, analysed_scan.scan, django_capture_on_commit_callbacks)
    assert (transfer.status, transfer.job, transfer.destination) == ("queued", analysed_scan.job, pacs["destination"])
    transfer = services.pacs_transfer_run(transfer_id=transfer.pk)
    assert transfer.status == "sent", transfer.detail
    assert [(i["what"], i["status"]) for i in transfer.instances] == [("seg", "0x0000"), ("report", "0x0000"),
                                                                         ("sr", "0x0000")]
    assert transfer.finished_at is not None

    study = get_json(pacs["http"], f"/studies/{sources[0]['ParentStudy']}")
    modalities = sorted(get_json(pacs["http"], f"/series/{s}")["MainDicomTags"].get("Modality") for s in study["Series"])
    assert modalities == ["DOC", "MR", "SEG", "SR"]  # the source series and the three new ones, in the one study
    stored = {i["sop_instance_uid"] for i in transfer.instances}
    found = {get_json(pacs["http"], f"/instances/{i}/simplified-tags")["SOPInstanceUID"]
             for s in study["Series"] for i in get_json(pacs["http"], f"/series/{s}")["Instances"]}
    assert stored <= found

    again = services.pacs_transfer_run(transfer_id=transfer.pk)  # a re-delivered task sends nothing twice
    assert again.instances == transfer.instances
    assert len(get_json(pacs["http"], "/instances")) == 6
    # Sent again by a new request: the same analysis makes the same instances, which the PACS files once.
    second = services.pacs_transfer_run(
        transfer_id=PacsTransfer.objects.create(scan=transfer.scan, job=transfer.job, requested_by=transfer.requested_by,
                                                destination=transfer.destination).pk)
    assert second.status == "sent" and [i["sop_instance_uid"] for i in second.instances] == [
        i["sop_instance_uid"] for i in transfer.instances]
    assert len(get_json(pacs["http"], "/instances")) == 6

    events = {e.action: e for e in AuditEvent.objects.filter(action__startswith="pacs.")}
    assert set(events) == {actions.PACS_SEND_REQUESTED, actions.PACS_SENT}
    assert events[actions.PACS_SENT].actor_username == "doctor_a"
    assert set(events[actions.PACS_SENT].details["sha256"]) == {"seg", "report", "sr"}
    page = client_a.get(reverse("scans:detail", args=[analysed_scan.scan.pk])).content.decode()
    assert 'data-pacs-transfer="sent"' in page and "3 objects stored (DICOM SEG, report and structured report)" in page


def test_a_review_of_a_sent_analysis_sends_the_verified_report_too(client_a, doctor_a, analysed_scan, pacs, settings,
                                                                   django_capture_on_commit_callbacks):
    from reviews.services import review_record

    settings.PACS_DESTINATION = pacs["destination"]
    scan, job = analysed_scan.scan, analysed_scan.job
    with django_capture_on_commit_callbacks(execute=False):
        review_record(scan=scan, job_id=job.pk, verdict="fake_added", reviewer=doctor_a)
    assert not PacsTransfer.objects.exists()  # never sent: a review does not send it

    first = services.pacs_transfer_run(transfer_id=_send(client_a, scan, django_capture_on_commit_callbacks).pk)
    assert first.status == "sent", first.detail
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        review_record(scan=scan, job_id=job.pk, verdict="real_tumor", note="Enhancing rim.", reviewer=doctor_a)
    assert len(callbacks) == 1  # the task, once the review is committed
    resend = PacsTransfer.objects.exclude(pk=first.pk).get()
    assert (resend.job, resend.requested_by, resend.status) == (job, doctor_a, "queued")
    event = AuditEvent.objects.filter(action=actions.PACS_SEND_REQUESTED).latest("id")
    assert (event.details["reason"], event.details["transfer_id"]) == ("review", resend.pk)

    stored, new, old = _resent_sr(pacs, first, resend)
    assert new["report"] != old["report"]
    assert get_json(pacs["http"], "/statistics")["CountInstances"] == 5  # the SEG once; report and SR, before and after
    assert stored.VerificationFlag == "VERIFIED"


def _resent_sr(pacs, first, resend):
    """Run the second transfer; the SR the PACS then holds (the SEG the same, a new SR naming the first one), and the
    UIDs of what each transfer sent."""
    resend = services.pacs_transfer_run(transfer_id=resend.pk)
    assert resend.status == "sent", resend.detail
    new = {i["what"]: i["sop_instance_uid"] for i in resend.instances}
    old = {i["what"]: i["sop_instance_uid"] for i in first.instances}
    assert new["seg"] == old["seg"] and new["sr"] != old["sr"]
    assert new["report"] != old["report"]  # the PDF report is a new document too; the earlier one stays
    assert _instance_bytes(pacs["http"], old["report"])
    stored = pydicom.dcmread(io.BytesIO(_instance_bytes(pacs["http"], new["sr"])))
    assert (stored.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
            .ReferencedSOPInstanceUID) == old["sr"]
    return stored, new, old


def _pdf_text(pdf: bytes) -> bytes:
    import subprocess

    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout


def _instance_bytes(base: str, sop_instance_uid: str) -> bytes:
    request = urllib.request.Request(f"{base}/tools/lookup", data=sop_instance_uid.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        (hit,) = json.loads(response.read())
    with urllib.request.urlopen(f"{base}/instances/{hit['ID']}/file", timeout=10) as response:
        return response.read()


@pytest.fixture
def test_queue(settings):
    """The sends' Celery queue, a fresh one on the real Redis broker, emptied afterwards."""
    settings.PACS_QUEUE = f"test-pacs-{uuid.uuid4().hex}"
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    yield broker, settings.PACS_QUEUE
    broker.delete(settings.PACS_QUEUE)


def test_a_pacs_that_is_not_there_is_tried_again_later_then_given_up_with_the_reason(
        client_a, analysed_scan, settings, django_capture_on_commit_callbacks, test_queue):
    settings.PACS_DESTINATION = f"ORTHANC@127.0.0.1:{free_port()}"  # nothing listens there
    settings.PACS_TIMEOUT_SECONDS, settings.PACS_RETRY_MINUTES = 3, [1, 5]
    started = timezone.now()
    transfer = services.pacs_transfer_run(
        transfer_id=_send(client_a, analysed_scan.scan, django_capture_on_commit_callbacks).pk)
    reason = f"Could not connect to the PACS {settings.PACS_DESTINATION}: Connection refused (after at most 3 s)."
    assert (transfer.status, transfer.attempts, transfer.instances, transfer.detail) == ("retrying", 1, [], reason)
    assert transfer.finished_at is None
    assert timedelta(seconds=55) < transfer.next_attempt_at - started < timedelta(seconds=65)
    event = AuditEvent.objects.get(action=actions.PACS_SEND_FAILED)
    assert event.outcome == actions.FAILURE and event.details["error"] == reason
    assert (event.details["attempt"], event.details["next_attempt_at"]) == (1, transfer.next_attempt_at.isoformat())
    page = client_a.get(reverse("scans:detail", args=[analysed_scan.scan.pk])).content.decode()
    at = timezone.localtime(transfer.next_attempt_at)
    assert 'data-pacs-transfer="retrying"' in page and "Waiting to try again" in page and reason in page
    assert f"attempt 1 of 3 failed, trying again at {at:%H:%M} UTC" in page

    broker, queue = test_queue
    assert services.pacs_retry_due(now=started + timedelta(seconds=30)) == {"retried": 0, "stale": 0}  # not yet
    assert services.pacs_retry_due(now=transfer.next_attempt_at) == {"retried": 1, "stale": 0}
    assert broker.llen(queue) == 1 and str(transfer.pk) in broker.lindex(queue, 0).decode()
    assert services.pacs_retry_due(now=transfer.next_attempt_at) == {"retried": 0, "stale": 0}  # queued once
    second = services.pacs_transfer_run(transfer_id=transfer.pk)
    assert (second.status, second.attempts) == ("retrying", 2)
    assert 4 * 60 < (second.next_attempt_at - second.attempted_at).total_seconds() < 5 * 60 + 5
    services.pacs_retry_due(now=second.next_attempt_at)
    third = services.pacs_transfer_run(transfer_id=transfer.pk)
    assert (third.status, third.attempts, third.next_attempt_at, third.detail) == ("failed", 3, None, reason)
    assert third.finished_at is not None
    assert [e.details["attempt"] for e in AuditEvent.objects.filter(action=actions.PACS_SEND_FAILED)
            .order_by("seq")] == [1, 2, 3]
    page = client_a.get(reverse("scans:detail", args=[analysed_scan.scan.pk])).content.decode()
    assert 'data-pacs-transfer="failed"' in page and "Connection refused (after at most 3 s)" in page


def test_a_pacs_that_comes_back_gets_the_analysis_at_the_next_try(
        client_a, analysed_scan, settings, tmp_path, django_capture_on_commit_callbacks, test_queue):
    port = free_port()
    settings.PACS_DESTINATION, settings.PACS_TIMEOUT_SECONDS = f"ORTHANC@127.0.0.1:{port}", 3
    transfer = services.pacs_transfer_run(
        transfer_id=_send(client_a, analysed_scan.scan, django_capture_on_commit_callbacks).pk)
    assert transfer.status == "retrying"
    with running_orthanc(tmp_path, dicom=True, dicom_port=port) as pacs:  # the PACS is back
        assert services.pacs_retry_due(now=transfer.next_attempt_at)["retried"] == 1
        sent = services.pacs_transfer_run(transfer_id=transfer.pk)
        assert (sent.status, sent.attempts, sent.next_attempt_at) == ("sent", 2, None), sent.detail
        assert len(get_json(pacs["http"], "/instances")) == 3
    assert sent.detail == "" and sent.outcome_text.startswith("3 objects stored")
    assert AuditEvent.objects.get(action=actions.PACS_SENT).details["attempt"] == 2


def test_a_dead_send_counts_as_a_failed_attempt_and_a_new_request_replaces_a_waiting_one(
        client_a, analysed_scan, settings, django_capture_on_commit_callbacks, test_queue):
    settings.PACS_DESTINATION = "ORTHANC@pacs.example.org:4242"
    transfer = _send(client_a, analysed_scan.scan, django_capture_on_commit_callbacks)
    began = timezone.now() - timedelta(minutes=11)  # claimed by a worker that died (the redelivery leaves it alone)
    PacsTransfer.objects.filter(pk=transfer.pk).update(status="sending", attempts=1, attempted_at=began)
    assert services.pacs_retry_due(now=began + timedelta(minutes=9)) == {"retried": 0, "stale": 0}
    assert services.pacs_retry_due()["stale"] == 1
    transfer.refresh_from_db()
    assert (transfer.status, transfer.attempts) == ("retrying", 1)
    assert transfer.detail == "The send had no outcome 10 minutes after it began (its worker stopped)."

    with django_capture_on_commit_callbacks(execute=False):
        client_a.post(reverse("reports:scan_send_to_pacs", args=[analysed_scan.scan.pk]))
    newer = PacsTransfer.objects.exclude(pk=transfer.pk).get()
    transfer.refresh_from_db()
    assert (transfer.status, newer.status) == ("failed", "queued")
    assert transfer.detail.endswith(f"Not tried again: replaced by a newer request (transfer #{newer.pk}).")
    assert services.pacs_retry_due(now=timezone.now() + timedelta(hours=2)) == {"retried": 0, "stale": 0}


def test_a_refusal_is_not_tried_again(client_a, analysed_scan, settings, django_capture_on_commit_callbacks):
    settings.PACS_DESTINATION = "ORTHANC@pacs.example.org:4242"
    transfer = _send(client_a, analysed_scan.scan, django_capture_on_commit_callbacks)
    analysed_scan.scan.kind = "png"  # no DICOM source any more: the export itself is refused
    analysed_scan.scan.save(update_fields=["kind"])
    failed = services.pacs_transfer_run(transfer_id=transfer.pk)
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("failed", 1, None)


def test_a_pacs_that_refuses_the_portal_is_named(client_a, analysed_scan, pacs, settings,
                                                 django_capture_on_commit_callbacks):
    settings.PACS_DESTINATION = f"WRONGAE@127.0.0.1:{pacs['port']}"  # Orthanc checks the called AE title
    settings.PACS_TIMEOUT_SECONDS = 10
    transfer = services.pacs_transfer_run(
        transfer_id=_send(client_a, analysed_scan.scan, django_capture_on_commit_callbacks).pk)
    assert transfer.status == "failed"
    assert "it refused the association" in transfer.detail and "'TAMPERCHECK'" in transfer.detail
    assert get_json(pacs["http"], "/instances") == []


def test_the_request_reaches_the_broker_only_after_the_commit(client_a, analysed_scan, settings,
                                                              django_capture_on_commit_callbacks):
    settings.PACS_DESTINATION = "ORTHANC@pacs.example.org:4242"
    queue = f"test-pacs-{uuid.uuid4().hex}"
    settings.PACS_QUEUE = queue
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            client_a.post(reverse("reports:scan_send_to_pacs", args=[analysed_scan.scan.pk]))
            assert broker.llen(queue) == 0
        for callback in callbacks:
            callback()
        message = broker.lindex(queue, 0).decode()
        assert broker.llen(queue) == 1 and "reports.send_to_pacs" in message
        assert str(PacsTransfer.objects.get().pk) in message
    finally:
        broker.delete(queue)


def test_the_api_queues_lists_and_refuses(client_a, client_b, analysed_scan, settings, doctor_a, doctor_b,
                                          django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(doctor_a)
    url = reverse("api-scan-pacs-transfers", args=[analysed_scan.scan.pk])
    settings.PACS_DESTINATION = ""
    refused = api.post(url)
    assert refused.status_code == 409 and "No PACS is configured" in refused.json()["detail"]
    assert "data-send-to-pacs" not in client_a.get(reverse("scans:detail", args=[analysed_scan.scan.pk])).content.decode()

    settings.PACS_DESTINATION = "ORTHANC@pacs.example.org:4242"
    with django_capture_on_commit_callbacks(execute=False):
        queued = api.post(url)
    assert queued.status_code == 202
    body = queued.json()
    assert (body["status"], body["requested_by"], body["job"]) == ("queued", "doctor_a", analysed_scan.job.pk)
    assert [t["id"] for t in api.get(url).json()] == [body["id"]]
    assert client_b.post(reverse("reports:scan_send_to_pacs", args=[analysed_scan.scan.pk])).status_code == 404
    other = APIClient()
    other.force_authenticate(doctor_b)
    assert other.post(url).status_code == 404 and other.get(url).status_code == 404
    assert client_a.get(reverse("reports:scan_send_to_pacs", args=[analysed_scan.scan.pk])).status_code == 405


def test_parse_destination_says_what_is_wrong():
    assert parse_destination("") is None
    assert parse_destination(" ORTHANC@pacs.example.org:4242 ") == PacsDestination("ORTHANC", "pacs.example.org", 4242)
    assert str(parse_destination("PACS_1@[::1]:104")) == "PACS_1@::1:104"
    with pytest.raises(ValueError, match="is not AE_TITLE@host:port"):
        parse_destination("pacs.example.org:4242")
    with pytest.raises(ValueError, match="is not a DICOM AE title"):
        parse_destination("A-TITLE-MUCH-TOO-LONG@pacs:104")
    with pytest.raises(ValueError, match="port 70000 is not a TCP port"):
        parse_destination("ORTHANC@pacs:70000")


def test_a_bad_pacs_setting_stops_the_portal_at_start_with_the_reason():
    run = subprocess.run(
        [".venv/bin/python", "-c", "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='portal.settings'; "
                                   "django.setup()"],
        capture_output=True, text=True, timeout=120, cwd=django_settings.BASE_DIR,
        env={**os.environ, "PACS_DESTINATION": "pacs:104", "DEBUG": "1"})
    assert run.returncode != 0
    assert "ImproperlyConfigured: PACS_DESTINATION 'pacs:104' is not AE_TITLE@host:port" in run.stderr


def test_the_seg_and_report_sent_are_the_ones_the_downloads_give(client_a, analysed_scan, pacs, settings,
                                                                  django_capture_on_commit_callbacks):
    """What the PACS got is a SEG and an Encapsulated PDF of this scan's study and patient."""
    settings.PACS_DESTINATION = pacs["destination"]
    transfer = services.pacs_transfer_run(
        transfer_id=_send(client_a, analysed_scan.scan, django_capture_on_commit_callbacks).pk)
    assert transfer.status == "sent", transfer.detail
    source = pydicom.dcmread(brainix_paths(SOURCE_INDICES)[0], stop_before_pixels=True)
    for item in transfer.instances:
        answer = urllib.request.Request(f"{pacs['http']}/tools/lookup", data=item["sop_instance_uid"].encode(),
                                        method="POST")
        with urllib.request.urlopen(answer, timeout=10) as response:
            (hit,) = json.loads(response.read())
        tags = get_json(pacs["http"], f"/instances/{hit['ID']}/simplified-tags")
        assert tags["StudyInstanceUID"] == source.StudyInstanceUID and tags["PatientID"] == source.PatientID
        assert tags["SOPClassUID"] == {"seg": "1.2.840.10008.5.1.4.1.1.66.4",
                                       "report": "1.2.840.10008.5.1.4.1.1.104.1",
                                       "sr": "1.2.840.10008.5.1.4.1.1.88.34"}[item["what"]]


def test_check_pacs_says_whether_the_pacs_answers(pacs, settings):
    from io import StringIO

    from django.core.management import CommandError, call_command

    settings.PACS_DESTINATION = pacs["destination"]
    out = StringIO()
    call_command("check_pacs", stdout=out)
    assert out.getvalue().startswith(f"The PACS {pacs['destination']} answered a C-ECHO from TAMPERCHECK in ")
    out = StringIO()
    call_command("check_pacs", "--query", stdout=out)
    assert "It answered a search (C-FIND) in " in out.getvalue()
    with pytest.raises(CommandError, match="it refused the association"):
        call_command("check_pacs", "--destination", f"OTHER@127.0.0.1:{pacs['port']}")
    settings.PACS_TIMEOUT_SECONDS = 3
    with pytest.raises(CommandError, match=r"Connection refused \(after at most 3 s\)"):
        call_command("check_pacs", "--destination", f"ORTHANC@127.0.0.1:{free_port()}")
    with pytest.raises(CommandError, match="is not AE_TITLE@host:port"):
        call_command("check_pacs", "--destination", "pacs:104")
    settings.PACS_DESTINATION = ""
    with pytest.raises(CommandError, match="No PACS is configured"):
        call_command("check_pacs")


def test_check_pacs_query_says_when_the_pacs_will_not_be_searched(tmp_path, settings):
    from io import StringIO

    from django.core.management import CommandError, call_command

    with running_orthanc(tmp_path, dicom=True, allow_query=False) as closed:
        settings.PACS_DESTINATION = closed["destination"]
        call_command("check_pacs", stdout=StringIO())  # it answers a C-ECHO
        with pytest.raises(CommandError, match=r"did not answer the search for studies: it aborted it .*\. The "
                                               r"import from the PACS needs it to let TAMPERCHECK search"):
            call_command("check_pacs", "--query", stdout=StringIO())


def test_the_django_admin_lists_transfers_read_only(client, django_user_model, analysed_scan, doctor_a):
    transfer = PacsTransfer.objects.create(scan=analysed_scan.scan, job=analysed_scan.job, requested_by=doctor_a,
                                           destination="ORTHANC@pacs.example.org:4242", status="failed",
                                           detail="Could not connect to the PACS: Connection refused.")
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.org", "x" * 20))
    listing = client.get(reverse("admin:reports_pacstransfer_changelist"))
    assert listing.status_code == 200 and "ORTHANC@pacs.example.org:4242" in listing.content.decode()
    page = client.get(reverse("admin:reports_pacstransfer_change", args=[transfer.pk]))
    assert page.status_code == 200 and "Connection refused" in page.content.decode()
    assert client.get(reverse("admin:reports_pacstransfer_add")).status_code == 403
    assert client.post(reverse("admin:reports_pacstransfer_delete", args=[transfer.pk]), {"post": "yes"}).status_code == 403
    assert PacsTransfer.objects.filter(pk=transfer.pk).exists()


def test_pixel_evidence_found_after_a_send_sends_the_analysis_again(client_a, doctor_a, analysed_scan, pacs, settings,
                                                                    django_capture_on_commit_callbacks):
    """Another stored copy of a sent scan arrives with one image painted: the analysis goes to the PACS again, for
    the scan's owner, and the PACS then holds the SR that outlines the changed pixels, naming the one sent before."""
    from scans.services import scan_upload
    from tests.scans.scanfiles import brainix_flair_upload

    settings.PACS_DESTINATION = pacs["destination"]
    scan = analysed_scan.scan
    first = services.pacs_transfer_run(transfer_id=_send(client_a, scan, django_capture_on_commit_callbacks).pk)
    assert first.status == "sent", first.detail
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        copy = scan_upload(user=doctor_a, files=brainix_flair_upload(SOURCE_INDICES, paint=1)).scan
    resend = PacsTransfer.objects.exclude(pk=first.pk).get()  # the copy itself was never analysed nor sent
    assert (resend.scan, resend.job, resend.requested_by) == (scan, analysed_scan.job, doctor_a)
    assert callbacks  # the task (and the copy's detector job) once the upload is committed
    event = AuditEvent.objects.filter(action=actions.PACS_SEND_REQUESTED).latest("id")
    assert (event.details["reason"], event.details["transfer_id"]) == ("altered copy", resend.pk)

    stored, new, _ = _resent_sr(pacs, first, resend)
    texts = {str(e.value) for e in stored.iterall() if e.keyword == "TextValue"}
    assert any(t.endswith(f": other pixels than stored scan #{copy.pk}") for t in texts), texts
    # the new PDF report lists the changed pixels among its warnings
    document = pydicom.dcmread(io.BytesIO(_instance_bytes(pacs["http"], new["report"])))
    pdf = bytes(document.EncapsulatedDocument)[:int(document.EncapsulatedDocumentLength)]
    assert b"pixels differ" in _pdf_text(pdf)

    # Evidence does not send an analysis nobody sent.
    PacsTransfer.objects.all().delete()
    scan_upload(user=doctor_a, files=brainix_flair_upload(SOURCE_INDICES[:2], paint=1))
    assert not PacsTransfer.objects.exists()
