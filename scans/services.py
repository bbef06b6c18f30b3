"""Writes for scans. The browser form, the API and any command call `scan_upload`."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils.text import get_valid_filename

from inference.ml import imaging
from inference.ml.sequence import DECLARABLE
from scans import dicom_text, ingest
from scans.ingest import UploadRejected
from scans.models import DicomInstance, Scan, ScanFile, ScanSlice

logger = logging.getLogger(__name__)

# States of the latest comparison with the PACS's copy (Scan.metadata["pacs_compare"]["state"]).
COMPARE_QUEUED = "queued"  # after an upload (PACS_COMPARE_UPLOADS), waiting for a worker
COMPARE_DONE = "done"  # made: Scan.metadata["pacs_comparison"] holds its outcome
COMPARE_FAILED = "failed"  # the PACS failed, did not hold the series, or the task could not be queued
# What started it (metadata["pacs_compare"]["trigger"], and the comparison's own "trigger").
TRIGGER_REQUEST = "request"  # a user pressed "Compare with the PACS" (or POSTed to the API)
TRIGGER_UPLOAD = "upload"  # PACS_COMPARE_UPLOADS, right after the upload
TRIGGER_SCHEDULE = "schedule"  # the periodic recheck (PACS_RECHECK_HOURS)
TRIGGER_COMMAND = "command"  # python manage.py compare_with_pacs
TRIGGERS = (TRIGGER_REQUEST, TRIGGER_UPLOAD, TRIGGER_SCHEDULE, TRIGGER_COMMAND)

__all__ = ["PacsImportUnavailable", "ScanUploadResult", "UploadRejected", "pacs_search", "scan_check_headers",
           "scan_import_from_pacs", "scan_receive_series", "scan_upload", "slice_pngs"]


@dataclass(frozen=True)
class ScanUploadResult:
    scan: Scan
    created: bool  # False: the same bytes were uploaded before by this user; `scan` is that scan
    message: str


def _png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:  # cv2 only fails on unsupported dtypes, which the code below never passes
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


@dataclass
class _Pixels:
    png8: list[bytes]
    png16: list[bytes] | None
    pixel_scale: float | None
    pixel_offset: float | None
    window_low: float | None
    window_high: float | None


def slice_pngs(volume: imaging.Volume) -> _Pixels:
    """The 8-bit PNGs (the windowing rule, imaging.to_uint8 over the whole volume) and, for sources that are
    not 8-bit, 16-bit PNGs of the native values: native = png16 * pixel_scale + pixel_offset
    (lossless for integer data spanning at most 65536 values)."""
    slices = volume.slices
    if slices.dtype == np.uint8:
        return _Pixels([_png(s) for s in slices], None, None, None, None, None)
    # The window the 8-bit images are made with is also the viewer's default window/level.
    w_lo, w_hi = imaging.window_bounds(slices)
    png8 = [_png(s) for s in imaging.to_uint8(slices, bounds=(w_lo, w_hi))]
    integer = np.issubdtype(slices.dtype, np.integer)
    # Integer data is all finite: skip the float copy and the mask (a volume is millions of voxels).
    finite = slices if integer else slices[np.isfinite(slices)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if integer and hi - lo <= 65535:
        scale = 1.0
        native16 = (slices.astype(np.int64) - int(lo)).astype(np.uint16)
    else:
        scale = (hi - lo) / 65535.0 if hi > lo else 1.0
        data = np.nan_to_num(slices.astype(np.float64), nan=lo)
        native16 = np.clip(np.rint((data - lo) / scale), 0, 65535).astype(np.uint16)
    png16 = [_png(s) for s in native16]
    return _Pixels(png8, png16, scale, lo, w_lo, w_hi)


def _storage_name(name: str) -> str:
    try:
        return get_valid_filename(name)[:120]
    except Exception:  # get_valid_filename refuses names that sanitise to nothing
        return "file"


def _already_uploaded(scan: Scan) -> ScanUploadResult:
    when = scan.created_at.strftime("%Y-%m-%d %H:%M UTC")
    return ScanUploadResult(
        scan=scan,
        created=False,
        message=f"You uploaded this exact file before (on {when}); here is that scan. Nothing new was stored.",
    )


def scan_upload(*, user, files, request=None, sequence: str | None = None,
                origin: dict | None = None) -> ScanUploadResult:
    """Store one scan from the uploaded files and queue its detector job.

    `files`: one DICOM (single- or multi-frame), several DICOM files of one series, a zip of one DICOM
    series, one NIfTI (.nii, .nii.gz) or one PNG/JPEG/TIFF. The same bytes uploaded again by the same user
    return the existing scan (`created=False`). Bad input raises `UploadRejected` and leaves nothing behind:
    no row, no stored file, no job. `sequence`: the MRI sequence the uploader states (FLAIR, T1 post-contrast,
    ...; see inference.ml.sequence), used where the file itself does not say. `origin`: where the files came from
    when they were not uploaded (scan_import_from_pacs: {"pacs": "AE@host:port"}), kept in the scan's metadata.
    """
    try:
        if sequence and sequence not in DECLARABLE:
            raise UploadRejected(f"Unknown sequence '{sequence}': state one of {', '.join(DECLARABLE)}, or none.")
        originals = ingest.read_originals(files)
        digest = ingest.combined_sha256(originals)
        existing = Scan.objects.filter(owner=user, sha256=digest).first()
        if existing is not None:
            return _already_uploaded(existing)
        decoded = ingest.decode_originals(originals, sequence=sequence or None)
        if origin:
            decoded.metadata["origin"] = origin
        pixels = slice_pngs(decoded.volume)
    except UploadRejected as exc:
        _audit_rejected(user=user, request=request, exc=exc)
        raise

    stored: list[str] = []
    try:
        with transaction.atomic():
            scan = _create(user=user, originals=originals, digest=digest, decoded=decoded, pixels=pixels, stored=stored)
            from inference.services import job_enqueue  # inference builds on scans, not the other way

            job_enqueue(scan=scan, user=user)
            _queue_comparison(scan, origin)
            _audit(action="SCAN_UPLOADED", request=request, actor=user, obj=scan, details={
                "sha256": scan.sha256, "files": len(originals), "kind": scan.kind, "n_slices": scan.n_slices,
                **({"origin": origin} if origin else {}),
            })
            _audit_altered_copies(scan=scan, user=user, request=request)
    except IntegrityError:
        _delete_stored(stored)
        # A concurrent upload of the same bytes won the race on (owner, sha256).
        existing = Scan.objects.filter(owner=user, sha256=digest).first()
        if existing is None:
            raise
        return _already_uploaded(existing)
    except BaseException:
        _delete_stored(stored)
        raise
    return ScanUploadResult(scan=scan, created=True, message=f"Uploaded {scan.original_name}: {scan.n_slices} "
                            f"slice{'s' if scan.n_slices != 1 else ''}. The detector job is queued.")


def _create(*, user, originals, digest, decoded, pixels: _Pixels, stored: list[str]) -> Scan:
    n, height, width = decoded.volume.slices.shape
    scan = Scan.objects.create(
        owner=user,
        kind=decoded.kind,
        original_name=ingest.display_name(originals)[:255],
        sha256=digest,
        size_bytes=sum(o.size for o in originals),
        metadata=decoded.metadata,
        n_slices=n,
        width=width,
        height=height,
        pixel_dtype=str(decoded.volume.slices.dtype),
        pixel_scale=pixels.pixel_scale,
        pixel_offset=pixels.pixel_offset,
        window_low=pixels.window_low,
        window_high=pixels.window_high,
    )
    files = []
    for position, original in enumerate(originals):
        scan_file = ScanFile(
            scan=scan, position=position, original_name=original.name[:255], sha256=original.sha256,
            size_bytes=original.size,
        )
        scan_file.file.save(_storage_name(original.name), ContentFile(original.data), save=False)
        stored.append(scan_file.file.name)
        files.append(scan_file)
    ScanFile.objects.bulk_create(files)
    slices = []
    for index, png8 in enumerate(pixels.png8):
        scan_slice = ScanSlice(scan=scan, index=index)
        scan_slice.image.save(f"{index:04d}.png", ContentFile(png8), save=False)
        stored.append(scan_slice.image.name)
        if pixels.png16 is not None:
            scan_slice.image16.save(f"{index:04d}-16bit.png", ContentFile(pixels.png16[index]), save=False)
            stored.append(scan_slice.image16.name)
        slices.append(scan_slice)
    ScanSlice.objects.bulk_create(slices)
    _index_instances(scan, decoded.volume.metadata.get("instances") or [])
    return scan


def _index_instances(scan: Scan, instances: list[dict]) -> None:
    """The scan's DICOM instances (UID and pixel digest, inference.ml.imaging.instance_fingerprints), replacing
    any kept before; what scans.selectors.scan_copies compares."""
    DicomInstance.objects.filter(scan=scan).delete()
    DicomInstance.objects.bulk_create(DicomInstance(scan=scan, **i) for i in instances if i.get("sop_instance_uid"))


def _delete_stored(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # keep deleting the rest; log what is left behind
            logger.exception("could not delete %s after a failed upload", name)


# --- Audit ----------------------------------------------------------------------------------------------


def _audit(*, action: str, request=None, actor=None, obj=None, outcome: str = "success", details=None) -> None:
    from audit import actions
    from audit.services import audit_record

    audit_record(action=getattr(actions, action), request=request, actor=actor, obj=obj, outcome=outcome,
                 details=details)


def _audit_altered_copies(*, scan: Scan, user, request=None) -> None:
    """A scan arriving with instances that another stored scan holds with other pixels (scans.selectors.scan_copies)
    is evidence that one copy was altered: recorded in the chained log when it is found, whoever sees it later."""
    from scans.selectors import scan_copies

    altered = [c for c in scan_copies(scan=scan, user=user) if not c.identical]
    if altered:
        changes = record_copy_changes(scan, [c.scan_id for c in altered])
        _audit(action="SCAN_ALTERED_COPY_FOUND", request=request, actor=user, obj=scan, details={
            "scan_id": scan.pk, "copies": [{"scan_id": c.scan_id, "shared_instances": c.shared,
                                            "altered_slices": list(c.altered_slices),
                                            "changes": audited_changes(changes.get(c.scan_id, {}))}
                                           for c in altered]})


def record_copy_changes(scan: Scan, other_ids: list[int]) -> dict[int, dict[str, dict]]:
    """Where this scan's images differ from the other stored copies of the same instances (``other_ids``: the scans
    scans.selectors.scan_copies found altered), read from both scans' originals: per other scan, ``slice_changes``
    in this scan's slices. Kept in both scans' metadata (``copy_changes``, keyed by the other scan's id, in each
    one's own slice numbers), so either page can outline the changed pixels. Only instances both copies hold
    lossless are compared. Originals that cannot be read leave the finding without its regions (logged): the
    evidence is the other digest, not this description."""
    from reports.seg import DicomExportUnavailable

    rows = (DicomInstance.objects.filter(scan_id__in=[scan.pk, *other_ids], lossy=False)
            .values_list("scan_id", "sop_instance_uid", "pixels_sha256", "first_slice"))
    by_scan: dict[int, dict[str, tuple[str, int]]] = {}
    for scan_id, uid, digest, first in rows:
        by_scan.setdefault(scan_id, {})[uid] = (digest, first)
    mine = by_scan.get(scan.pk, {})
    altered = {other_id: [uid for uid, (digest, _) in by_scan.get(other_id, {}).items()
                          if uid in mine and mine[uid][0] != digest] for other_id in other_ids}
    found: dict[int, dict[str, dict]] = {}
    try:
        ours = _instance_datasets(scan, {uid for uids in altered.values() for uid in uids})
        for other in Scan.objects.filter(pk__in=other_ids).order_by("pk"):
            theirs_rows, uids = by_scan.get(other.pk, {}), altered[other.pk]
            if not uids:
                continue
            theirs = _instance_datasets(other, set(uids))
            here, there = {}, {}
            for uid in uids:
                if uid not in ours or uid not in theirs:
                    continue
                regions = imaging.changed_regions(imaging.dicom_pixels(ours[uid]), imaging.dicom_pixels(theirs[uid]))
                for k, region in enumerate(regions):  # each with the other scan's slice of the same frame
                    here[str(mine[uid][1] + k)] = {**region, "other_slice": theirs_rows[uid][1] + k}
                    there[str(theirs_rows[uid][1] + k)] = {**region, "other_slice": mine[uid][1] + k}
            found[other.pk] = here
            _keep_copy_changes(other.pk, scan.pk, there)
    except (DicomExportUnavailable, imaging.ImagingError) as exc:
        logger.warning("could not describe where scan %s differs from its other copies: %s", scan.pk, exc)
    for other_id, here in found.items():
        _keep_copy_changes(scan.pk, other_id, here)
    scan.refresh_from_db(fields=["metadata"])
    _resend_with_evidence([scan.pk, *found], reason="altered copy")
    return found


def _resend_with_evidence(scan_ids, *, reason: str) -> None:
    """Scans whose analysis went to the PACS get it again with the new evidence in its structured report
    (reports.services.pacs_send_after_evidence)."""
    from reports.services import pacs_send_after_evidence  # reports builds on scans: imported when used

    for scan in Scan.objects.filter(pk__in=list(scan_ids)).select_related("owner"):
        pacs_send_after_evidence(scan=scan, reason=reason)


def _instance_datasets(scan: Scan, uids: set[str]) -> dict:
    """SOP Instance UID -> the stored original's full dataset, for the instances ``uids`` names only: each file's
    header is read up to its UID first (a large series with one altered image is not parsed whole)."""
    import io

    import pydicom

    from reports.seg import DicomExportUnavailable

    found = {}
    for scan_file in scan.files.order_by("position"):
        with scan_file.file.open("rb") as fh:
            data = fh.read()
        if scan_file.original_name.lower().endswith(".zip"):
            original = ingest.Original(name=scan_file.original_name, data=data, sha256=scan_file.sha256, kind="zip")
            blobs = [member for _, member in ingest.expand_zip(original)]
        else:
            blobs = [data]
        for blob in blobs:
            try:
                head = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            except Exception as exc:  # the upload read it; a stored original that no longer reads is named
                raise DicomExportUnavailable(f"The stored original {scan_file.original_name} cannot be read as "
                                             f"DICOM: {exc}") from exc
            uid = str(head.get("SOPInstanceUID", "") or "")
            if uid in uids:
                found[uid] = imaging.read_dicom_dataset(io.BytesIO(blob))
    return found


def describe_altered_copies(scan: Scan) -> int:
    """``record_copy_changes`` for the altered copies of ``scan`` whose changes are not recorded yet (found before
    2026-12-07, when the portal began to record them; check_dicom_headers runs it). How many copies it described."""
    from scans.selectors import scan_copies

    pending = [c.scan_id for c in scan_copies(scan=scan, user=scan.owner) if not c.identical and not c.changes]
    return len(record_copy_changes(scan, pending)) if pending else 0


def _keep_copy_changes(scan_id: int, other_id: int, changes: dict[str, dict]) -> None:
    with transaction.atomic():
        locked = Scan.objects.select_for_update().get(pk=scan_id)
        metadata = dict(locked.metadata or {})
        metadata["copy_changes"] = {**metadata.get("copy_changes", {}), str(other_id): changes}
        locked.metadata = metadata
        locked.save(update_fields=["metadata"])


def _audit_rejected(*, user, request, exc: UploadRejected) -> None:
    _audit(action="SCAN_UPLOAD_REJECTED", request=request, actor=user, outcome="failure",
           details={"message": exc.message[:500], "files": exc.errors[:20]})


def scan_viewed(*, scan: Scan, request) -> None:
    _audit(action="SCAN_VIEWED", request=request, actor=request.user, obj=scan)


def scan_original_downloaded(*, scan: Scan, request, scan_file: ScanFile | None = None) -> None:
    _audit(action="SCAN_ORIGINAL_DOWNLOADED", request=request, actor=request.user, obj=scan,
           details={"file": scan_file.original_name if scan_file else "all", "sha256": scan_file.sha256
                    if scan_file else scan.sha256})


def scan_check_headers(scan: Scan) -> dict | None:
    """Run the DICOM header checks (inference.ml.provenance) again on a DICOM scan's stored originals and keep
    the result in ``scan.metadata["header_checks"]``, and index its instances again (DicomInstance): for scans
    uploaded before the portal made the checks or kept the instances, or after the checks changed. The originals are only read. Returns the checks; None for a scan without DICOM
    headers (NIfTI, images), which is left unchanged."""
    if scan.kind != Scan.Kind.DICOM:
        return None
    items = []
    for stored in scan.files.order_by("position"):
        with stored.file.open("rb") as fh:
            data = fh.read()
        if stored.original_name.lower().endswith(ingest.ZIP_EXT):
            items += ingest.expand_zip(ingest.Original(stored.original_name, data, stored.sha256, "zip"))
        else:
            items.append((stored.original_name, data))
    metadata = imaging.read_dicom_series([data for _, data in items]).metadata
    checks = metadata["header_checks"]
    with transaction.atomic():
        locked = Scan.objects.select_for_update().get(pk=scan.pk)
        _index_instances(locked, metadata.get("instances") or [])
        before = (locked.metadata or {}).get("header_checks") or {}
        locked.metadata = {**(locked.metadata or {}), "header_checks": checks}
        locked.save(update_fields=["metadata"])
        _audit(action="SCAN_HEADERS_CHECKED", obj=locked, details={
            "scan_id": locked.pk, "status": checks["status"], "warnings": checks["warnings"],
            "previous_status": before.get("status")})
    scan.metadata = locked.metadata
    return checks


# --- Importing a series from the PACS (reports.pacs: C-FIND to search, C-GET to retrieve) ---------------------
# The retrieved files go through scan_upload like uploaded ones: the same checks, limits, deduplication and job.


class PacsImportUnavailable(Exception):
    """No PACS is configured (settings.PACS_DESTINATION)."""


def _pacs_destination():
    from reports.services import pacs_connection  # the portal's one reading of PACS_DESTINATION (and PACS_TLS)

    destination = pacs_connection()
    if destination is None:
        raise PacsImportUnavailable("No PACS is configured: set PACS_DESTINATION (AE_TITLE@host:port) to search and "
                                    "import from it. Upload the files instead.")
    return destination


def pacs_search(*, request, keys: dict):
    """The PACS's studies matching ``keys`` (PacsSearchForm.keys: patient_id, accession_number, study_date), each
    with its series (reports.pacs.StudySearch). Audited with the names of the keys used, never their values (the
    portal keeps no patient identifier). PacsError (audited) when the PACS fails."""
    import time

    from django.conf import settings

    from reports.pacs import PacsError, find_studies

    destination = _pacs_destination()
    used = sorted(k for k, v in keys.items() if v)
    started = time.perf_counter()
    try:
        found = find_studies(destination, **keys, calling_ae=settings.PACS_CALLING_AE,
                             timeout=settings.PACS_TIMEOUT_SECONDS)
    except PacsError as exc:
        _audit(action="PACS_QUERIED", request=request, actor=request.user, outcome="failure",
               details={"destination": str(destination), "keys": used, "error": exc.message[:500]})
        raise
    _audit(action="PACS_QUERIED", request=request, actor=request.user, details={
        "destination": str(destination), "keys": used, "studies": len(found.studies), "more": found.more,
        "series": sum(len(s.series) for s in found.studies), "seconds": round(time.perf_counter() - started, 3)})
    return found


def _retrieved_name(data: bytes, position: int) -> tuple[int, str]:
    """A retrieved instance's number and file name: "<series description>-s<series number>-<instance number>.dcm"."""
    import io

    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        description = get_valid_filename(str(ds.get("SeriesDescription", "") or "").replace("/", "-"))[:40]
        number = str(ds.get("SeriesNumber", "") or "")
        instance = int(ds.get("InstanceNumber", position + 1) or position + 1)
    except Exception:  # noqa: BLE001  (the upload's own checks say what is wrong with the file)
        description, number, instance = "", "", position + 1
    return instance, f"{description or 'series'}{f'-s{number}' if number else ''}-{instance:04d}.dcm"


def scan_import_from_pacs(*, user, study_uid: str, series_uid: str, sequence: str | None = None,
                          request=None) -> ScanUploadResult:
    """Retrieve one series from the PACS (C-GET) and store it as a scan through ``scan_upload`` (its checks, its
    limits, its job; the same series imported twice gives the scan already made). PacsError (audited) when the
    PACS fails, UploadRejected (audited by scan_upload) when the files are not a scan the portal takes;
    nothing is stored in either case."""
    import time

    from django.conf import settings

    from reports.pacs import PacsError, retrieve_series

    destination = _pacs_destination()
    started = time.perf_counter()
    try:
        blobs = retrieve_series(destination, study_uid=study_uid, series_uid=series_uid,
                                calling_ae=settings.PACS_CALLING_AE, timeout=settings.PACS_TIMEOUT_SECONDS,
                                max_instances=settings.UPLOAD_MAX_FILES, max_bytes=settings.UPLOAD_MAX_BYTES)
    except PacsError as exc:
        _audit(action="PACS_RETRIEVE_FAILED", request=request, actor=user, outcome="failure",
               details={"destination": str(destination), "error": exc.message[:500]})
        raise
    retrieved = time.perf_counter() - started
    named = sorted(((*_retrieved_name(data, i), data) for i, data in enumerate(blobs)), key=lambda t: t[:2])
    files = [ContentFile(data, name=name) for _, name, data in named]  # in instance order, whatever the arrival
    result = scan_upload(user=user, files=files, request=request, sequence=sequence,
                         origin={"pacs": str(destination)})
    _audit(action="PACS_RETRIEVED", request=request, actor=user, obj=result.scan, details={
        "destination": str(destination), "scan_id": result.scan.pk, "created": result.created,
        "instances": len(blobs), "bytes": sum(map(len, blobs)), "retrieve_seconds": round(retrieved, 3),
        "seconds": round(time.perf_counter() - started, 3)})
    return result


# --- Received over DICOM (the dicom_receiver command) --------------------------------------------------------


def scan_receive_series(series, peers: dict) -> ScanUploadResult | None:
    """Store one series a DICOM peer pushed (``scans.dicom_receiver.ReceivedSeries``) as a scan of the account the
    peer is mapped to, through ``scan_upload`` (its checks, its limits, its job; the same series pushed twice gives
    the scan already made). A series that cannot be taken (its account is missing or disabled, it passed the limits,
    the upload's checks refuse it) is audited as ``dicom.receive_failed`` with the reason and None is returned;
    nothing is stored. Either way the caller may then remove the series from the spool; any other exception
    (the database is down, ...) leaves it there to be tried again."""
    from django.conf import settings
    from django.contrib.auth import get_user_model

    peer = peers.get(series.calling_ae)
    details = {"calling_ae": series.calling_ae, "address": series.address, "series_uid": series.series_uid,
               "instances": len(series.files), "bytes": series.n_bytes}
    user = (get_user_model().objects.filter(username=peer.username).first() if peer is not None else None)

    def refuse(reason: str) -> None:
        _audit(action="DICOM_RECEIVE_FAILED", actor=user, outcome="failure", details={**details, "error": reason})

    if peer is None:
        refuse(f"the AE title {series.calling_ae} is not in DICOM_RECEIVER_PEERS any more")
        return None
    if user is None or not user.is_active:
        refuse(f"the account {peer.username!r} that receives from {series.calling_ae} "
               f"{'is disabled' if user is not None else 'does not exist'}")
        return None
    if series.over_limit:
        refuse(f"the series has more than {settings.UPLOAD_MAX_FILES} instances or "
               f"{settings.UPLOAD_MAX_BYTES // (1024 * 1024)} MB, the portal's upload limits")
        return None
    blobs = [path.read_bytes() for path in series.files]
    named = sorted(((*_retrieved_name(data, i), data) for i, data in enumerate(blobs)), key=lambda t: t[:2])
    files = [ContentFile(data, name=name) for _, name, data in named]
    origin = {"received": {"calling_ae": series.calling_ae, "address": series.address}}
    try:
        result = scan_upload(user=user, files=files, origin=origin)
    except UploadRejected as exc:
        refuse(exc.message[:500])
        return None
    _audit(action="DICOM_RECEIVED", actor=user, obj=result.scan,
           details={**details, "scan_id": result.scan.pk, "created": result.created})
    return result


# --- Comparing a scan with the PACS's copy of its series (C-GET, pixel digests) -------------------------------


def _fingerprints(blobs: list[bytes]) -> dict[str, tuple[str, bool, int]]:
    """SOP Instance UID -> (digest of the pixels, inference.ml.imaging.pixels_sha256; lossily compressed; its
    position in ``blobs``), for DICOM files."""
    import io

    found = {}
    for position, data in enumerate(blobs):
        ds = imaging.read_dicom_dataset(io.BytesIO(data))
        found[str(ds.get("SOPInstanceUID", "") or "")] = (imaging.pixels_sha256(imaging.dicom_pixels(ds)),
                                                          imaging.is_lossy(ds), position)
    return found


def _blob_pixels(data: bytes) -> np.ndarray:
    import io

    return imaging.dicom_pixels(imaging.read_dicom_dataset(io.BytesIO(data)))


def slice_changes(pairs) -> dict[str, dict]:
    """Where two versions of the same DICOM instances differ, per slice of the scan: ``pairs`` of (the scan's
    first slice of the instance, its pixels here, a function giving the other copy's pixels) ->
    {"<0-based slice>": inference.ml.imaging.changed_regions' entry}. What the page outlines on the slice, and the
    PDF report and the API describe (scans.dicom_text.change_text)."""
    changes = {}
    for first, ours, theirs in pairs:
        for k, region in enumerate(imaging.changed_regions(ours, theirs())):
            changes[str(first + k)] = region
    return changes


def scan_compare_with_pacs(*, scan: Scan, request=None, user=None, trigger: str = TRIGGER_REQUEST) -> dict:
    """Retrieve the PACS's copy of the scan's series (C-GET, by its Study and Series Instance UIDs) and compare it,
    instance by instance (same SOP Instance UID), pixel value for pixel value, with the stored originals: which of
    the scan's slices the PACS holds the same, which it holds with other pixels (one of the two copies was altered),
    which it does not hold, and how many instances it holds that the scan lacks; where either copy of an image was
    lossily compressed (JPEG in the archive), other pixels are no evidence either way (``lossy_slices``). Kept in
    ``scan.metadata["pacs_comparison"]`` (the page shows the latest) and audited (``pacs.compared``); nothing is
    stored from the PACS. ``comparison["matches"]``: no slice altered or missing (scans.dicom_text). How the latest
    attempt went is kept in ``scan.metadata["pacs_compare"]`` (``_set_compare_state``: done, or failed with the
    reason; "queued" is set by the upload or the recheck). PacsImportUnavailable without a PACS or for a scan that
    is not DICOM; PacsError (audited, and kept as the failed state) when the PACS fails or does not hold the
    series. ``user``: who asked
    (default: the request's user; the comparisons a worker makes, ``compare_queued``, run for the scan's owner);
    ``trigger``: what started it (TRIGGERS)."""
    import time

    from django.conf import settings
    from django.utils import timezone

    from reports.pacs import PacsError, retrieve_series, series_held
    from reports.seg import DicomExportUnavailable, source_datasets

    user = user or request.user

    if scan.kind != Scan.Kind.DICOM:
        raise PacsImportUnavailable(f"Only a DICOM scan has a copy in the PACS to compare with; this scan is "
                                    f"{scan.get_kind_display()}.")
    destination = _pacs_destination()
    try:
        sources = source_datasets(scan)
    except DicomExportUnavailable as exc:
        raise PacsImportUnavailable(str(exc)) from exc
    first = sources[0]
    started = time.perf_counter()
    ours, slice_of, source_of, position = {}, {}, {}, 0
    for ds in sources:
        pixels = imaging.dicom_pixels(ds)
        uid = str(ds.get("SOPInstanceUID", "") or "")
        ours[uid] = (imaging.pixels_sha256(pixels), imaging.is_lossy(ds))
        slice_of[uid] = list(range(position, position + pixels.shape[0]))
        source_of[uid] = ds
        position += pixels.shape[0]
    details = {"destination": str(destination), "instances": len(ours)}
    uids = {"study_uid": str(first.StudyInstanceUID), "series_uid": str(first.SeriesInstanceUID)}
    network = {"calling_ae": settings.PACS_CALLING_AE, "timeout": settings.PACS_TIMEOUT_SECONDS}
    try:
        if not series_held(destination, **uids, **network):
            raise PacsError(f"The PACS {destination} does not hold this series (Series Instance UID "
                            f"{uids['series_uid']}): there is no copy to compare with.")
        blobs = retrieve_series(destination, **uids, **network, max_instances=settings.UPLOAD_MAX_FILES,
                                max_bytes=settings.UPLOAD_MAX_BYTES)
        theirs = _fingerprints(blobs)
        # where each altered image differs (both copies lossless: the same UID with other pixels)
        changes = slice_changes(
            (slice_of[uid][0], imaging.dicom_pixels(source_of[uid]), lambda p=theirs[uid][2]: _blob_pixels(blobs[p]))
            for uid, (digest, lossy) in ours.items()
            if uid in theirs and theirs[uid][0] != digest and not (lossy or theirs[uid][1]))
    except (PacsError, imaging.ImagingError) as exc:
        message = exc.message if isinstance(exc, PacsError) else (
            f"The PACS {destination} sent an instance of this series the portal cannot read: {exc}")
        with transaction.atomic():
            locked = _set_compare_state(scan.pk, COMPARE_FAILED, user=user, trigger=trigger, error=message)
            _audit(action="PACS_COMPARED", request=request, actor=user, obj=locked, outcome="failure",
                   details={**details, "error": message[:500]})
        scan.metadata = locked.metadata
        raise PacsError(message) from exc
    comparison = {
        **details,
        "at": timezone.now().isoformat(), "by": user.get_username(), "trigger": trigger,
        "same": sum(1 for uid, (digest, _) in ours.items() if uid in theirs and theirs[uid][0] == digest),
        # other pixels in two lossless copies: one was altered
        "altered_slices": sorted(i for uid, (digest, lossy) in ours.items() if uid in theirs
                                 and theirs[uid][0] != digest and not (lossy or theirs[uid][1]) for i in slice_of[uid]),
        # other pixels where either copy was lossily compressed: compression changes pixels, so no evidence either way
        "lossy_slices": sorted(i for uid, (digest, lossy) in ours.items() if uid in theirs
                               and theirs[uid][0] != digest and (lossy or theirs[uid][1]) for i in slice_of[uid]),
        "missing_slices": sorted(i for uid in ours if uid not in theirs for i in slice_of[uid]),
        "extra_in_pacs": sum(1 for uid in theirs if uid not in ours),
        "changes": changes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    comparison["matches"] = dicom_text.pacs_comparison_matches(comparison)
    before = (scan.metadata or {}).get("pacs_comparison")
    changed = bool(before) and _differences(before) != _differences(comparison)
    new_evidence = bool(changes) and audited_changes(changes) != audited_changes((before or {}).get("changes") or {})
    with transaction.atomic():
        locked = _set_compare_state(scan.pk, COMPARE_DONE, user=user, trigger=trigger, comparison=comparison)
        _audit(action="PACS_COMPARED", request=request, actor=user, obj=locked,
               details={**{k: v for k, v in comparison.items() if k not in ("at", "by", "changes")},
                        "changes": audited_changes(changes), "first": not before, "changed": changed})
        if changed:
            # The PACS's copy is not what it was at the last comparison: an image altered, restored or deleted
            # in the archive since (the portal's copy does not change). Its own event, for whoever watches the log.
            logger.warning("the PACS's copy of scan %s changed since %s: %s -> %s", scan.pk, before.get("at"),
                           _differences(before), _differences(comparison))
            _audit(action="PACS_COPY_CHANGED", request=request, actor=user, obj=locked, details={
                "destination": comparison["destination"], "previous_at": before.get("at"),
                **{f"previous_{k}": v for k, v in zip(("altered_slices", "missing_slices"), _differences(before))},
                "altered_slices": comparison["altered_slices"], "missing_slices": comparison["missing_slices"],
                "changes": audited_changes(changes)})
        if new_evidence:  # the PACS gets the analysis again, its SR with where the copies differ
            _resend_with_evidence([scan.pk], reason="pacs comparison")
    scan.metadata = locked.metadata
    return comparison


def audited_changes(changes: dict[str, dict]) -> dict[str, dict]:
    """``slice_changes`` as the audit log keeps it: how many pixels, where, by how much; not the mask."""
    return {index: {k: region[k] for k in ("pixels", "fraction", "box", "max_difference", "spread", "sizes")
                    if k in region} for index, region in changes.items()}


def _differences(comparison: dict) -> tuple[list[int], list[int]]:
    return list(comparison.get("altered_slices") or []), list(comparison.get("missing_slices") or [])


def compare_queued(scan_id: int, trigger: str = TRIGGER_UPLOAD) -> dict | None:
    """The task's work (scans.tasks.compare_with_pacs: queued by scan_upload with PACS_COMPARE_UPLOADS, or by the
    periodic recheck): compare a DICOM scan with the PACS's copy of its series, for its owner. None when there is
    nothing to compare with (no PACS any more; the PACS does not hold the series: a scan from elsewhere, or one
    deleted there) or the PACS failed: the reason is audited and kept as the failed state, which the scan page
    shows; the doctor can press "Compare with the PACS" later."""
    from reports.pacs import PacsError

    scan = Scan.objects.select_related("owner").get(pk=scan_id)
    try:
        return scan_compare_with_pacs(scan=scan, user=scan.owner, trigger=trigger)
    except PacsImportUnavailable as exc:  # the PACS was unset since, or the originals are unreadable
        _set_compare_state(scan_id, COMPARE_FAILED, user=scan.owner, trigger=trigger, error=exc.message)
        return None
    except PacsError as exc:
        logger.warning("comparing scan %s with the PACS failed: %s", scan_id, exc.message)
        return None


def _queue_comparison(scan: Scan, origin: dict | None) -> None:
    """After the upload commits, compare a DICOM upload with the PACS's copy (PACS_COMPARE_UPLOADS): a scan that
    came from the PACS, or was pushed by it, is not compared with itself."""
    from django.conf import settings

    if not (settings.PACS_COMPARE_UPLOADS and settings.PACS_DESTINATION) or scan.kind != Scan.Kind.DICOM or origin:
        return
    scan.metadata = _set_compare_state(scan.pk, COMPARE_QUEUED, user=scan.owner, trigger=TRIGGER_UPLOAD).metadata
    transaction.on_commit(lambda: _dispatch_comparison(scan.pk, scan.owner, TRIGGER_UPLOAD))


def _dispatch_comparison(scan_id: int, owner, trigger: str) -> bool:
    """Send the comparison's task to a worker (PACS_QUEUE); a broker that does not answer is the failed state."""
    from django.conf import settings

    from scans.tasks import compare_with_pacs

    queue = settings.PACS_QUEUE
    try:
        compare_with_pacs.apply_async((scan_id, trigger), **({"queue": queue} if queue else {}))
    except Exception as exc:  # the broker is down: the doctor can still press "Compare with the PACS"
        logger.exception("could not queue the PACS comparison of scan %s", scan_id)
        _set_compare_state(scan_id, COMPARE_FAILED, user=owner, trigger=trigger,
                           error=f"The comparison could not be queued (the broker did not answer: {exc}).")
        return False
    return True


def pacs_recheck_due(*, hours: float | None = None, limit: int | None = None):
    """DICOM scans due for another comparison with the PACS's copy (PACS_RECHECK_HOURS; empty when it is 0 or there
    is no PACS): those whose copy the PACS has held (compared before, or imported from it or pushed by it: the
    portal's copy is the witness of what the PACS held then), whose latest comparison was queued or attempted
    (else: whose upload was) more than ``hours`` (default PACS_RECHECK_HOURS) ago; the longest waiting first. Scans
    never found in the PACS (uploads from another hospital) are not asked for again and again."""
    from datetime import timedelta

    from django.conf import settings
    from django.db.models import Q
    from django.db.models.functions import Coalesce
    from django.utils import timezone

    hours = settings.PACS_RECHECK_HOURS if hours is None else hours
    if not hours or not settings.PACS_DESTINATION:
        return Scan.objects.none()
    cutoff = timezone.now() - timedelta(hours=hours)
    held = (Q(metadata__has_key="pacs_comparison") | Q(metadata__origin__has_key="pacs")
            | Q(metadata__origin__has_key="received"))
    due = (Scan.objects.filter(kind=Scan.Kind.DICOM).filter(held)
           .annotate(last_checked=Coalesce("pacs_checked_at", "created_at")).filter(last_checked__lt=cutoff)
           .select_related("owner").order_by("last_checked", "pk"))
    return due[:limit] if limit else due


def pacs_recheck_queue() -> int:
    """The periodic task's work (scans.tasks.recheck_pacs_copies, from beat): queue the comparison of at most
    PACS_RECHECK_BATCH due scans (pacs_recheck_due), each marked queued at once so that the next run does not queue
    it again; how many were queued."""
    from django.conf import settings

    queued = 0
    for scan in list(pacs_recheck_due(limit=settings.PACS_RECHECK_BATCH)):
        _set_compare_state(scan.pk, COMPARE_QUEUED, user=scan.owner, trigger=TRIGGER_SCHEDULE)
        queued += _dispatch_comparison(scan.pk, scan.owner, TRIGGER_SCHEDULE)
    return queued


def _set_compare_state(scan_id: int, state: str, *, user, trigger: str, error: str = "",
                       comparison: dict | None = None) -> Scan:
    """Record how the latest comparison with the PACS went (``metadata["pacs_compare"]``: state, at, by,
    trigger, error; ``pacs_checked_at``, which the periodic recheck schedules by) and, when it was made, its outcome
    (``metadata["pacs_comparison"]``, kept until the next one is made: a failed attempt does not erase what an
    earlier one found). Row-locked: the worker's write and the page's do not lose each other's keys."""
    from django.utils import timezone

    now = timezone.now()
    with transaction.atomic():
        locked = Scan.objects.select_for_update().get(pk=scan_id)
        record = {"state": state, "at": now.isoformat(), "by": user.get_username(), "trigger": trigger,
                  **({"error": error[:1000]} if error else {})}
        metadata = {**(locked.metadata or {}), "pacs_compare": record}
        if comparison is not None:
            metadata["pacs_comparison"] = comparison
        locked.metadata, locked.pacs_checked_at = metadata, now
        locked.save(update_fields=["metadata", "pacs_checked_at"])
    return locked
