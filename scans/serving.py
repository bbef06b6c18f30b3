"""Serving stored scan files to someone already allowed to see the scan (pages and API share this).

Media is private: files go through these responses, never a public MEDIA_URL. On the local filesystem the
bytes are streamed; on object storage (S3) the response is a redirect to a short-lived signed URL.
"""
from __future__ import annotations

import tempfile
import zipfile

from django.core.files.storage import FileSystemStorage
from django.http import FileResponse, HttpResponseRedirect
from django.utils.cache import patch_cache_control

from scans.models import Scan, ScanFile, ScanSlice

CONTENT_TYPES = {"dicom": "application/dicom", "nifti": "application/octet-stream"}


def _private(response, *, max_age: int = 0):
    patch_cache_control(response, private=True, max_age=max_age)
    if not max_age:
        patch_cache_control(response, no_store=True)
    return response


def field_file_response(field_file, *, filename: str, as_attachment: bool, content_type: str | None = None,
                        max_age: int = 0):
    storage = field_file.storage
    if not isinstance(storage, FileSystemStorage):
        disposition = f'{"attachment" if as_attachment else "inline"}; filename="{filename}"'
        try:
            url = storage.url(field_file.name, parameters={"ResponseContentDisposition": disposition})
        except TypeError:  # a storage whose url() takes no parameters
            url = storage.url(field_file.name)
        return _private(HttpResponseRedirect(url))
    response = FileResponse(
        field_file.open("rb"), as_attachment=as_attachment, filename=filename, content_type=content_type
    )
    return _private(response, max_age=max_age)


def original_file_response(scan_file: ScanFile):
    return field_file_response(
        scan_file.file, filename=scan_file.original_name, as_attachment=True,
        content_type=CONTENT_TYPES.get(scan_file.scan.kind) if not scan_file.original_name.lower().endswith(".zip")
        else "application/zip",
    )


def originals_response(scan: Scan, files: list[ScanFile]):
    """One original: that file. Several (a DICOM series uploaded as files): a zip of them, unchanged."""
    if len(files) == 1:
        return original_file_response(files[0])
    spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        seen: set[str] = set()
        for scan_file in files:
            name = scan_file.original_name
            if name in seen:
                name = f"{scan_file.position:04d}-{name}"
            seen.add(name)
            with scan_file.file.open("rb") as fh, archive.open(name, "w", force_zip64=True) as out:
                while chunk := fh.read(1024 * 1024):
                    out.write(chunk)
    spool.seek(0)
    response = FileResponse(spool, as_attachment=True, filename=f"scan-{scan.pk}-originals.zip",
                            content_type="application/zip")
    return _private(response)


def slice_image_response(scan_slice: ScanSlice, *, bits: int = 8):
    field = scan_slice.image16 if bits == 16 and scan_slice.image16 else scan_slice.image
    suffix = "-16bit" if field is scan_slice.image16 else ""
    return field_file_response(
        field, filename=f"scan-{scan_slice.scan_id}-slice-{scan_slice.index:04d}{suffix}.png", as_attachment=False,
        content_type="image/png", max_age=3600,  # slices never change once stored
    )
