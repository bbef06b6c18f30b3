"""Sending DICOM objects to the hospital's PACS by DICOM C-STORE (pynetdicom). No Django models here.

``PACS_DESTINATION`` names one storage SCP as ``AE_TITLE@host:port`` (``parse_destination``); ``store`` opens
one association, sends each instance in the transfer syntax it was written in, and returns the PACS's answer
per instance. A PACS that cannot be reached, refuses the association, or refuses an instance is a
``PacsSendFailed`` whose message says which and why, with what was stored before it (``results``).
"""
from __future__ import annotations

import io
import re
import socket
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

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class PacsSendFailed(Exception):
    def __init__(self, message: str, results: list[dict] | None = None):
        super().__init__(message)
        self.message = message
        self.results = results or []


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
    """Open and close a TCP connection, so that "refused" or "timed out" is said as such."""
    try:
        with socket.create_connection((destination.host, destination.port), timeout=timeout):
            pass
    except OSError as exc:
        raise PacsSendFailed(f"Could not connect to the PACS {destination}: "
                             f"{exc.strerror or exc or 'no answer'} (after at most {timeout:g} s).") from exc


def _association_failed(assoc, destination: PacsDestination, calling_ae: str, timeout: float) -> PacsSendFailed:
    reason = ("it refused the association (check that it knows this portal's AE title "
              f"{calling_ae!r} and that its own is {destination.ae_title!r})" if assoc.is_rejected
              else "it aborted the association" if assoc.is_aborted
              else f"it did not answer the association request within {timeout:g} s")
    return PacsSendFailed(f"Could not connect to the PACS {destination}: {reason}.")


def echo(destination: PacsDestination, *, calling_ae: str = "TAMPERCHECK", timeout: float = 30) -> float:
    """DICOM C-ECHO (verification): the seconds the PACS took to answer; PacsSendFailed saying why it did not."""
    import time

    from pynetdicom.sop_class import Verification

    _reach(destination, timeout)
    ae = _application_entity(calling_ae, timeout)
    ae.add_requested_context(Verification)
    started = time.perf_counter()
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
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
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
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
                                     "aborted).", results)
            results.append({"sop_class_uid": item.sop_class, "sop_instance_uid": uid, "status": f"0x{status:04X}"})
            if status != SUCCESS and status not in WARNING_STATUSES:
                raise PacsSendFailed(f"The PACS {destination} refused {item.dataset.SOPClassUID.name} {uid} with "
                                     f"status 0x{status:04X}.", results)
    finally:
        if assoc.is_established:
            assoc.release()
    return results
