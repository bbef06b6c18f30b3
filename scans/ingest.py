"""Validation and decoding of uploaded files, before anything is stored.

Two steps, so that a repeated upload is recognised before any decoding:

1. `read_originals(files)`: counts, sizes, names and extensions; reads each file's bytes once and hashes them.
2. `decode_originals(originals)`: unpacks a zip (with bomb and path checks), checks image dimensions from the
   headers before any pixel is decoded, and decodes one `Volume` through `inference.ml.imaging`.

Every refusal is an `UploadRejected` with a message a doctor can act on, naming the file and the limit.
No Django models here; settings are read for the limits.
"""
from __future__ import annotations

import hashlib
import io
import os
import posixpath
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from inference.ml import imaging
from inference.ml.imaging import ImagingError, Volume
from inference.ml.input_check import check_slices
from inference.ml.sequence import identify_sequence

# What we keep of a file's metadata. Never the patient's name, ID, birth date or any UID.
SAFE_METADATA_KEYS = (
    "modality",
    "series_description",
    "study_date",
    "slice_thickness",
    "patient_age",
    "patient_sex",
    "manufacturer",
    "window_center",
    "window_width",
    "transfer_syntax",
    "lossy_image_compression",
    "n_instances",
    "format",
    "nifti_shape",
    "protocol_name",
    "scanning_sequence",
    "repetition_time",
    "echo_time",
    "inversion_time",
    "contrast_agent",
    "sequence",  # inference.ml.sequence's check, made at upload
    "input_check",  # inference.ml.input_check's check of the slices' noise, made at upload
    "header_checks",  # inference.ml.provenance: the DICOM header checks, made at upload
    "origin",  # where the files came from when not uploaded: {"pacs": "AE@host:port"} (scans.services)
)

DICOM_EXT = (".dcm", ".dicom")
NIFTI_EXT = (".nii", ".nii.gz")
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
ZIP_EXT = (".zip",)
ACCEPTED_EXTENSIONS = DICOM_EXT + NIFTI_EXT + IMAGE_EXT + ZIP_EXT
ACCEPTED_HELP = "DICOM (.dcm, or a .zip of one series), NIfTI (.nii, .nii.gz), PNG, JPEG or TIFF"
# Files in a zip that are not slices and are skipped: macOS resource forks, DICOMDIR indexes, hidden files.
ZIP_SKIPPED_BASENAMES = {"DICOMDIR", "Thumbs.db", "desktop.ini"}
MIN_SLICE_SIDE = 32
_CHUNK = 1024 * 1024


class UploadRejected(Exception):
    """An upload was refused. `message` is for the user; `errors` lists per-file problems."""

    def __init__(self, message: str, *, errors: list[dict] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []

    @classmethod
    def for_file(cls, name: str, message: str) -> "UploadRejected":
        return cls(f"{name}: {message}", errors=[{"file": name, "error": message}])


@dataclass
class Original:
    """One uploaded file, as uploaded."""

    name: str
    data: bytes
    sha256: str
    kind: str  # dicom | nifti | image | zip

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class DecodedUpload:
    kind: str  # Scan.Kind value
    volume: Volume
    metadata: dict = field(default_factory=dict)


def format_bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _extension(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".nii.gz"):
        return ".nii.gz"
    return os.path.splitext(lower)[1]


def _kind_from_content(name: str, data: bytes) -> str:
    """The file's kind from its extension and first bytes; both must agree (a .png must be an image)."""
    head = data[:132]
    is_dicom = len(head) >= 132 and head[128:132] == b"DICM"
    ext = _extension(name)
    if ext not in ACCEPTED_EXTENSIONS:
        # DICOM files are often named by number or UID ("IM0001", "1.2.840...7"): accept them by content.
        if is_dicom:
            return "dicom"
        shown = f"the extension {ext}" if ext else "a name without extension"
        raise UploadRejected.for_file(
            name, f"{shown} is not accepted and the file is not DICOM. Upload {ACCEPTED_HELP}."
        )
    try:
        kind = imaging.detect_kind(name, head)
    except ImagingError as exc:
        raise UploadRejected.for_file(name, str(exc)) from exc
    expected = (
        "dicom" if ext in DICOM_EXT else "nifti" if ext in NIFTI_EXT else "image" if ext in IMAGE_EXT else "zip"
    )
    if kind != expected:
        named = {"dicom": "DICOM", "nifti": "NIfTI", "image": "an image", "zip": "a zip"}
        raise UploadRejected.for_file(
            name,
            f"the name says {named[expected]} but the content is {named[kind]}. Check the file and its extension.",
        )
    if kind == "image" and not _image_magic(head):
        raise UploadRejected.for_file(
            name, f"the file is not a {ext.lstrip('.').upper()} image (its content is not an image). Upload the scan itself."
        )
    if kind == "zip" and head[:4] != b"PK\x03\x04":
        raise UploadRejected.for_file(name, "the file is not a zip archive (damaged or renamed).")
    return kind


def _image_magic(head: bytes) -> bool:
    return head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff" or head[:4] in (b"II*\x00", b"MM\x00*")


def read_originals(files) -> list[Original]:
    """Check counts, sizes, names and kinds of the uploaded files (Django UploadedFile or any object with
    `.name`, `.size` and `.chunks()`/`.read()`), read and hash them. Raises UploadRejected."""
    files = list(files or [])
    if not files:
        raise UploadRejected("No file was uploaded. Choose a scan file (" + ACCEPTED_HELP + ").")
    if len(files) > settings.UPLOAD_MAX_FILES:
        raise UploadRejected(
            f"{len(files)} files were uploaded; the limit is {settings.UPLOAD_MAX_FILES} per upload. "
            "Zip the series and upload the zip."
        )
    total = sum(int(getattr(f, "size", 0) or 0) for f in files)
    if total > settings.UPLOAD_MAX_BYTES:
        raise UploadRejected(
            f"The upload is {format_bytes(total)}, over the limit of {format_bytes(settings.UPLOAD_MAX_BYTES)}."
        )
    originals: list[Original] = []
    errors: list[dict] = []
    for f in files:
        name = (os.path.basename(str(getattr(f, "name", "") or "")) or "unnamed")[:200]
        data = _read_all(f)
        if not data:
            errors.append({"file": name, "error": "the file is empty (0 bytes)."})
            continue
        try:
            kind = _kind_from_content(name, data)
        except UploadRejected as exc:
            errors.extend(exc.errors)
            continue
        originals.append(Original(name=name, data=data, sha256=hashlib.sha256(data).hexdigest(), kind=kind))
    if errors:
        raise _rejected_files(errors)
    if sum(o.size for o in originals) > settings.UPLOAD_MAX_BYTES:  # sizes a client declared may lie
        raise UploadRejected(f"The upload is over the limit of {format_bytes(settings.UPLOAD_MAX_BYTES)}.")
    kinds = {o.kind for o in originals}
    if len(originals) > 1 and kinds != {"dicom"}:
        raise UploadRejected(
            "Several files in one upload must all be DICOM slices of one series. Upload a NIfTI, an image "
            "or a zip on its own."
        )
    return originals


def _rejected_files(errors: list[dict]) -> UploadRejected:
    if len(errors) == 1:
        return UploadRejected(f"{errors[0]['file']}: {errors[0]['error']}", errors=errors)
    return UploadRejected(f"{len(errors)} files were refused (see each file).", errors=errors)


def _read_all(f) -> bytes:
    if hasattr(f, "seek"):
        try:
            f.seek(0)
        except (OSError, ValueError):
            pass
    if hasattr(f, "chunks"):
        buf = io.BytesIO()
        limit = settings.UPLOAD_MAX_BYTES
        for chunk in f.chunks():
            buf.write(chunk)
            if buf.tell() > limit:
                raise UploadRejected(f"The upload is over the limit of {format_bytes(limit)}.")
        return buf.getvalue()
    return f.read()


def combined_sha256(originals: list[Original]) -> str:
    """The SHA-256 that identifies an upload (see Scan.sha256)."""
    if len(originals) == 1:
        return originals[0].sha256
    return hashlib.sha256("".join(sorted(o.sha256 for o in originals)).encode()).hexdigest()


def display_name(originals: list[Original]) -> str:
    first = originals[0].name
    return first if len(originals) == 1 else f"{first} (+{len(originals) - 1} more)"


# --- Zip --------------------------------------------------------------------------------------------


def _unsafe_member_name(name: str) -> bool:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True
    parts = name.replace("\\", "/").split("/")
    return any(part == ".." for part in parts)


def expand_zip(original: Original) -> list[tuple[str, bytes]]:
    """The DICOM members of a zip as (name, bytes), refusing bombs, unsafe names and anything not DICOM."""
    zname = original.name
    try:
        archive = zipfile.ZipFile(io.BytesIO(original.data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise UploadRejected.for_file(zname, f"the zip archive is damaged or not a zip ({exc}).") from exc
    if len(infos) > settings.ZIP_MAX_MEMBERS:
        raise UploadRejected.for_file(
            zname, f"the zip holds {len(infos)} entries, over the limit of {settings.ZIP_MAX_MEMBERS}."
        )
    for info in infos:
        if _unsafe_member_name(info.filename):
            raise UploadRejected.for_file(
                zname,
                f"the zip contains the unsafe path '{info.filename}' (absolute or with '..'); it is refused.",
            )
    members = [
        i for i in infos
        if not i.is_dir()
        and not i.filename.startswith("__MACOSX/")
        and not posixpath.basename(i.filename).startswith(".")
        and posixpath.basename(i.filename) not in ZIP_SKIPPED_BASENAMES
    ]
    if not members:
        raise UploadRejected.for_file(zname, "the zip is empty; it should hold the DICOM files of one series.")
    declared = sum(i.file_size for i in members)
    max_total = min(settings.ZIP_MAX_UNCOMPRESSED_BYTES, settings.UPLOAD_MAX_BYTES * settings.ZIP_MAX_RATIO)
    if declared > max_total:
        raise UploadRejected.for_file(
            zname,
            f"the zip would unpack to {format_bytes(declared)}, over the limit of {format_bytes(max_total)}.",
        )
    for info in members:
        if info.flag_bits & 0x1:
            raise UploadRejected.for_file(zname, f"'{info.filename}' is encrypted; upload an unencrypted zip.")
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > settings.ZIP_MAX_RATIO:
            raise UploadRejected.for_file(
                zname,
                f"'{info.filename}' is compressed {ratio:.0f}:1, over the limit of {settings.ZIP_MAX_RATIO}:1 "
                "(a zip bomb?); it is refused.",
            )
    out: list[tuple[str, bytes]] = []
    unpacked = 0
    for info in members:
        buf = io.BytesIO()
        try:
            with archive.open(info) as fh:
                while chunk := fh.read(_CHUNK):
                    buf.write(chunk)
                    unpacked += len(chunk)
                    # The declared sizes may lie: limit what is actually unpacked, as it is unpacked.
                    if buf.tell() > info.file_size or unpacked > max_total:
                        raise UploadRejected.for_file(
                            zname, f"'{info.filename}' unpacks to more than it declares; the zip is refused."
                        )
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            raise UploadRejected.for_file(zname, f"'{info.filename}' cannot be unpacked: {exc}.") from exc
        data = buf.getvalue()
        member = posixpath.basename(info.filename.replace("\\", "/"))
        if not data:
            raise UploadRejected.for_file(zname, f"'{info.filename}' in the zip is empty.")
        if data[:4] == b"PK\x03\x04":
            raise UploadRejected.for_file(zname, f"'{info.filename}' is a zip inside the zip; upload one level.")
        if not (len(data) >= 132 and data[128:132] == b"DICM"):
            raise UploadRejected.for_file(
                zname, f"'{info.filename}' is not DICOM; a zip must hold the DICOM files of one series only."
            )
        out.append((member, data))
    return out


# --- Decoding -----------------------------------------------------------------------------------------


def _check_slice_size(name: str, width: int, height: int) -> None:
    if width * height > settings.UPLOAD_MAX_PIXELS:
        raise UploadRejected.for_file(
            name,
            f"the image is {width} x {height} pixels, over the limit of {settings.UPLOAD_MAX_PIXELS} pixels "
            "per slice.",
        )
    if min(width, height) < MIN_SLICE_SIDE:
        raise UploadRejected.for_file(
            name, f"the image is {width} x {height} pixels, too small to be an MRI slice."
        )


def _check_slice_count(name: str, n: int) -> None:
    if n > settings.UPLOAD_MAX_SLICES:
        raise UploadRejected.for_file(
            name, f"the scan has {n} slices, over the limit of {settings.UPLOAD_MAX_SLICES}."
        )


def _explain_dicom_error(data: bytes, exc: ImagingError) -> str:
    """pydicom stops quietly at the end of a truncated file; an image object without pixels was cut short."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:  # the imaging module's message already says what is wrong
        return str(exc)
    if "PixelData" in ds:
        return str(exc)
    sop_class = ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    sop_name = getattr(sop_class, "name", "") or ""
    if "Rows" in ds or "Image" in sop_name:
        return (
            f"the DICOM file has no pixel data although it is an image object ({sop_name or 'it has image rows'}): "
            "it is incomplete (truncated, or its pixels were stripped). Upload the complete file."
        )
    return str(exc)


def _header_int(name: str, ds, keyword: str, default: int) -> int:
    try:
        return imaging.dicom_int(ds, keyword, default)
    except ImagingError as exc:
        raise UploadRejected.for_file(name, str(exc)) from exc


def _check_pixel_data_length(name: str, ds) -> None:
    """An uncompressed file cut short still parses; its pixel data is shorter than the header announces."""
    ts = getattr(ds.file_meta, "TransferSyntaxUID", None)
    if ts is None or ts.is_compressed or "PixelData" not in ds:
        return
    bits = _header_int(name, ds, "BitsAllocated", 0)
    if bits < 8:
        return
    expected = (
        _header_int(name, ds, "Rows", 0) * _header_int(name, ds, "Columns", 0)
        * (_header_int(name, ds, "NumberOfFrames", 1) or 1) * (_header_int(name, ds, "SamplesPerPixel", 1) or 1)
        * bits // 8
    )
    actual = len(ds.PixelData or b"")
    if actual < expected:
        raise UploadRejected.for_file(
            name,
            f"the DICOM file is truncated: it holds {actual} of the {expected} bytes of pixel data its header "
            "announces. Upload the complete file.",
        )


def _decode_dicom(items: list[tuple[str, bytes]], label: str) -> Volume:
    total_frames = 0
    for name, data in items:
        try:
            ds = imaging.read_dicom_dataset(data)
        except ImagingError as exc:
            raise UploadRejected.for_file(name, _explain_dicom_error(data, exc)) from exc
        _check_pixel_data_length(name, ds)
        rows, cols = _header_int(name, ds, "Rows", 0), _header_int(name, ds, "Columns", 0)
        _check_slice_size(name, cols, rows)  # from the header, before any pixel is decoded
        total_frames += _header_int(name, ds, "NumberOfFrames", 1) or 1
        _check_slice_count(label, total_frames)
    try:
        return imaging.read_dicom_series([data for _, data in items])
    except ImagingError as exc:
        if len(items) == 1:
            raise UploadRejected.for_file(items[0][0], str(exc)) from exc
        raise UploadRejected(f"{label}: {exc}", errors=[{"file": label, "error": str(exc)}]) from exc


def _gunzip_limited(name: str, data: bytes) -> bytes:
    limit = settings.ZIP_MAX_UNCOMPRESSED_BYTES
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = io.BytesIO()
    try:
        chunk = inflater.decompress(data, _CHUNK)
        while True:
            out.write(chunk)
            if out.tell() > limit or out.tell() > max(len(data), 1) * settings.ZIP_MAX_RATIO:
                raise UploadRejected.for_file(
                    name, "the .nii.gz unpacks to far more than a brain volume (a gzip bomb?); it is refused."
                )
            if not inflater.unconsumed_tail:
                break
            chunk = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
        out.write(inflater.flush())
    except zlib.error as exc:
        raise UploadRejected.for_file(name, f"the .nii.gz file is truncated or not gzip ({exc}).") from exc
    if not inflater.eof:
        raise UploadRejected.for_file(name, "the .nii.gz file is truncated.")
    return out.getvalue()


def _decode_nifti(original: Original) -> Volume:
    import nibabel as nib

    raw = original.data
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip_limited(original.name, raw)
    try:
        header_cls = nib.Nifti2Header if raw[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c") else nib.Nifti1Header
        header = header_cls.from_fileobj(io.BytesIO(raw))
        shape = tuple(int(s) for s in header.get_data_shape())
    except Exception as exc:  # nibabel raises several types on a bad header
        raise UploadRejected.for_file(original.name, f"the file is not a readable NIfTI volume ({exc}).") from exc
    if len(shape) >= 2:
        _check_slice_size(original.name, shape[0], shape[1])
        _check_slice_count(original.name, int(np.prod(shape[2:])) if len(shape) > 2 else 1)
    try:
        return imaging.read_nifti(raw, name=original.name)
    except ImagingError as exc:
        raise UploadRejected.for_file(original.name, str(exc)) from exc


def _decode_image(original: Original) -> Volume:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(original.data)) as probe:  # reads the header only
            width, height = probe.size
            n_frames = getattr(probe, "n_frames", 1)
    except Image.DecompressionBombError as exc:
        raise UploadRejected.for_file(
            original.name, f"the image is far too large to be a slice (decompression bomb refused: {exc})."
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UploadRejected.for_file(original.name, "the file is not a readable PNG, JPEG or TIFF image.") from exc
    _check_slice_size(original.name, width, height)
    _check_slice_count(original.name, n_frames)
    try:
        return imaging.read_image(original.data, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except ImagingError as exc:
        raise UploadRejected.for_file(original.name, str(exc)) from exc


def decode_originals(originals: list[Original], *, sequence: str | None = None) -> DecodedUpload:
    """One Volume from the checked originals (one NIfTI, one image, a zip of DICOM, or DICOM files).

    ``sequence``: the MRI sequence the uploader states (``inference.ml.sequence.DECLARABLE``), used where the
    file does not say."""
    first = originals[0]
    if first.kind == "nifti":
        volume, kind = _decode_nifti(first), "nifti"
    elif first.kind == "image":
        volume, kind = _decode_image(first), "image"
    elif first.kind == "zip":
        volume, kind = _decode_dicom(expand_zip(first), first.name), "dicom"
    else:
        volume, kind = _decode_dicom([(o.name, o.data) for o in originals], display_name(originals)), "dicom"
    n, height, width = volume.slices.shape
    _check_slice_size(first.name, width, height)
    _check_slice_count(first.name, n)
    volume.metadata["sequence"] = identify_sequence(volume.metadata, first.name, declared=sequence).as_dict()
    volume.metadata["input_check"] = check_slices(imaging.iter_uint8_slices(volume),
                                                  metadata=volume.metadata).as_dict()
    metadata = {k: v for k, v in volume.metadata.items() if k in SAFE_METADATA_KEYS and v is not None}
    return DecodedUpload(kind=kind, volume=volume, metadata=metadata)
