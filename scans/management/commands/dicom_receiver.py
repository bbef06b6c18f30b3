"""python manage.py dicom_receiver [--host H] [--port N] [--stop-after SECONDS]

Runs the portal's DICOM node (``scans.dicom_receiver``): the peers in DICOM_RECEIVER_PEERS push series to it
(C-STORE, as DICOM_RECEIVER_AE on DICOM_RECEIVER_HOST:DICOM_RECEIVER_PORT), and each complete series is stored as
a scan of the account its sender is mapped to (``scans.services.scan_receive_series``), which queues its detector
job as an upload does. It refuses to start when a mapped account does not exist or is disabled. SIGTERM or Ctrl-C
stops it; series it had not stored yet stay in DICOM_RECEIVER_SPOOL and are stored on the next start. One
receiver per spool folder.
"""
import signal
import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from scans.dicom_receiver import Receiver, parse_peers
from scans.services import scan_receive_series

RETRY_AFTER_SECONDS = 60  # a series whose storing failed unexpectedly (the database was down, ...) is tried again


class Command(BaseCommand):
    help = "Receive DICOM series pushed by the PACS or a scanner (C-STORE) and analyse each one as a scan."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=None, help="address to listen on (default: DICOM_RECEIVER_HOST)")
        parser.add_argument("--port", type=int, default=None, help="TCP port (default: DICOM_RECEIVER_PORT)")
        parser.add_argument("--stop-after", type=float, default=None,
                            help="stop after this many seconds (for scripted checks; default: run until stopped)")

    def handle(self, *args, **opts):
        peers = parse_peers(settings.DICOM_RECEIVER_PEERS)
        if not peers:
            raise CommandError("No DICOM peer may send: set DICOM_RECEIVER_PEERS, e.g. "
                               "DICOM_RECEIVER_PEERS='ORTHANC=doctor_a' (the PACS's AE title = the receiving account).")
        users = get_user_model().objects.in_bulk([p.username for p in peers.values()], field_name="username")
        unusable = [f"{p.ae_title}={p.username} ({'disabled' if p.username in users else 'no such account'})"
                    for p in peers.values() if not getattr(users.get(p.username), "is_active", False)]
        if unusable:
            raise CommandError("DICOM_RECEIVER_PEERS maps to accounts that cannot receive scans: "
                               + ", ".join(unusable) + ".")
        tls = None
        if settings.DICOM_RECEIVER_TLS:
            from reports.services import dicom_tls_context

            try:
                tls = dicom_tls_context(server=True)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        host = opts["host"] or settings.DICOM_RECEIVER_HOST
        port = settings.DICOM_RECEIVER_PORT if opts["port"] is None else opts["port"]
        receiver = Receiver(ae_title=settings.DICOM_RECEIVER_AE, peers=peers, spool=settings.DICOM_RECEIVER_SPOOL,
                            idle=settings.DICOM_RECEIVER_IDLE_SECONDS, max_instances=settings.UPLOAD_MAX_FILES,
                            max_bytes=settings.UPLOAD_MAX_BYTES, timeout=settings.PACS_TIMEOUT_SECONDS, tls=tls)
        try:
            receiver.start(host, port)
        except OSError as exc:
            raise CommandError(f"Could not listen on {host}:{port}: {exc.strerror or exc}.") from exc
        self.stdout.write(f"Receiving DICOM{' over TLS' if tls else ''} as {settings.DICOM_RECEIVER_AE} on "
                          f"{host}:{receiver.port} from "
                          + ", ".join(map(str, peers.values())) + f"; spool {settings.DICOM_RECEIVER_SPOOL}.")
        self.stdout.flush()

        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        deadline = None if opts["stop_after"] is None else time.monotonic() + opts["stop_after"]
        retry_at: dict[str, float] = {}
        try:
            while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
                for series in receiver.take_ready():
                    if retry_at.get(str(series.folder), 0) > time.monotonic():
                        continue
                    self._store(series, peers, retry_at)
                stopping.wait(0.5)
        finally:
            receiver.stop()
            self.stdout.write("Stopped receiving; series not stored yet stay in the spool for the next start.")

    def _store(self, series, peers, retry_at) -> None:
        close_old_connections()
        try:
            result = scan_receive_series(series, peers)
        except Exception as exc:  # noqa: BLE001  (kept in the spool, tried again; the receiver keeps running)
            retry_at[str(series.folder)] = time.monotonic() + RETRY_AFTER_SECONDS
            self.stderr.write(f"Could not store series {series.series_uid} from {series.calling_ae} "
                              f"({exc.__class__.__name__}: {exc}); it stays in the spool and is tried again in "
                              f"{RETRY_AFTER_SECONDS} s.")
            return
        retry_at.pop(str(series.folder), None)
        series.discard()
        if result is None:
            self.stderr.write(f"Refused series {series.series_uid} from {series.calling_ae} "
                              f"({len(series.files)} instances): see the audit log (dicom.receive_failed).")
        else:
            self.stdout.write(f"Series {series.series_uid} from {series.calling_ae}: scan {result.scan.pk} "
                              f"({result.scan.n_slices} slices) for {result.scan.owner.username}"
                              f"{'' if result.created else ', already received before'}.")
        self.stdout.flush()
