"""DICOM TLS with a real Orthanc that takes TLS only and requires a trusted certificate: the portal sends an analysis,
searches, imports and checks the PACS over TLS (PACS_TLS), and takes pushed series over TLS (DICOM_RECEIVER_TLS);
a PACS or a peer whose certificate is not trusted, a portal that speaks plain DICOM to it, and TLS files that
cannot be read are each refused with the reason."""
import io
import time
from dataclasses import replace

import pydicom
import pytest
from django.core.management import CommandError, call_command
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from reports import services
from reports.models import PacsTransfer
from reports.pacs import PacsSendFailed, echo, find_studies, retrieve_series, tls_context
from scans.dicom_receiver import Receiver, parse_peers
from tests.reports.conftest import brainix_paths
from tests.reports.orthanc import post_instance, post_json, running_orthanc
from tests.reports.tls import make_pki

SOURCE_INDICES = (9, 10, 11)  # analysed_scan's files


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def portal_tls(settings, pki):
    settings.DICOM_TLS_CERTIFICATE, settings.DICOM_TLS_PRIVATE_KEY = str(pki["portal.crt"]), str(pki["portal.key"])
    settings.DICOM_TLS_TRUSTED = str(pki["ca"])
    settings.PACS_TLS = True
    return settings


def _orthanc_tls(pki) -> dict:
    return {"certificate": pki["orthanc.crt"], "private_key": pki["orthanc.key"], "trusted": pki["ca"]}


def test_the_portal_sends_searches_imports_and_checks_over_tls(analysed_scan, portal_tls, pki, tmp_path,
                                                             django_capture_on_commit_callbacks):
    with running_orthanc(tmp_path, dicom=True, tls=_orthanc_tls(pki)) as pacs:
        portal_tls.PACS_DESTINATION = pacs["destination"]
        for path in brainix_paths(SOURCE_INDICES):
            post_instance(pacs["http"], path.read_bytes())
        destination = services.pacs_connection()
        assert destination.tls is not None and str(destination) == pacs["destination"]

        out = io.StringIO()
        call_command("check_pacs", "--query", stdout=out)
        assert f"The PACS {pacs['destination']} answered a C-ECHO from TAMPERCHECK over DICOM TLS in" in out.getvalue()
        patient_id = pydicom.dcmread(brainix_paths(SOURCE_INDICES)[0], stop_before_pixels=True).PatientID
        [study] = find_studies(destination, patient_id=patient_id).studies
        blobs = retrieve_series(destination, study_uid=study.study_uid, series_uid=study.series[0].series_uid)
        assert len(blobs) == 3 and pydicom.dcmread(io.BytesIO(blobs[0])).Modality == "MR"

        transfer = PacsTransfer.objects.create(scan=analysed_scan.scan, job=analysed_scan.job,
                                               requested_by=analysed_scan.scan.owner, destination=str(destination))
        sent = services.pacs_transfer_run(transfer_id=transfer.pk)
        assert sent.status == "sent", sent.detail
        assert [i["what"] for i in sent.instances] == ["seg", "report", "sr"]

        # Plain DICOM to a TLS-only PACS, and a PACS certificate the portal does not trust: refused, with the reason.
        with pytest.raises(PacsSendFailed, match=r"or whether it takes DICOM TLS only \(PACS_TLS\)"):
            echo(replace(destination, tls=None), timeout=5)
        portal_tls.DICOM_TLS_TRUSTED = str(pki["stranger.crt"])
        with pytest.raises(PacsSendFailed, match=r"the DICOM TLS handshake failed \(certificate verify failed") as err:
            echo(services.pacs_connection(), timeout=5)
        assert not err.value.transient  # a certificate is configuration: trying again would not help
        # The portal's certificate is not one the PACS trusts: the PACS drops the connection.
        stranger = tls_context(certificate=str(pki["stranger.crt"]), private_key=str(pki["stranger.key"]),
                               trusted=str(pki["ca"]))
        with pytest.raises(PacsSendFailed, match="the DICOM TLS handshake failed|refused the association"):
            echo(replace(destination, tls=stranger), timeout=5)

    portal_tls.DICOM_TLS_TRUSTED = str(tmp_path / "missing.pem")
    with pytest.raises(CommandError, match=r"DICOM TLS: the trusted certificates \(DICOM_TLS_TRUSTED\) could not be "
                                           r"used: No such file or directory"):
        call_command("check_pacs")


def test_the_receiver_takes_series_over_tls_from_trusted_peers_only(doctor_a, pki, tmp_path):
    server = tls_context(certificate=str(pki["portal.crt"]), private_key=str(pki["portal.key"]),
                         trusted=str(pki["ca"]), server=True)
    receiver = Receiver(ae_title="TAMPERCHECK", peers=parse_peers("ORTHANC=doctor_a"), spool=tmp_path / "spool",
                        idle=0.0, tls=server).start("127.0.0.1", 0)
    try:
        modality = {"AET": "TAMPERCHECK", "Host": "127.0.0.1", "Port": receiver.port, "UseDicomTls": True}
        with running_orthanc(tmp_path / "pacs", dicom=True, tls=_orthanc_tls(pki),
                             modalities={"portal": modality}) as pacs:
            for path in brainix_paths(SOURCE_INDICES):
                study = post_instance(pacs["http"], path.read_bytes())["ParentStudy"]
            answer = post_json(pacs["http"], "/modalities/portal/store", {"Resources": [study], "Synchronous": True})
        assert answer["InstancesCount"] == 3 and answer.get("FailedInstancesCount", 0) == 0, answer
        time.sleep(0.2)
        [series] = receiver.take_ready(now=time.time() + 60)
        assert len(series.files) == 3

        # Plain DICOM, and TLS with a certificate the portal does not trust: no association.
        source = pydicom.dcmread(brainix_paths(SOURCE_INDICES)[0])
        for tls_args in (None, (tls_context(certificate=str(pki["stranger.crt"]), private_key=str(pki["stranger.key"]),
                                            trusted=str(pki["ca"])), "127.0.0.1")):
            ae = AE(ae_title="ORTHANC")
            ae.acse_timeout = ae.network_timeout = 5
            ae.add_requested_context(source.SOPClassUID, ExplicitVRLittleEndian)
            assoc = ae.associate("127.0.0.1", receiver.port, ae_title="TAMPERCHECK", tls_args=tls_args)
            assert not assoc.is_established
        assert receiver.take_ready(now=time.time() + 60)[0].files == series.files  # nothing more came in
    finally:
        receiver.stop()
