"""The portal as a DICOM node that a PACS, a router or a scanner pushes series to (a pynetdicom Storage SCP).
No Django here: ``scans.services.scan_receive_series`` stores what this hands over, and the ``dicom_receiver``
command runs the two together.

- Only the peers named in ``DICOM_RECEIVER_PEERS`` (``parse_peers``: ``AE_TITLE[@host]=username``) may associate;
  every series a peer sends becomes a scan of the account it is mapped to. With ``tls`` (DICOM_RECEIVER_TLS), only
  over TLS, with a certificate the portal trusts.
- Each image instance is written to a spool folder, one folder per sender and series, under a temporary name and
  then renamed: a folder never holds half a file.
- A series is complete when no association is sending to it and nothing has arrived for ``idle`` seconds (senders
  differ: one association per series, per study or per instance). ``Receiver.take_ready`` hands each complete
  series over; the caller stores it and then calls ``ReceivedSeries.discard``. A series the caller fails on stays
  in the spool, and so does what a stopped receiver had not handed over: it is handed over after a restart.
- What an association sent is removed if it ends without a proper release (aborted, connection lost): the sender
  knows that transfer failed and sends again; a half series is never analysed.
- Instances that are not images the detector reads (segmentations, structured reports, PDF reports, presentation
  states, ...) are acknowledged and not kept, so that a PACS forwarding a whole study sees no failure for them.
- A series over the upload limits is refused from the instance that passes them (status A700, out of resources)
  and handed over marked ``over_limit``, to be refused as a whole.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from reports.pacs import AE_TITLE  # the default repertoire, no backslash, 16 characters at most
from reports.pacs import RETRIEVABLE_SOP_CLASSES as IMAGE_SOP_CLASSES  # the image objects the detector reads
from reports.pacs import RETRIEVABLE_SYNTAXES as IMAGE_SYNTAXES  # in the transfer syntaxes pydicom decodes

log = logging.getLogger(__name__)

UID = re.compile(r"[0-9]+(\.[0-9]+)*")
PEER = re.compile(r"\s*(?P<ae>[^@=,]+?)\s*(?:@\s*(?P<host>[^=,\s]+)\s*)?=\s*(?P<user>[\w.@+-]+)\s*")

SUCCESS = 0x0000
REFUSED_NOT_AUTHORIZED = 0x0124  # PS3.7 C.5.4 "Refused: Not Authorized"
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
OVER_LIMIT_MARK = ".over-limit"
SENDER_FILE = ".sender.json"


def _folder_name(ae_title: str) -> str:
    """The spool folder of a sender: its AE title in file-name-safe characters (an AE title may hold "/" or be "..")."""
    return "ae-" + re.sub(r"[^A-Za-z0-9_-]", lambda m: f"%{ord(m.group()):02X}", ae_title)


@dataclass(frozen=True)
class Peer:
    """A sender allowed to push: its AE title, the address it must call from (None: any), the receiving account."""

    ae_title: str
    host: str | None
    username: str

    def __str__(self) -> str:
        return f"{self.ae_title}{'@' + self.host if self.host else ''}={self.username}"


def parse_peers(text: str) -> dict[str, Peer]:
    """``"ORTHANC=doctor_a, MR1@10.0.0.5=radiology"`` -> ``{"ORTHANC": Peer(...), "MR1": Peer(...)}``; "" -> {}.
    ValueError saying which entry is wrong and how it should look."""
    peers: dict[str, Peer] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        match = PEER.fullmatch(entry)
        if match is None:
            raise ValueError(f"DICOM_RECEIVER_PEERS: {entry.strip()!r} is not AE_TITLE=username or "
                             "AE_TITLE@host=username (entries separated by commas).")
        ae = match["ae"]
        if not AE_TITLE.fullmatch(ae):
            raise ValueError(f"DICOM_RECEIVER_PEERS: the AE title {ae!r} is not a DICOM AE title (1-16 characters, "
                             "no backslash or control characters).")
        if ae in peers:
            raise ValueError(f"DICOM_RECEIVER_PEERS: the AE title {ae!r} is named twice.")
        peers[ae] = Peer(ae, match["host"], match["user"])
    return peers


@dataclass
class ReceivedSeries:
    """One complete series in the spool: who sent it, from where, and its files (by name, which is the SOP instance
    UID)."""

    calling_ae: str
    address: str
    series_uid: str
    folder: Path
    files: list[Path] = field(default_factory=list)
    over_limit: bool = False

    @property
    def n_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)

    def discard(self) -> None:
        """Remove the series from the spool (once it is stored as a scan, or refused and audited)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()  # the sender's folder, once it holds no other series
        except OSError:
            pass


@dataclass
class _Transfer:
    """What one association wrote, so that it can be taken back if the association does not end in a release."""

    series: set[tuple[str, str]] = field(default_factory=set)
    written: list[Path] = field(default_factory=list)
    released: bool = False


class Receiver:
    """The Storage SCP and its spool. ``start`` listens in background threads; ``take_ready`` and ``stop`` are
    called by the thread that stores the series (the ``dicom_receiver`` command, or a test)."""

    def __init__(self, *, ae_title: str, peers: dict[str, Peer], spool: Path, idle: float = 5.0,
                 max_instances: int = 1000, max_bytes: int = 512 * 1024 * 1024, timeout: float = 30,
                 tls=None):
        if not peers:
            raise ValueError("No DICOM peer is allowed to send (DICOM_RECEIVER_PEERS is empty): nothing could "
                             "be received.")
        self.ae_title, self.peers, self.spool, self.idle = ae_title, peers, Path(spool), idle
        self.max_instances, self.max_bytes, self.timeout = max_instances, max_bytes, timeout
        self.tls = tls  # an ssl.SSLContext requiring client certificates (reports.pacs.tls_context): TLS only
        self.skipped = 0  # non-image instances acknowledged and not kept
        self._lock = threading.Lock()
        self._active: Counter[tuple[str, str]] = Counter()  # series that an open association is sending to
        self._transfers: dict[int, _Transfer] = {}
        self._server = None
        self.spool.mkdir(parents=True, exist_ok=True)
        for stale in self.spool.glob("*/*/.*.part"):  # half-written by a receiver that was killed
            stale.unlink(missing_ok=True)

    # --- the server

    def start(self, host: str, port: int) -> "Receiver":
        from pynetdicom import AE, evt
        from pynetdicom.presentation import StoragePresentationContexts
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.ae_title)
        for timer in ("acse_timeout", "dimse_timeout", "network_timeout"):
            setattr(ae, timer, self.timeout)
        ae.require_calling_aet = list(self.peers)
        ae.maximum_associations = 16
        ae.add_supported_context(Verification)
        for context in StoragePresentationContexts:
            uid = context.abstract_syntax
            syntaxes = list(IMAGE_SYNTAXES) if uid in IMAGE_SOP_CLASSES else context.transfer_syntax
            ae.add_supported_context(uid, syntaxes)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_RELEASED, self._on_released),
                    (evt.EVT_CONN_CLOSE, self._on_closed)]
        self._server = ae.start_server((host, port), block=False, evt_handlers=handlers, ssl_context=self.tls)
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # --- the handlers (server threads)

    @staticmethod
    def _status(code: int, comment: str):
        from pydicom.dataset import Dataset

        status = Dataset()
        status.Status = code
        status.ErrorComment = comment[:64]  # LO
        return status

    def _transfer(self, assoc) -> _Transfer:
        with self._lock:
            return self._transfers.setdefault(id(assoc), _Transfer())

    def _on_store(self, event):
        requestor = event.assoc.requestor
        calling_ae, address = str(requestor.ae_title).strip(), str(requestor.address)
        peer = self.peers.get(calling_ae)
        if peer is None or (peer.host and peer.host != address):
            log.warning("refused an instance from %s at %s: not an allowed peer", calling_ae, address)
            return self._status(REFUSED_NOT_AUTHORIZED, f"{calling_ae} may not send from {address}")
        if str(event.request.AffectedSOPClassUID) not in IMAGE_SOP_CLASSES:
            with self._lock:
                self.skipped += 1
            return SUCCESS
        try:
            dataset = event.dataset
            series_uid, sop_uid = str(dataset.SeriesInstanceUID), str(dataset.SOPInstanceUID)
            has_pixels = "PixelData" in dataset or "FloatPixelData" in dataset
        except Exception as exc:  # noqa: BLE001  (anything the parser raises is a file it cannot read)
            log.warning("refused an instance from %s: %s", calling_ae, exc)
            return self._status(CANNOT_UNDERSTAND, "the data set could not be read")
        if not (UID.fullmatch(series_uid) and UID.fullmatch(sop_uid) and len(series_uid) <= 64):
            return self._status(DATASET_MISMATCH, "no valid Series or SOP Instance UID")
        if not has_pixels:
            return self._status(DATASET_MISMATCH, "an image without pixel data")
        data = event.encoded_dataset(include_meta=True)
        key = (_folder_name(calling_ae), series_uid)
        folder = self.spool / key[0] / series_uid
        transfer = self._transfer(event.assoc)
        with self._lock:
            if key not in transfer.series:
                transfer.series.add(key)
                self._active[key] += 1
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{sop_uid}.dcm"
            present = [p for p in folder.glob("*.dcm") if p != target]
            if (len(present) + 1 > self.max_instances
                    or sum(p.stat().st_size for p in present) + len(data) > self.max_bytes):
                (folder / OVER_LIMIT_MARK).touch()
                return self._status(OUT_OF_RESOURCES, "series over the portal's upload limits")
            (folder / SENDER_FILE).write_text(json.dumps({"calling_ae": calling_ae, "address": address}))
            part = folder / f".{sop_uid}.part"
            part.write_bytes(data)
            os.replace(part, target)
            transfer.written.append(target)
        return SUCCESS

    def _on_released(self, event):
        self._transfer(event.assoc).released = True

    def _on_closed(self, event):
        with self._lock:
            transfer = self._transfers.pop(id(event.assoc), None)
            if transfer is None:
                return
            if not transfer.released:  # aborted or cut off: take back what it sent
                for path in transfer.written:
                    path.unlink(missing_ok=True)
                if transfer.written:
                    log.warning("an association from %s ended without a release: %d instance(s) it sent removed",
                                event.assoc.requestor.ae_title, len(transfer.written))
            for key in transfer.series:
                self._active[key] -= 1
                if self._active[key] <= 0:
                    del self._active[key]
                    folder = self.spool / key[0] / key[1]
                    if folder.exists() and not any(folder.glob("*.dcm")) and not (folder / OVER_LIMIT_MARK).exists():
                        shutil.rmtree(folder, ignore_errors=True)

    # --- the hand-over (the caller's thread)

    def take_ready(self, now: float | None = None) -> list[ReceivedSeries]:
        """The complete series: no open association sends to them and nothing arrived for ``idle`` seconds."""
        now = time.time() if now is None else now
        ready = []
        with self._lock:
            for folder in sorted(self.spool.glob("*/*")):
                if not folder.is_dir() or (folder.parent.name, folder.name) in self._active:
                    continue
                if folder.stat().st_mtime + self.idle > now:
                    continue
                files = sorted(folder.glob("*.dcm"))
                over_limit = (folder / OVER_LIMIT_MARK).exists()
                if not files and not over_limit:
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                try:
                    sender = json.loads((folder / SENDER_FILE).read_text())
                except (OSError, ValueError):
                    sender = {}
                ready.append(ReceivedSeries(calling_ae=sender.get("calling_ae", ""),
                                            address=sender.get("address", ""), series_uid=folder.name,
                                            folder=folder, files=files, over_limit=over_limit))
        return ready
