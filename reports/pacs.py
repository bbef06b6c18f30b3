"""The portal's DICOM client of the hospital's PACS (pynetdicom). No Django models here.

``PACS_DESTINATION`` names the PACS as ``AE_TITLE@host:port`` (``parse_destination``).
- ``store`` (C-STORE) opens one association, sends each instance in the transfer syntax it was written in, and
  returns the PACS's answer per instance. A PACS that cannot be reached, refuses the association, or refuses an
  instance is a ``PacsSendFailed`` whose message says which and why, with what was stored before it (``results``).
- ``find_studies`` (C-FIND, study root) lists the studies that match a patient ID, an accession number or a study
  date, each with its series; ``retrieve_series`` (C-GET) brings one series' instances back over the same
  association, as DICOM files in memory. Their failures are ``PacsError`` saying what went wrong.
- ``echo`` (C-ECHO) says whether, and how fast, the PACS answers.
- With ``PacsDestination.tls`` (an ``ssl.SSLContext`` from ``tls_context``), every association runs over DICOM TLS:
  the portal shows its certificate and checks the PACS's against the trusted ones; a failed handshake is said as such.
"""
from __future__ import annotations

import contextlib
import io
import re
import socket
import ssl
from dataclasses import dataclass, field

AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # DICOM AE: default repertoire without backslash, 16 at most
DESTINATION = re.compile(r"(?P<ae>[^@]+)@(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-_]+):(?P<port>\d{1,5})")
SUCCESS = 0x0000
WARNING_STATUSES = {0x0001, 0xB000, 0xB006, 0xB007}  # stored, with a coercion or a warning (PS3.4 GG.4)


@dataclass(frozen=True)
class PacsDestination:
    ae_title: str
    host: str
    port: int
    tls: ssl.SSLContext | None = field(default=None, compare=False)  # DICOM TLS (tls_context); None: plain TCP

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def tls_context(*, certificate: str, private_key: str, trusted: str, server: bool = False) -> ssl.SSLContext:
    """A DICOM TLS context (TLS 1.2 at least): this portal's certificate and private key (PEM) to show, and the
    certificates it trusts (PEM bundle: the peers' own, or the authority that signed them) to check the other side's.
    As a client it checks the server's certificate and name; as a server (``server=True``) it requires a
    certificate from every client. ValueError saying which file could not be used and why."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, step in (("trusted certificates (DICOM_TLS_TRUSTED)", lambda: context.load_verify_locations(trusted)),
                       ("certificate and private key (DICOM_TLS_CERTIFICATE, DICOM_TLS_PRIVATE_KEY)",
                        lambda: context.load_cert_chain(certificate, private_key))):
        try:
            step()
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"DICOM TLS: the {what} could not be used: {getattr(exc, 'strerror', None) or exc}."
                             ) from exc
    context.verify_mode = ssl.CERT_REQUIRED  # the client's default; a server asks every client for its certificate
    return context


class PacsError(Exception):
    """The PACS could not be reached, refused the portal, or answered a query or retrieval with a failure."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PacsSendFailed(PacsError):
    """``transient``: the PACS could not be reached, stopped answering or was out of resources, so the same send
    may work later (the portal tries again); otherwise it refused the portal or an object, which trying again does
    not change."""

    def __init__(self, message: str, results: list[dict] | None = None, *, transient: bool = False):
        super().__init__(message)
        self.message = message
        self.results = results or []
        self.transient = transient


def parse_destination(text: str) -> PacsDestination | None:
    """``"ORTHANC@pacs.example.org:4242"`` -> PacsDestination; "" -> None (no PACS); ValueError saying what is wrong."""
    text = (text or "").strip()
    if not text:
        return None
    match = DESTINATION.fullmatch(text)
    if not match:
        raise ValueError(f"PACS_DESTINATION {text!r} is not AE_TITLE@host:port (e.g. ORTHANC@pacs.example.org:4242).")
    ae_title, host, port = match["ae"].strip(), match["host"].strip("[]"), int(match["port"])
    if not AE_TITLE.fullmatch(ae_title):
        raise ValueError(f"PACS_DESTINATION: the AE title {ae_title!r} is not a DICOM AE title (1-16 characters, "
                         "no backslash or control characters).")
    if not 0 < port < 65536:
        raise ValueError(f"PACS_DESTINATION: port {port} is not a TCP port (1-65535).")
    return PacsDestination(ae_title, host, port)


@dataclass
class _Instance:
    data: bytes
    dataset: "pydicom.Dataset" = field(init=False)  # noqa: F821  (imported when used: settings import this module)

    def __post_init__(self):
        import pydicom

        self.dataset = pydicom.dcmread(io.BytesIO(self.data))

    @property
    def sop_class(self) -> str:
        return str(self.dataset.SOPClassUID)

    @property
    def syntax(self) -> str:
        return str(self.dataset.file_meta.TransferSyntaxUID)


def _application_entity(calling_ae: str, timeout: float):
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    for timer in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, timer, timeout)
    return ae


def _reach(destination: PacsDestination, timeout: float) -> None:
    """Open and close a TCP connection (and, with TLS, shake hands), so that "refused", "timed out" or a certificate
    that is not trusted is said as such."""
    try:
        with socket.create_connection((destination.host, destination.port), timeout=timeout) as sock:
            if destination.tls is not None:
                try:
                    with destination.tls.wrap_socket(sock, server_hostname=destination.host):
                        pass
                except OSError as exc:  # SSLError, or the PACS closing the connection (it does not speak TLS)
                    why = (f"certificate verify failed: {exc.verify_message}"
                           if isinstance(exc, ssl.SSLCertVerificationError)
                           else getattr(exc, "reason", None) or exc.strerror or exc)
                    raise PacsSendFailed(
                        f"Could not connect to the PACS {destination}: the DICOM TLS handshake failed ({why}); check "
                        "that it speaks TLS on this port, that its certificate is among the trusted ones "
                        "(DICOM_TLS_TRUSTED) and names this host, and that it trusts the portal's.") from exc
    except PacsSendFailed:
        raise
    except OSError as exc:
        raise PacsSendFailed(f"Could not connect to the PACS {destination}: "
                             f"{exc.strerror or exc or 'no answer'} (after at most {timeout:g} s).",
                             transient=True) from exc


def _tls_args(destination: PacsDestination) -> dict:
    return {"tls_args": (destination.tls, destination.host)} if destination.tls is not None else {}


def _association_failed(assoc, destination: PacsDestination, calling_ae: str, timeout: float) -> PacsSendFailed:
    # A PACS that does not know the called or the calling AE title rejects the association request, or (Orthanc,
    # now and then) aborts it: the same advice either way.
    advice = (f"check that it knows this portal's AE title {calling_ae!r} and that its own is "
              f"{destination.ae_title!r}" + (", or whether it takes DICOM TLS only (PACS_TLS)"
                                              if destination.tls is None and assoc.is_aborted else ""))
    reason = (f"it refused the association ({advice})" if assoc.is_rejected
              else f"it refused the association by aborting the request ({advice})" if assoc.is_aborted
              else f"it did not answer the association request within {timeout:g} s")
    # Refused (rejected or aborted) is the PACS's configuration, which trying again does not change; no answer may pass.
    return PacsSendFailed(f"Could not connect to the PACS {destination}: {reason}.",
                          transient=not (assoc.is_rejected or assoc.is_aborted))


def echo(destination: PacsDestination, *, calling_ae: str = "TAMPERCHECK", timeout: float = 30) -> float:
    """DICOM C-ECHO (verification): the seconds the PACS took to answer; PacsSendFailed saying why it did not."""
    import time

    from pynetdicom.sop_class import Verification

    _reach(destination, timeout)
    ae = _application_entity(calling_ae, timeout)
    ae.add_requested_context(Verification)
    started = time.perf_counter()
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, **_tls_args(destination))
    if not assoc.is_established:
        raise _association_failed(assoc, destination, calling_ae, timeout)
    try:
        answer = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    if not answer or "Status" not in answer or int(answer.Status) != SUCCESS:
        raise PacsSendFailed(f"The PACS {destination} did not answer the C-ECHO with success.")
    return time.perf_counter() - started


def store(instances: list[bytes], destination: PacsDestination, *, calling_ae: str = "TAMPERCHECK",
          timeout: float = 30) -> list[dict]:
    """C-STORE each DICOM file (bytes) to ``destination`` in one association. Returns, per instance,
    ``{"sop_class_uid", "sop_instance_uid", "status"}`` (status as "0x0000"); PacsSendFailed otherwise."""
    items = [_Instance(data) for data in instances]
    ae = _application_entity(calling_ae, timeout)
    for sop_class, syntax in sorted({(i.sop_class, i.syntax) for i in items}):
        ae.add_requested_context(sop_class, [syntax])
    _reach(destination, timeout)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, **_tls_args(destination))
    if not assoc.is_established:
        raise _association_failed(assoc, destination, calling_ae, timeout)
    results: list[dict] = []
    try:
        for item in items:
            uid = str(item.dataset.SOPInstanceUID)
            try:
                answer = assoc.send_c_store(item.dataset)
            except ValueError as exc:  # no accepted presentation context for this SOP class / syntax
                raise PacsSendFailed(f"The PACS {destination} does not accept {item.dataset.SOPClassUID.name} "
                                     f"objects: {exc}", results) from exc
            status = int(answer.Status) if answer and "Status" in answer else None
            if status is None:
                raise PacsSendFailed(f"The PACS {destination} did not answer the C-STORE of {uid} (timed out or "
                                     "aborted).", results, transient=True)
            results.append({"sop_class_uid": item.sop_class, "sop_instance_uid": uid, "status": f"0x{status:04X}"})
            if status != SUCCESS and status not in WARNING_STATUSES:
                out_of_resources = 0xA700 <= status <= 0xA7FF  # full, or busy: may take it later
                raise PacsSendFailed(f"The PACS {destination} refused {item.dataset.SOPClassUID.name} {uid} with "
                                     f"status 0x{status:04X}{' (out of resources)' if out_of_resources else ''}.",
                                     results, transient=out_of_resources)
    finally:
        if assoc.is_established:
            assoc.release()
    return results


# --- Query (C-FIND) and retrieve (C-GET) ---------------------------------------------------------------------

PENDING = {0xFF00, 0xFF01}
# What a retrieval accepts: the image storage classes a brain MRI series comes as (and CT, secondary capture),
# in the transfer syntaxes the portal decodes (the PACS converts others, or says it cannot).
RETRIEVABLE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
)
RETRIEVABLE_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
# Series that hold no images to analyse (reports, segmentations, presentation states, key objects, documents).
NON_IMAGE_MODALITIES = {"SR", "SEG", "PR", "KO", "DOC", "REG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "OT-DOC"}


@dataclass(frozen=True)
class PacsSeries:
    study_uid: str
    series_uid: str
    modality: str
    number: str
    description: str
    instances: int | None  # Number of Series Related Instances, when the PACS says

    @property
    def is_image(self) -> bool:
        return self.modality.upper() not in NON_IMAGE_MODALITIES


@dataclass
class PacsStudy:
    study_uid: str
    date: str  # YYYYMMDD as the PACS gives it
    accession_number: str
    description: str
    modalities: str
    series: list[PacsSeries] = field(default_factory=list)

    @property
    def date_text(self) -> str:
        d = self.date
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


@dataclass
class StudySearch:
    studies: list[PacsStudy]
    more: bool  # the PACS matched more studies than were listed


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, "") if ds is not None else ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value or "").strip()


def _associate(destination: PacsDestination, ae, calling_ae: str, timeout: float, **kwargs):
    _reach(destination, timeout)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, **kwargs,
                         **_tls_args(destination))
    if not assoc.is_established:
        failed = _association_failed(assoc, destination, calling_ae, timeout)
        raise PacsError(failed.message)
    return assoc


@contextlib.contextmanager
def _find_association(destination: PacsDestination, calling_ae: str, timeout: float):
    """An association for C-FIND (study root), released however the searches end."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    ae = _application_entity(calling_ae, timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = _associate(destination, ae, calling_ae, timeout)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _c_find(assoc, identifier, destination: PacsDestination, what: str) -> list:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    found = []
    try:
        answers = list(assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind))
    except ValueError as exc:  # the PACS accepted the association but not the search's presentation context
        raise PacsError(f"The PACS {destination} does not accept searches (C-FIND) from this portal.") from exc
    for status, answer in answers:
        code = int(status.Status) if status and "Status" in status else None
        if code is None:
            raise PacsError(f"The PACS {destination} did not answer the search for {what}: it aborted it or timed "
                            "out (a PACS aborts a search from an AE title it does not let search).")
        if code in PENDING:
            found.append(answer)
        elif code != SUCCESS:
            raise PacsError(f"The PACS {destination} refused the search for {what} with status 0x{code:04X}.")
    return found


def find_studies(destination: PacsDestination, *, patient_id: str = "", accession_number: str = "",
                 study_date: str = "", calling_ae: str = "TAMPERCHECK", timeout: float = 30,
                 max_studies: int = 20) -> StudySearch:
    """The studies matching every key given (DICOM matching: ``*`` and ``?`` are wildcards; ``study_date`` is
    YYYYMMDD or a YYYYMMDD-YYYYMMDD range, open at either end), newest first, at most ``max_studies``, each with its series (one
    association). ValueError when no key narrows the search; PacsError when the PACS fails."""
    from pydicom.dataset import Dataset

    keys = {"PatientID": patient_id.strip(), "AccessionNumber": accession_number.strip(),
            "StudyDate": study_date.strip()}
    if not any(v.strip("*?") for v in keys.values()):
        raise ValueError("Give a patient ID, an accession number or a study date: a search needs at least one.")
    with _find_association(destination, calling_ae, timeout) as assoc:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        for keyword, value in keys.items():
            setattr(query, keyword, value)
        for keyword in ("StudyInstanceUID", "StudyTime", "StudyDescription", "ModalitiesInStudy"):
            setattr(query, keyword, "")
        answers = _c_find(assoc, query, destination, "studies")
        studies = [PacsStudy(study_uid=_text(a, "StudyInstanceUID"), date=_text(a, "StudyDate"),
                             accession_number=_text(a, "AccessionNumber"), description=_text(a, "StudyDescription"),
                             modalities=_text(a, "ModalitiesInStudy"))
                   for a in answers if _text(a, "StudyInstanceUID")]
        studies.sort(key=lambda s: (s.date, s.study_uid), reverse=True)
        listed = studies[:max_studies]
        for study in listed:
            query = Dataset()
            query.QueryRetrieveLevel = "SERIES"
            query.StudyInstanceUID = study.study_uid
            for keyword in ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                            "NumberOfSeriesRelatedInstances"):
                setattr(query, keyword, "")
            for a in _c_find(assoc, query, destination, f"the series of study {study.study_uid}"):
                count = _text(a, "NumberOfSeriesRelatedInstances")
                study.series.append(PacsSeries(
                    study_uid=study.study_uid, series_uid=_text(a, "SeriesInstanceUID"), modality=_text(a, "Modality"),
                    number=_text(a, "SeriesNumber"), description=_text(a, "SeriesDescription"),
                    instances=int(count) if count.isdigit() else None))
            study.series.sort(key=lambda s: (int(s.number) if s.number.lstrip("-").isdigit() else 1 << 30, s.series_uid))
    return StudySearch(studies=listed, more=len(studies) > len(listed))


def series_held(destination: PacsDestination, *, study_uid: str, series_uid: str, calling_ae: str = "TAMPERCHECK",
                timeout: float = 30) -> bool:
    """Whether the PACS holds the series (C-FIND at series level, by its UIDs); PacsError when the PACS fails."""
    from pydicom.dataset import Dataset

    with _find_association(destination, calling_ae, timeout) as assoc:
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID, query.SeriesInstanceUID = study_uid, series_uid
        return any(_text(a, "SeriesInstanceUID") == series_uid
                   for a in _c_find(assoc, query, destination, f"series {series_uid}"))


def retrieve_series(destination: PacsDestination, *, study_uid: str, series_uid: str, calling_ae: str = "TAMPERCHECK",
                    timeout: float = 30, max_instances: int = 1000, max_bytes: int = 512 * 1024 * 1024
                    ) -> list[bytes]:
    """Every instance of one series, by C-GET, as DICOM files (bytes, in the order they came). PacsError when the
    PACS fails, sends nothing, sends an object the portal cannot read, or the series passes the limits (checked
    as the instances arrive: the retrieval is cancelled, nothing is kept)."""
    from pydicom.dataset import Dataset
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

    received: list[bytes] = []
    refused: list[str] = []

    def on_store(event):
        if len(received) >= max_instances or sum(map(len, received)) >= max_bytes:
            refused.append("limit")
            return 0xA700  # out of resources: the PACS stops sending
        received.append(event.encoded_dataset(include_meta=True))  # the bytes as sent, with a file meta header
        return SUCCESS

    ae = _application_entity(calling_ae, timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in RETRIEVABLE_SOP_CLASSES:
        ae.add_requested_context(sop_class, list(RETRIEVABLE_SYNTAXES))
    roles = [build_role(sop_class, scp_role=True) for sop_class in RETRIEVABLE_SOP_CLASSES]
    assoc = _associate(destination, ae, calling_ae, timeout, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    final = None
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = series_uid
        for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            if not status or "Status" not in status:
                raise PacsError(f"The PACS {destination} did not answer the retrieval (timed out or aborted).")
            final = status
    finally:
        if assoc.is_established:
            assoc.release()
    if refused:
        raise PacsError(f"The series has more than {max_instances} instances or {max_bytes // (1024 * 1024)} MB, "
                        "the portal's upload limits; nothing was imported.")
    code = int(final.Status) if final is not None else None
    failed = int(final.get("NumberOfFailedSuboperations", 0) or 0) if final is not None else 0
    if code not in (SUCCESS, 0xB000) or failed:
        reason = (f"status 0x{code:04X}" if code is not None else "no final status")
        if failed:
            reason += (f", {failed} instance{'s' if failed != 1 else ''} not sent (of an object class or transfer "
                       "syntax the portal does not take, or not an image)")
        raise PacsError(f"The PACS {destination} did not send the whole series ({reason}); nothing was imported.")
    if not received:
        raise PacsError(f"The PACS {destination} sent no instance of this series; nothing was imported.")
    return received
