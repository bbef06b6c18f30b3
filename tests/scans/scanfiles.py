"""Real scan files for the scans tests, and the bad inputs every upload path must refuse.

Everything is built from real data: the BRAINIX DICOM/NIfTI case and LGG TIFFs under ../shared/datasets, the
sample copies under tests/data/samples, and files derived from them with pydicom, Pillow and zipfile.
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from inference.ml.paths import shared_datasets_dir

SHARED = shared_datasets_dir()
BRAINIX = SHARED / "brainix-dicom"
SAMPLES = Path(settings.BASE_DIR) / "tests" / "data" / "samples"
SAMPLE_FLAIR = sorted((SAMPLES / "brainix-flair").glob("*.dcm"))
SAMPLE_TIFF = SAMPLES / "lgg-flair" / "TCGA_CS_4941_19960909_12.tif"


def brainix_series(name: str = "FLAIR") -> list[Path]:
    files = sorted((BRAINIX / "DICOM" / name).glob("*.dcm"))
    assert len(files) == 22, f"the BRAINIX {name} series is expected under {BRAINIX} (see shared/datasets/README.md)"
    return files


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def uploads_from(paths) -> list[SimpleUploadedFile]:
    return [upload(p.name, p.read_bytes()) for p in paths]


def zip_bytes(members: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buf.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def lgg_slice() -> np.ndarray:
    return np.asarray(Image.open(SAMPLE_TIFF))


def multiframe_dicom(paths: list[Path]) -> bytes:
    """One multi-frame DICOM of the series' slices (in the series' slice order), made with pydicom."""
    from inference.ml.imaging import read_dicom_series

    volume = read_dicom_series(paths)
    ds = pydicom.dcmread(paths[0])
    ds.NumberOfFrames = volume.n_slices
    ds.PixelData = volume.slices.astype(np.uint16).tobytes()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def jpeg2000_dicom(path: Path) -> bytes:
    """The same slice, recompressed losslessly to JPEG 2000 (pydicom + pylibjpeg-openjpeg)."""
    ds = pydicom.dcmread(path)
    ds.compress(pydicom.uid.JPEG2000Lossless)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def rle_dicom(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    ds.compress(pydicom.uid.RLELossless)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG that declares 50,000 x 50,000 grey pixels (2.5 gigapixels) in a few hundred bytes: its first rows
    are real deflated data; it must be refused from the header, before any decoding."""
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def dicom_without_pixels(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def colour_photograph() -> bytes:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:  # a real colour photograph (JPEG)
        return fh.read()


@dataclass(frozen=True)
class BadInput:
    id: str
    files: callable  # () -> list[(name, bytes)]
    message: str  # must appear in the error
    settings: dict | None = None


def _first_flair() -> bytes:
    return SAMPLE_FLAIR[0].read_bytes()


def dicom_with_damaged_number() -> bytes:
    """A real slice whose header gains Number of Frames (0028,0008) = "1A": not a number (pydicom's badVR.dcm has
    the same damage), inserted in explicit VR little endian before Rows (0028,0010)."""
    data = _first_flair()
    at = data.find(b"\x28\x00\x10\x00US\x02\x00")
    assert at > 0
    return data[:at] + b"\x28\x00\x08\x00IS" + struct.pack("<H", 2) + b"1A" + data[at:]


BAD_INPUTS = [
    BadInput("empty-file", lambda: [("IM-0001-0010.dcm", b"")], "the file is empty (0 bytes)"),
    BadInput("no-file", lambda: [], "No file was uploaded"),
    BadInput("wrong-extension", lambda: [("slice.gif", png_bytes(lgg_slice()))], "the extension .gif is not accepted"),
    BadInput("text-file", lambda: [("notes.txt", b"Patient notes: follow-up in 3 months.\n" * 20)],
             "the extension .txt is not accepted"),
    BadInput("text-named-dcm", lambda: [("IM-0001-0001.dcm", b"this is not a DICOM file\n" * 20)],
             "not DICOM (no DICM preamble)"),
    BadInput("truncated-dicom", lambda: [("IM-0001-0010.dcm", _first_flair()[: len(_first_flair()) // 2])],
             "the DICOM file is truncated"),
    BadInput("dicom-cut-in-header", lambda: [("IM-0001-0010.dcm", _first_flair()[:1000])],
             "it is incomplete (truncated"),
    BadInput("dicom-without-pixel-data", lambda: [("IM-0001-0010.dcm", dicom_without_pixels(SAMPLE_FLAIR[0]))],
             "has no pixel data"),
    BadInput("dicom-header-number-damaged", lambda: [("IM-0001-0010.dcm", dicom_with_damaged_number())],
             "NumberOfFrames (0028,0008) is '1A', not a whole number"),
    BadInput("png-that-is-not-one", lambda: [("slice.png", b"<html><body>Not found</body></html>" * 10)],
             "the file is not a PNG image"),
    BadInput("dicom-named-png", lambda: [("slice.png", _first_flair())],
             "the name says an image but the content is DICOM"),
    BadInput("truncated-png", lambda: [("slice.png", png_bytes(lgg_slice())[:300])], "truncated or damaged"),
    BadInput("decompression-bomb-png", lambda: [("huge.png", png_header_bomb())], "decompression bomb"),
    BadInput("image-over-pixel-limit", lambda: [("big.png", png_bytes(np.zeros((300, 300), np.uint8)))],
             "300 x 300 pixels, over the limit of 40000 pixels", {"UPLOAD_MAX_PIXELS": 40_000}),
    BadInput("colour-photograph", lambda: [("photo.jpg", colour_photograph())], "This is a colour image"),
    BadInput("zip-bomb", lambda: [("series.zip", zip_bytes([("IM-0001.dcm", b"\x00" * (20 * 1024 * 1024))]))],
             "over the limit of 200:1"),
    BadInput("zip-over-declared-limit", lambda: [("series.zip", zip_bytes([(f"IM-{i}.dcm", _first_flair())
                                                                            for i in range(3)]))],
             "the zip would unpack to", {"ZIP_MAX_UNCOMPRESSED_BYTES": 300_000}),
    BadInput("zip-path-traversal", lambda: [("series.zip", zip_bytes([("../IM-0001-0010.dcm", _first_flair())]))],
             "unsafe path '../IM-0001-0010.dcm'"),
    BadInput("zip-absolute-path", lambda: [("series.zip", zip_bytes([("/tmp/IM-0001-0010.dcm", _first_flair())]))],
             "unsafe path '/tmp/IM-0001-0010.dcm'"),
    BadInput("zip-of-non-dicom", lambda: [("series.zip", zip_bytes([("slice.png", png_bytes(lgg_slice()))]))],
             "'slice.png' is not DICOM"),
    BadInput("zip-damaged", lambda: [("series.zip", b"PK\x03\x04" + b"\x00" * 200)], "damaged or not a zip"),
    BadInput("over-size-limit", lambda: [(p.name, p.read_bytes()) for p in SAMPLE_FLAIR],
             "over the limit of", {"UPLOAD_MAX_BYTES": 300_000}),
    BadInput("too-many-slices", lambda: [("volume.nii.gz", (BRAINIX / "NIfTI" / "FLAIR.nii.gz").read_bytes())],
             "the scan has 22 slices, over the limit of 10", {"UPLOAD_MAX_SLICES": 10}),
    BadInput("gzip-bomb-nifti", lambda: [("volume.nii.gz", __import__("gzip").compress(b"\x00" * (30 * 1024 * 1024)))],
             "gzip bomb"),
    BadInput("two-series-in-one-upload", lambda: [(p.name, p.read_bytes()) for p in
                                                  [brainix_series("T1")[0], brainix_series("FLAIR")[0]]],
             "different DICOM series"),
    BadInput("several-non-dicom-files", lambda: [("a.png", png_bytes(lgg_slice())), ("b.png", png_bytes(lgg_slice()))],
             "Several files in one upload must all be DICOM"),
]


def bad_input_params():
    return [pytest.param(b, id=b.id) for b in BAD_INPUTS]


def brainix_flair_upload(indices, paint: int | None = None) -> list[SimpleUploadedFile]:
    """BRAINIX FLAIR slices at `indices` as an upload; `paint`: the position of one whose pixels get a bright square
    (saved back with its header, same SOP Instance UID: an altered copy of that image)."""
    from tests.reports.conftest import brainix_paths

    files = []
    for position, path in enumerate(brainix_paths(indices)):
        ds = pydicom.dcmread(path)
        if position == paint:
            pixels = ds.pixel_array.copy()
            pixels[100:120, 100:120] = pixels.max()
            ds.PixelData = pixels.tobytes()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(SimpleUploadedFile(path.name, buffer.getvalue(), content_type="application/dicom"))
    return files
