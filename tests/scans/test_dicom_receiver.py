"""The portal as a DICOM node: an allowed peer pushes a series (C-STORE), the receiver spools it, and once complete it
becomes a scan of the peer's account through the upload's own path (checks, limits, job), audited. Unknown senders,
non-image objects, aborted transfers, series over the limits, disabled accounts and unreadable pixels are each
refused or skipped with the reason, leaving nothing half-stored. A real Orthanc pushes to it, and the command runs
it end to end."""
import io
import threading
import time

import pydicom
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from audit import actions
from audit.models import AuditEvent
from inference.models import InferenceJob
from scans.dicom_receiver import Receiver, parse_peers
from scans.models import Scan
from scans.services import scan_receive_series
from tests.reports.conftest import brainix_paths, report_pdf_text, store_analysis
from tests.reports.orthanc import free_port, get_json, post_instance, post_json, running_orthanc

INDICES = (9, 10, 11)
LATER = 3600  # take_ready(now=time.time() + LATER): past any idle time


def _datasets(indices=INDICES) -> list[Dataset]:
    return [pydicom.dcmread(path) for path in brainix_paths(indices)]


def _report(source: Dataset) -> Dataset:
    """A Basic Text SR in the source's study: an object the receiver acknowledges and does not keep."""
    report = Dataset()
    report.file_meta = FileMetaDataset()
    report.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report.SOPClassUID, report.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", generate_uid()
    report.file_meta.MediaStorageSOPClassUID = report.SOPClassUID
    report.file_meta.MediaStorageSOPInstanceUID = report.SOPInstanceUID
    report.StudyInstanceUID, report.SeriesInstanceUID, report.Modality = source.StudyInstanceUID, generate_uid(), "SR"
    report.PatientID = source.PatientID
    return report


def push(port: int, datasets, *, calling_ae="ORTHANC", end="release") -> list[int]:
    """Send the data sets over one association as `calling_ae`; the status of each, then release or abort."""
    ae = AE(ae_title=calling_ae)
    for sop_class in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title="TAMPERCHECK")
    assert assoc.is_established, "the receiver refused the association"
    statuses = [int(assoc.send_c_store(ds).Status) for ds in datasets]
    assoc.release() if end == "release" else assoc.abort()
    time.sleep(0.2)  # the server thread sees the end of the association
    return statuses


@pytest.fixture
def receiver(tmp_path):
    started = []

    def start(peers="ORTHANC=doctor_a", **options) -> Receiver:
        options = {"idle": 0.0, **options}
        r = Receiver(ae_title="TAMPERCHECK", peers=parse_peers(peers), spool=tmp_path / "spool", **options)
        started.append(r.start("127.0.0.1", 0))
        return r

    yield start
    for r in started:
        r.stop()


def _spooled(r: Receiver) -> list:
    return sorted(p.name for p in r.spool.rglob("*.dcm"))


def test_peers_are_parsed_and_bad_ones_refused_with_the_reason():
    peers = parse_peers(" ORTHANC=doctor_a, MR1@10.0.0.5 = radiology ,")
    assert [str(p) for p in peers.values()] == ["ORTHANC=doctor_a", "MR1@10.0.0.5=radiology"]
    assert peers["MR1"].host == "10.0.0.5" and peers["ORTHANC"].host is None and parse_peers("") == {}
    for bad, reason in (("ORTHANC", "is not AE_TITLE=username"), ("A=b, A=c", "named twice"),
                        ("MUCH_TOO_LONG_AE_TITLE=x", "is not a DICOM AE title"), ("A=b c", "is not AE_TITLE")):
        with pytest.raises(ValueError, match=reason):
            parse_peers(bad)


def test_a_pushed_series_becomes_a_scan_of_the_mapped_account_and_is_analysed(client_a, doctor_a, receiver):
    r = receiver()
    assert push(r.port, _datasets()) == [0, 0, 0]
    [series] = r.take_ready(now=time.time() + LATER)
    assert (series.calling_ae, series.address, len(series.files)) == ("ORTHANC", "127.0.0.1", 3)

    result = scan_receive_series(series, r.peers)
    series.discard()
    scan = result.scan
    assert result.created and (scan.owner, scan.kind, scan.n_slices) == (doctor_a, "dicom", 3)
    assert scan.original_name == "sT2W-FLAIR-s401-0010.dcm (+2 more)"  # named and ordered by instance number
    assert InferenceJob.objects.filter(scan=scan).count() == 1  # the detector runs, as after an upload
    assert scan.metadata["origin"] == {"received": {"calling_ae": "ORTHANC", "address": "127.0.0.1"}}
    assert scan.metadata["header_checks"]["status"] == "consistent"
    assert _spooled(r) == [] and r.take_ready(now=time.time() + LATER) == []
    # The pixels are the sender's.
    stored = {pydicom.dcmread(f.file.open("rb")).SOPInstanceUID: pydicom.dcmread(f.file.open("rb")).PixelData
              for f in scan.files.all()}
    assert stored == {ds.SOPInstanceUID: ds.PixelData for ds in _datasets()}
    uploaded = AuditEvent.objects.get(action=actions.SCAN_UPLOADED)  # the upload's own event says where it came from
    assert uploaded.details["origin"] == {"received": {"calling_ae": "ORTHANC", "address": "127.0.0.1"}}
    event = AuditEvent.objects.get(action=actions.DICOM_RECEIVED)
    assert (event.actor_username, event.object_id, event.details["instances"], event.details["calling_ae"]) == (
        "doctor_a", str(scan.pk), 3, "ORTHANC")

    page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert "<dt>Received</dt><dd data-origin>" in page and "for doctor_a over DICOM from ORTHANC at 127.0.0.1" in page
    assert "one program: this portal, on receipt over DICOM" in page
    store_analysis(scan, verdicts={0: "no_tumor", 1: "no_tumor", 2: "no_tumor"}, regions={}, scan_verdict="no_tumor")
    text = report_pdf_text(client_a, scan.pk)
    assert "Received for" in text and "over DICOM from ORTHANC at 127.0.0.1" in text, text

    # Pushed again (a PACS re-sends a study): the scan already made, no second job.
    push(r.port, _datasets())
    [again] = r.take_ready(now=time.time() + LATER)
    repeat = scan_receive_series(again, r.peers)
    assert (repeat.created, repeat.scan.pk, Scan.objects.count(), InferenceJob.objects.count()) == (False, scan.pk, 1, 1)


def test_a_series_is_handed_over_only_once_its_association_ended_and_an_abort_takes_it_back(receiver):
    r = receiver()
    ae = AE(ae_title="ORTHANC")
    ae.add_requested_context(str(_datasets()[0].SOPClassUID), ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", r.port, ae_title="TAMPERCHECK")
    for ds in _datasets((9, 10)):
        assert assoc.send_c_store(ds).Status == 0
    assert len(_spooled(r)) == 2 and r.take_ready(now=time.time() + LATER) == []  # still being sent
    assoc.abort()
    time.sleep(0.3)
    assert _spooled(r) == [] and r.take_ready(now=time.time() + LATER) == []

    slow = receiver(idle=30)  # idle: a sender that opens one association per instance is not cut in pieces
    push(slow.port, _datasets((9,)))
    assert slow.take_ready() == [] and len(slow.take_ready(now=time.time() + 31)) == 1


def test_unknown_senders_are_refused_and_other_objects_acknowledged_but_not_kept(receiver):
    r = receiver("ORTHANC=doctor_a, MR1@10.9.9.9=doctor_a")
    stranger = AE(ae_title="STRANGER")
    stranger.add_requested_context(str(_datasets()[0].SOPClassUID))
    assert stranger.associate("127.0.0.1", r.port, ae_title="TAMPERCHECK").is_rejected
    assert push(r.port, _datasets((9,)), calling_ae="MR1") == [0x0124]  # allowed only from 10.9.9.9

    report = _report(_datasets((9,))[0])  # a structured report in the same study: acknowledged, not kept
    no_pixels = _datasets((9,))[0]
    del no_pixels.PixelData
    no_pixels.SOPInstanceUID = generate_uid()
    assert push(r.port, [report, no_pixels]) == [0, 0xA900]
    assert r.skipped == 1 and _spooled(r) == [] and r.take_ready(now=time.time() + LATER) == []


def test_a_series_over_the_limits_or_for_a_disabled_account_or_unreadable_is_refused_and_audited(
        doctor_a, receiver, assert_nothing_stored):
    r = receiver(max_instances=2)
    assert push(r.port, _datasets()) == [0, 0, 0xA700]
    [series] = r.take_ready(now=time.time() + LATER)
    assert series.over_limit and scan_receive_series(series, r.peers) is None
    series.discard()

    doctor_a.is_active = False
    doctor_a.save()
    push(r.port, _datasets((9, 10)))
    [series] = r.take_ready(now=time.time() + LATER)
    assert scan_receive_series(series, r.peers) is None
    series.discard()
    doctor_a.is_active = True
    doctor_a.save()

    broken = _datasets((9,))[0]
    broken.PixelData = broken.PixelData[:100]  # cut short: the upload's checks refuse it
    push(r.port, [broken])
    [series] = r.take_ready(now=time.time() + LATER)
    assert scan_receive_series(series, r.peers) is None
    series.discard()

    reasons = [e.details["error"] for e in AuditEvent.objects.filter(action=actions.DICOM_RECEIVE_FAILED).order_by("seq")]
    assert len(reasons) == 3 and "upload limits" in reasons[0] and "'doctor_a' that receives from ORTHANC is disabled" \
        in reasons[1] and "pixel" in reasons[2].lower(), reasons
    assert_nothing_stored()
    assert _spooled(r) == []


def test_what_a_stopped_receiver_had_not_stored_is_handed_over_after_a_restart(receiver, tmp_path):
    first = receiver()
    push(first.port, _datasets((9, 10)))
    first.stop()
    [folder] = (tmp_path / "spool").glob("*/*")
    (folder / ".1.2.3.part").write_bytes(b"half")
    second = receiver()
    [series] = second.take_ready(now=time.time() + LATER)
    assert len(series.files) == 2 and not list((tmp_path / "spool").rglob("*.part"))


def test_orthanc_pushes_a_study_to_the_portal(tmp_path, doctor_a, receiver):
    r = receiver()
    report = _report(_datasets((9,))[0])
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    with running_orthanc(tmp_path, dicom=True,
                         modalities={"portal": ["TAMPERCHECK", "127.0.0.1", r.port]}) as pacs:
        for path in brainix_paths(INDICES):
            study = post_instance(pacs["http"], path.read_bytes())["ParentStudy"]
        post_instance(pacs["http"], buffer.getvalue())
        assert len(get_json(pacs["http"], f"/studies/{study}/instances")) == 4
        answer = post_json(pacs["http"], "/modalities/portal/store", {"Resources": [study], "Synchronous": True})
    assert answer.get("FailedInstancesCount", 0) == 0 and answer["InstancesCount"] == 4, answer
    time.sleep(0.2)
    [series] = r.take_ready(now=time.time() + LATER)
    assert len(series.files) == 3 and r.skipped == 1
    assert scan_receive_series(series, r.peers).scan.n_slices == 3


@pytest.mark.django_db(transaction=True)  # the command closes stale database connections, as a long-lived process must
def test_the_command_receives_and_stores_until_stopped(doctor_a, settings, tmp_path):
    port = free_port()
    settings.DICOM_RECEIVER_PEERS, settings.DICOM_RECEIVER_SPOOL = "ORTHANC=doctor_a", tmp_path / "spool"
    settings.DICOM_RECEIVER_IDLE_SECONDS = 0.2
    out = io.StringIO()

    def sender():
        for _ in range(100):
            try:
                push(port, _datasets())
                return
            except AssertionError:
                time.sleep(0.05)

    thread = threading.Thread(target=sender)
    thread.start()
    call_command("dicom_receiver", host="127.0.0.1", port=port, stop_after=3, stdout=out)
    thread.join()
    scan = Scan.objects.get()
    assert (scan.owner, scan.n_slices) == (doctor_a, 3)
    assert f"Receiving DICOM as TAMPERCHECK on 127.0.0.1:{port} from ORTHANC=doctor_a" in out.getvalue()
    assert f"scan {scan.pk} (3 slices) for doctor_a" in out.getvalue()
    assert not list((tmp_path / "spool").rglob("*.dcm"))

    settings.DICOM_RECEIVER_PEERS = "ORTHANC=doctor_a, MR1=nobody"
    with pytest.raises(CommandError, match=r"MR1=nobody \(no such account\)"):
        call_command("dicom_receiver", port=port, stop_after=0)
    settings.DICOM_RECEIVER_PEERS = ""
    with pytest.raises(CommandError, match="set DICOM_RECEIVER_PEERS"):
        call_command("dicom_receiver", port=port, stop_after=0)


def test_an_ae_title_never_names_a_path_outside_the_spool(receiver, tmp_path):
    r = receiver("../UP=doctor_a")
    assert push(r.port, _datasets((9,)), calling_ae="../UP") == [0]
    [series] = r.take_ready(now=time.time() + LATER)
    assert series.calling_ae == "../UP" and series.folder.parent.parent == tmp_path / "spool"
    assert series.folder.parent.name == "ae-%2E%2E%2FUP" and not (tmp_path / "UP").exists()
