"""Reading MRI slices from DICOM, NIfTI and ordinary image files, and the one windowing rule.

Everything that turns pixels into model input or a display image goes through here: the portal's
upload path, the dataset builder and the `detect` command. No Django.

The windowing rule (documented in the README): 8-bit data is used as it is, byte for byte (tamper
traces live in the low bits, so we never re-quantise it). So is 8-bit data in a wider integer container
(`widened_8bit_bounds`): values all within 0..255, or all multiples of 257 (v x 257, how image tools widen
8 bits to 16) or of 256 (v << 8); its exact bytes are recovered. Any other data (16-bit DICOM, float NIfTI)
is mapped linearly to 0..255 between the 0.5th and 99.5th percentile of the whole volume
(`to_uint8`), clipping outside; a constant volume maps to 0. The percentiles are taken over the
volume, not per slice, so neighbouring slices keep their relative brightness.
"""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

WINDOW_LOW_PERCENTILE = 0.5
WINDOW_HIGH_PERCENTILE = 99.5

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
DICOM_EXTENSIONS = (".dcm", ".dicom", "")


class ImagingError(ValueError):
    """A file could not be read as an MRI slice or volume; the message says why, for a user."""


# The smallest slice the detector can read (its feature pyramid halves the image six times).
MODEL_MIN_SIDE = 16


def check_model_input_size(width: int, height: int) -> None:
    """ImagingError when a slice is too small for the detector to read."""
    if width < MODEL_MIN_SIDE or height < MODEL_MIN_SIDE:
        raise ImagingError(f"The slice is {width} x {height} pixels; the detector needs at least "
                           f"{MODEL_MIN_SIDE} x {MODEL_MIN_SIDE}.")


@dataclass
class Volume:
    """One scan: slices in display order (top of the array is the top of the image)."""

    slices: np.ndarray  # (n, h, w), native dtype (uint8, uint16, int16, float...)
    kind: str  # "dicom" | "nifti" | "image"
    metadata: dict = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.slices.shape[0])


def widened_8bit_bounds(volume: np.ndarray) -> tuple[float, float] | None:
    """The window that gives back the exact bytes of 8-bit data stored in a wider integer type, or None when the
    data is not that: (0, 255) when every value lies in 0..255, (0, 65535) when every value is a multiple of 257
    (v x 257, as image tools widen 8 bits to 16: 65535 = 255 x 257), (0, 65280) when every value is a multiple of
    256 (v << 8: 65280 = 255 x 256). Mapped linearly by `to_uint8`, each window returns v exactly."""
    data = np.asarray(volume)
    if not np.issubdtype(data.dtype, np.integer) or data.size == 0 or data.min() < 0:
        return None
    top = int(data.max())
    if top <= 255:
        return 0.0, 255.0
    if top <= 65535:
        if not np.any(data % 257):
            return 0.0, 65535.0
        if not np.any(data % 256):
            return 0.0, 65280.0
    return None


def window_bounds(volume: np.ndarray) -> tuple[float, float]:
    """The (low, high) window of the rule for non-8-bit data: for 8-bit data in a wider integer type, the window
    that recovers its bytes (`widened_8bit_bounds`); otherwise the 0.5th and 99.5th percentiles of the finite
    values, or their min and max when those percentiles coincide; (0, 0) when nothing is finite."""
    data = np.asarray(volume)
    widened = widened_8bit_bounds(data)
    if widened is not None:
        return widened
    finite = data if np.issubdtype(data.dtype, np.integer) else data[np.isfinite(data)]
    if finite.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(finite, [WINDOW_LOW_PERCENTILE, WINDOW_HIGH_PERCENTILE])
    if high <= low:
        low, high = finite.min(), finite.max()
    return float(low), float(high)


def to_uint8(volume: np.ndarray, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """The project's one windowing rule (module docstring). Works on a slice or a volume; `bounds` are
    `window_bounds(volume)` when the caller has them already."""
    arr = np.asarray(volume)
    if arr.dtype == np.uint8:
        return arr
    low, high = bounds if bounds is not None else window_bounds(arr)
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    data = arr.astype(np.float64, copy=False)
    scaled = (np.nan_to_num(data, nan=low, posinf=high, neginf=low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_grayscale(image: np.ndarray, *, tolerance: float = 2.0) -> np.ndarray:
    """A 2-D array from a grey image stored as grey, RGB or RGBA.

    MRI is grey: an RGB file whose channels differ (a colour photograph) is refused.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[..., :3].astype(np.float32)
        spread = np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()
        if spread > tolerance:
            raise ImagingError(
                "This is a colour image; MRI slices are greyscale. Upload the scan itself (DICOM, NIfTI or a grey PNG)."
            )
        return arr[..., 0]
    raise ImagingError(f"Unexpected image shape {arr.shape}; expected a 2-D greyscale slice.")


# --- Ordinary images -------------------------------------------------------------------------


def read_image(
    source: str | Path | BinaryIO, *, max_pixels: int | None = None, channel: int | None = None
) -> Volume:
    """PNG, JPEG or TIFF (single- or multi-page) as a Volume. 8- and 16-bit grey kept as they are.

    ``channel`` picks one channel of a multi-channel image whose channels are different sequences (the
    public LGG TIFFs are pre-contrast, FLAIR, post-contrast: ``channel=1``); a grey image ignores it.
    Without it a colour image is refused (``to_grayscale``).
    """
    from PIL import Image, UnidentifiedImageError

    def grey(arr: np.ndarray) -> np.ndarray:
        if channel is not None and arr.ndim == 3 and arr.shape[-1] in (3, 4):
            return arr[..., channel]
        return to_grayscale(arr)

    data = _read_bytes(source)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            fmt = probe.format
            n_frames = getattr(probe, "n_frames", 1)
    except UnidentifiedImageError as exc:
        raise ImagingError("The file is not a readable PNG, JPEG or TIFF image.") from exc
    except Image.DecompressionBombError as exc:
        raise ImagingError(f"The image is too large to be a slice ({exc}).") from exc
    if max_pixels is not None and width * height > max_pixels:
        raise ImagingError(
            f"The image is {width} x {height} pixels, over the limit of {max_pixels} pixels per slice."
        )
    if fmt == "TIFF":
        import tifffile

        try:
            arr = tifffile.imread(io.BytesIO(data))
        except Exception as exc:  # tifffile raises many types on corrupt data
            raise ImagingError(f"The TIFF file is damaged or unsupported: {exc}") from exc
        arr = np.asarray(arr)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4) and n_frames == 1:
            frames = [grey(arr)]
        elif arr.ndim == 3:
            frames = [arr[i] for i in range(arr.shape[0])]
        elif arr.ndim == 4:
            frames = [grey(arr[i]) for i in range(arr.shape[0])]
        else:
            frames = [arr]
    else:
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(img).astype(np.uint16 if img.mode.startswith("I;16") else np.int32)
                elif img.mode in ("L", "P", "1", "LA"):
                    arr = np.asarray(img.convert("L"))
                else:
                    arr = grey(np.asarray(img.convert("RGB")))
        except (OSError, SyntaxError) as exc:
            raise ImagingError(f"The {fmt or 'image'} file is truncated or damaged: {exc}") from exc
        frames = [arr]
    slices = np.stack([np.asarray(f) for f in frames])
    if slices.ndim != 3:
        raise ImagingError(f"Unexpected image layout {slices.shape}.")
    return Volume(slices=slices, kind="image", metadata={"format": fmt})


# --- DICOM ----------------------------------------------------------------------------------

DICOM_METADATA_FIELDS = {
    "modality": "Modality",
    "series_description": "SeriesDescription",
    "study_date": "StudyDate",
    "slice_thickness": "SliceThickness",
    "patient_age": "PatientAge",
    "patient_sex": "PatientSex",
    "manufacturer": "Manufacturer",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "window_center": "WindowCenter",
    "window_width": "WindowWidth",
    # The acquisition, to tell the sequence (inference.ml.sequence)
    "protocol_name": "ProtocolName",
    "scanning_sequence": "ScanningSequence",
    "repetition_time": "RepetitionTime",
    "echo_time": "EchoTime",
    "inversion_time": "InversionTime",
    "contrast_agent": "ContrastBolusAgent",
}
NUMERIC_METADATA = (
    "slice_thickness", "window_center", "window_width", "repetition_time", "echo_time", "inversion_time",
)


def read_dicom_dataset(source: str | Path | BinaryIO):
    """A pydicom Dataset with pixel data, or ImagingError saying what is wrong."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    data = _read_bytes(source)
    if not data:
        raise ImagingError("The file is empty.")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError as exc:
        raise ImagingError("The file is not DICOM (no DICM preamble).") from exc
    except Exception as exc:
        raise ImagingError(f"The DICOM file is truncated or damaged: {exc}") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImagingError("The DICOM file has no pixel data (is it a report or structured document?).")
    return ds


def dicom_int(ds, keyword: str, default: int) -> int:
    """A whole-number header value (Rows, Number of Frames, ...); ``default`` when absent or empty; ImagingError
    naming the element when the file holds something else there ("1A")."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and number.is_integer():
            return int(number)
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    where = f" ({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else ""
    raise ImagingError(f"The DICOM header's {keyword}{where} is {str(value)!r}, not a whole number: the file is "
                       "damaged. Export the series again from the scanner or the archive.")


def dicom_pixels(ds) -> np.ndarray:
    """Frames of one DICOM instance as (n, h, w), modality rescale applied."""
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises various errors for truncated or undecodable pixel data
        raise ImagingError(f"The DICOM pixel data cannot be decoded: {exc}") from exc
    arr = np.asarray(arr)
    samples = dicom_int(ds, "SamplesPerPixel", 1)
    n_frames = dicom_int(ds, "NumberOfFrames", 1) or 1
    if samples > 1:
        if n_frames > 1:
            arr = np.stack([to_grayscale(f) for f in arr])
        else:
            arr = to_grayscale(arr)[None]
    elif n_frames == 1 or arr.ndim == 2:
        arr = arr.reshape((-1,) + arr.shape[-2:])
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        arr = arr.astype(np.float32) * slope + intercept
    return arr


def dicom_metadata(ds) -> dict:
    """What a doctor needs, never the patient's name or ID."""
    meta = {}
    for key, keyword in DICOM_METADATA_FIELDS.items():
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
            values = list(value)
            if key == "scanning_sequence":  # e.g. SE\\IR: every part matters
                value = "+".join(str(v) for v in values) or None
            else:
                value = values[0] if values else None
        if value is not None and key in NUMERIC_METADATA:
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
        elif value is not None:
            value = str(value)
        meta[key] = value
    return meta


def _slice_position(ds) -> float | None:
    ipp = getattr(ds, "ImagePositionPatient", None)
    iop = getattr(ds, "ImageOrientationPatient", None)
    if ipp is None or iop is None or len(iop) != 6:
        return None
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return float(np.dot(normal, np.asarray(ipp, float)))


def order_dicom_datasets(datasets: list) -> list:
    """The files of one series in display order: by position along the slice normal, then Instance Number (the
    order of the scan's slices; the SEG and the DICOM report refer to the files in this order)."""

    def order_key(ds):
        pos = _slice_position(ds)
        try:  # for the order only: a damaged instance number sorts as 0 rather than refusing the series
            number = dicom_int(ds, "InstanceNumber", 0)
        except ImagingError:
            number = 0
        return (0 if pos is not None else 1, pos or 0.0, number)

    return sorted(datasets, key=order_key)


def read_dicom_series(sources: Sequence[str | Path | BinaryIO]) -> Volume:
    """One or more DICOM files (one multi-frame instance, or a series of single frames) as one Volume.

    Slices are ordered by position along the slice normal, then InstanceNumber.
    """
    if not sources:
        raise ImagingError("No DICOM files were given.")
    datasets = [read_dicom_dataset(s) for s in sources]
    series_uids = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series_uids) > 1:
        raise ImagingError(
            f"The files belong to {len(series_uids)} different DICOM series; upload one series at a time."
        )

    datasets = order_dicom_datasets(datasets)
    frames = [dicom_pixels(ds) for ds in datasets]
    shapes = {f.shape[1:] for f in frames}
    if len(shapes) > 1:
        raise ImagingError(f"The series mixes slice sizes {sorted(shapes)}; it cannot form one volume.")
    dtype = np.result_type(*[f.dtype for f in frames])
    slices = np.concatenate([f.astype(dtype, copy=False) for f in frames])
    meta = dicom_metadata(datasets[0])
    meta["n_instances"] = len(datasets)
    meta["transfer_syntax"] = str(getattr(datasets[0].file_meta, "TransferSyntaxUID", ""))
    # (0028,2110) "01": lossy compression was applied at some point, even where the file now stores raw pixels
    lossy = {str(getattr(ds, "LossyImageCompression", "") or "").strip() for ds in datasets}
    meta["lossy_image_compression"] = "01" if "01" in lossy else ("00" if "00" in lossy else None)
    meta["header_checks"] = _header_checks(datasets, [f.shape[0] for f in frames])
    meta["instances"] = instance_fingerprints(datasets, frames)
    return Volume(slices=slices, kind="dicom", metadata=meta)


def pixels_sha256(frames: np.ndarray) -> str:
    """SHA-256 of the pixel values (and the array's shape), whatever the transfer syntax, compression (lossless) or
    integer type that carries them: two files with the same digest show the same image."""
    values = np.ascontiguousarray(frames, dtype=np.int64 if np.issubdtype(frames.dtype, np.integer) else np.float64)
    digest = hashlib.sha256(repr(values.shape).encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


# Where two versions of one image differ (changed_regions): above this share of the image the change is spread over
# it (contrast, scaling, re-encoding), below it a local edit, whose pixels are kept as a mask; a mask whose COCO RLE
# string is longer than CHANGE_MASK_MAX_CHARS (scattered pixels) is not kept, its box is.
CHANGE_SPREAD_FRACTION = 0.25
CHANGE_MASK_MAX_CHARS = 4000


def changed_regions(ours: np.ndarray, theirs: np.ndarray) -> list[dict]:
    """Per frame of two versions of one DICOM image ((frames, h, w) each, as ``dicom_pixels`` gives them), where
    their pixel values differ: ``pixels`` (how many), ``fraction`` (of the frame), ``box`` ([x, y, width, height] of
    the changed pixels, 0-based columns and rows; None when none changed), ``max_difference`` (the largest change of
    a value), ``spread`` (over CHANGE_SPREAD_FRACTION of the frame changed: a change of the whole image, such as
    contrast, scaling or re-encoding, rather than a local edit) and ``mask_rle`` (COCO RLE of the changed pixels,
    for a local change; None otherwise). Versions of other sizes or frame counts cannot be compared pixel by pixel:
    one entry per frame of ``ours`` with ``pixels`` None and ``sizes`` ([h, w] of each). No Django: the portal keeps
    these beside the comparisons of its copies (scans.services)."""
    from .coco import mask_to_rle

    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.ndim == 2:
        ours = ours[None]
    if theirs.ndim == 2:
        theirs = theirs[None]
    if ours.shape != theirs.shape:
        sizes = [list(ours.shape[1:]), list(theirs.shape[1:])]
        return [{"pixels": None, "fraction": None, "box": None, "max_difference": None, "spread": True,
                 "mask_rle": None, "sizes": sizes} for _ in range(ours.shape[0])]
    wide = np.int64 if (np.issubdtype(ours.dtype, np.integer) and np.issubdtype(theirs.dtype, np.integer)) \
        else np.float64
    out = []
    for a, b in zip(ours, theirs):
        delta = np.abs(a.astype(wide) - b.astype(wide))
        changed = delta != 0
        n = int(changed.sum())
        fraction = n / changed.size if changed.size else 0.0
        region = {"pixels": n, "fraction": round(fraction, 6), "box": None, "max_difference": 0,
                  "spread": fraction > CHANGE_SPREAD_FRACTION, "mask_rle": None}
        if n:
            rows, cols = np.nonzero(changed)
            region["box"] = [int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1),
                             int(rows.max() - rows.min() + 1)]
            largest = delta.max()
            region["max_difference"] = int(largest) if wide is np.int64 else round(float(largest), 6)
            if not region["spread"]:
                rle = mask_to_rle(changed)
                region["mask_rle"] = rle if len(rle["counts"]) <= CHANGE_MASK_MAX_CHARS else None
        out.append(region)
    return out


# Transfer syntaxes that lose pixel values (JPEG baseline and extended, JPEG-LS near-lossless). Others that may (JPEG
# 2000, HTJ2K) say so in Lossy Image Compression, which must stay "01" once an image was compressed lossily (also
# after a PACS or viewer decompresses it).
LOSSY_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}


def is_lossy(ds) -> bool:
    """Whether a DICOM image was lossily compressed at some point: its pixels cannot match the original exactly."""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    return str(ds.get("LossyImageCompression", "") or "").strip() == "01" or syntax in LOSSY_SYNTAXES


def instance_fingerprints(datasets: list, frames: list[np.ndarray]) -> list[dict]:
    """Per DICOM instance of a series, in slice order: its SOP Instance UID, the digest of its pixels
    (``pixels_sha256``), the slices it fills (``first_slice``, ``n_frames``) and whether it was lossily compressed
    (``lossy``). Two stored series holding an instance with the same UID but another pixel digest hold two versions
    of one image: one was altered, unless one of them was lossily compressed (then no evidence either way)."""
    out, first = [], 0
    for ds, pixels in zip(datasets, frames):
        out.append({"sop_instance_uid": str(ds.get("SOPInstanceUID", "") or "")[:64],
                    "pixels_sha256": pixels_sha256(pixels), "first_slice": first, "n_frames": int(pixels.shape[0]),
                    "lossy": is_lossy(ds)})
        first += int(pixels.shape[0])
    return out


def _header_checks(datasets, frames_per_file: list[int]) -> dict:
    """``provenance.check_series`` on the sorted files; a check that fails says so instead of refusing the scan."""
    from .provenance import VERSION, check_series

    try:
        return check_series(datasets, [_slice_position(ds) for ds in datasets], frames_per_file)
    except Exception as exc:  # a header no check foresaw must not cost the doctor the upload
        logger.exception("DICOM header checks failed")
        return {"version": VERSION, "files": len(datasets), "writers": [], "findings": [], "warnings": 0,
                "notices": 0, "status": "error", "message": f"The header checks could not run: {exc}"}


# --- NIfTI ----------------------------------------------------------------------------------


def read_nifti(source: str | Path | BinaryIO, *, name: str = "volume.nii.gz") -> Volume:
    """A 3-D (or 2-D) NIfTI as axial slices in display orientation (rows top to bottom)."""
    import nibabel as nib

    data = _read_bytes(source)
    if not data:
        raise ImagingError("The file is empty.")
    if data[:2] == b"\x1f\x8b":
        import gzip

        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ImagingError(f"The .nii.gz file is truncated or not gzip: {exc}") from exc
    try:
        img = nib.Nifti1Image.from_bytes(data)
    except Exception as exc:
        try:
            img = nib.Nifti2Image.from_bytes(data)
        except Exception:
            raise ImagingError(f"The file is not a readable NIfTI volume: {exc}") from exc
    try:
        img = nib.as_closest_canonical(img)
        arr = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise ImagingError(f"The NIfTI voxel data cannot be read: {exc}") from exc
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ImagingError(f"The NIfTI volume has shape {arr.shape}; expected 3-D (x, y, slices).")
    # RAS canonical: axis 0 = x (left->right), axis 1 = y (posterior->anterior). Display: rows from
    # anterior (top) to posterior, columns in radiological convention are left to the viewer's right.
    slices = np.transpose(arr, (2, 1, 0))[:, ::-1, :]
    zooms = img.header.get_zooms()
    meta = {"slice_thickness": float(zooms[2]) if len(zooms) > 2 else None, "nifti_shape": list(arr.shape)}
    description = bytes(np.asarray(img.header.get("descrip", b""))).split(b"\0")[0].decode("latin-1").strip()
    if description:
        meta["description"] = description
    return Volume(slices=np.ascontiguousarray(slices), kind="nifti", metadata=meta)


# --- Dispatch -------------------------------------------------------------------------------


def detect_kind(name: str, head: bytes) -> str:
    """'dicom', 'nifti', 'image' or 'zip' from the name and the first bytes; ImagingError otherwise."""
    lower = name.lower()
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if lower.endswith(NIFTI_EXTENSIONS):
        return "nifti"
    if head[:4] == b"PK\x03\x04" or lower.endswith(".zip"):
        return "zip"
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff" or head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image"
    if lower.endswith(".dcm") or lower.endswith(".dicom"):
        return "dicom"
    if lower.endswith(IMAGE_EXTENSIONS):
        return "image"
    raise ImagingError(
        f"'{name}' is not a supported scan: upload DICOM (.dcm or a .zip of a series), NIfTI (.nii, .nii.gz), "
        "PNG, JPEG or TIFF."
    )


def read_path(path: str | Path, *, max_pixels: int | None = None) -> Volume:
    """Any supported single file (not a zip) from disk; a directory is read as a DICOM series."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return read_dicom_series(files)
    with open(path, "rb") as fh:
        head = fh.read(132)
    kind = detect_kind(path.name, head)
    if kind == "dicom":
        return read_dicom_series([path])
    if kind == "nifti":
        return read_nifti(path, name=path.name)
    if kind == "image":
        return read_image(path, max_pixels=max_pixels)
    raise ImagingError(f"'{path.name}': a zip must be unpacked first (the portal's upload does that).")


def _read_bytes(source: str | Path | BinaryIO | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    if hasattr(source, "seek"):
        source.seek(0)
    return source.read()


def iter_uint8_slices(volume: Volume) -> Iterable[np.ndarray]:
    """The volume's slices after the windowing rule, ready for the predictor and for display."""
    windowed = to_uint8(volume.slices)
    for i in range(windowed.shape[0]):
        yield windowed[i]
