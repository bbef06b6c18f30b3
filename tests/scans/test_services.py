"""scan_upload from real files: every accepted format, dedupe, metadata, slices, the job; refusals."""
from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from audit.models import AuditEvent
from inference.ml import imaging
from inference.models import InferenceJob
from scans.ingest import UploadRejected
from scans.models import Scan, ScanFile, ScanSlice
from scans.services import scan_upload

from .scanfiles import (
    BAD_INPUTS,
    BRAINIX,
    SAMPLE_FLAIR,
    SAMPLE_TIFF,
    bad_input_params,
    brainix_series,
    jpeg2000_dicom,
    lgg_slice,
    multiframe_dicom,
    png_bytes,
    rle_dicom,
    upload,
    uploads_from,
    zip_bytes,
)

pytestmark = pytest.mark.django_db


def _png_array(field_file) -> np.ndarray:
    with field_file.open("rb") as fh:
        return np.asarray(Image.open(io.BytesIO(fh.read())))


def _native_from_png16(scan: Scan, scan_slice: ScanSlice) -> np.ndarray:
    return _png_array(scan_slice.image16).astype(np.float64) * scan.pixel_scale + scan.pixel_offset


def test_dicom_series_as_files_is_one_scan_with_ordered_slices(doctor_a):
    paths = brainix_series("FLAIR")
    files = uploads_from(reversed(paths))  # upload order must not matter
    result = scan_upload(user=doctor_a, files=files)

    scan = result.scan
    assert result.created
    assert (scan.kind, scan.n_slices, scan.width, scan.height) == ("dicom", 22, 288, 288)
    assert scan.pixel_dtype == "uint16"
    assert scan.original_name == "IM-0001-0022.dcm (+21 more)"
    assert scan.size_bytes == sum(p.stat().st_size for p in paths)

    # Every original is stored byte for byte, with its SHA-256.
    stored = {f.original_name: f for f in ScanFile.objects.filter(scan=scan)}
    assert set(stored) == {p.name for p in paths}
    for p in paths:
        with stored[p.name].file.open("rb") as fh:
            data = fh.read()
        assert data == p.read_bytes()
        assert stored[p.name].sha256 == hashlib.sha256(data).hexdigest()

    # Slices in order along the slice normal; 8-bit = the windowing rule over the volume, 16-bit = native.
    volume = imaging.read_dicom_series(paths)
    expected8 = imaging.to_uint8(volume.slices)
    slices = list(scan.slices.order_by("index"))
    assert [s.index for s in slices] == list(range(22))
    for i in (0, 10, 21):
        assert np.array_equal(_png_array(slices[i].image), expected8[i])
        assert np.array_equal(_native_from_png16(scan, slices[i]), volume.slices[i].astype(np.float64))
    assert scan.window_low < scan.window_high

    # The order is along the slice normal, checked here with pydicom alone: the stored native pixels of
    # slice i are those of the file with the i-th position.
    def position(p):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        normal = np.cross(np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float))
        return float(np.dot(normal, np.array(ds.ImagePositionPatient, float)))

    by_position = sorted(paths, key=position)
    for i in (0, 7, 21):
        assert np.array_equal(_native_from_png16(scan, slices[i]), pydicom.dcmread(by_position[i]).pixel_array)

    # The job is queued for the scan, and the upload is in the audit log.
    job = InferenceJob.objects.get(scan=scan)
    assert job.status == InferenceJob.Status.QUEUED
    assert AuditEvent.objects.filter(action="scan.uploaded", object_id=str(scan.pk)).count() == 1


def test_dicom_series_as_zip(doctor_a):
    paths = brainix_series("FLAIR")
    # As archivers and PACS exports write them: a folder, a DICOMDIR index and macOS metadata, all skipped.
    members = [(f"BRAINIX/FLAIR/{p.name}", p.read_bytes()) for p in paths] + [
        ("BRAINIX/DICOMDIR", b"DICM index, not a slice"), ("__MACOSX/BRAINIX/._IM-0001-0001.dcm", b"junk"),
        ("BRAINIX/.DS_Store", b"junk")]
    data = zip_bytes(members)
    scan = scan_upload(user=doctor_a, files=[upload("brainix-flair.zip", data)]).scan

    assert (scan.kind, scan.n_slices) == ("dicom", 22)
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    (original,) = scan.files.all()  # the zip is kept as the zip
    with original.file.open("rb") as fh:
        assert fh.read() == data
    as_files = imaging.read_dicom_series(paths)
    assert np.array_equal(_png_array(scan.slices.get(index=5).image), imaging.to_uint8(as_files.slices)[5])


def test_dicom_files_named_by_number_or_uid_are_recognised_by_content(doctor_a):
    names = ["IM0001", "1.3.46.670589.11.0.0.11.4.2.0.8743.5.5396.2006120114285654497.2", "slice-3.DCM"]
    files = [upload(name, p.read_bytes()) for name, p in zip(names, SAMPLE_FLAIR)]
    scan = scan_upload(user=doctor_a, files=files).scan
    assert (scan.kind, scan.n_slices) == ("dicom", 3)
    assert sorted(f.original_name for f in scan.files.all()) == sorted(names)


def test_metadata_has_the_clinical_fields_and_never_the_patient(doctor_a):
    scan = scan_upload(user=doctor_a, files=uploads_from(SAMPLE_FLAIR)).scan
    ds = pydicom.dcmread(SAMPLE_FLAIR[0])

    assert scan.metadata["modality"] == "MR"
    assert scan.metadata["series_description"] == str(ds.SeriesDescription)
    assert scan.metadata["study_date"] == "20061201"
    assert scan.metadata["slice_thickness"] == pytest.approx(float(ds.SliceThickness))
    assert scan.metadata["patient_sex"] == str(ds.PatientSex)
    dumped = json.dumps(scan.metadata)
    for secret in (str(ds.PatientName), str(ds.PatientID), str(ds.PatientBirthDate), str(ds.SeriesInstanceUID)):
        assert secret and secret not in dumped


def test_multiframe_dicom(doctor_a):
    data = multiframe_dicom(SAMPLE_FLAIR)
    scan = scan_upload(user=doctor_a, files=[upload("flair-multiframe.dcm", data)]).scan

    assert (scan.kind, scan.n_slices, scan.width) == ("dicom", 3, 288)
    expected = imaging.to_uint8(imaging.read_dicom_series(SAMPLE_FLAIR).slices)
    for i in range(3):
        assert np.array_equal(_png_array(scan.slices.get(index=i).image), expected[i])


@pytest.mark.parametrize("make", [jpeg2000_dicom, rle_dicom], ids=["jpeg2000-lossless", "rle-lossless"])
def test_compressed_dicom_decodes_to_the_same_pixels(doctor_a, make):
    data = make(SAMPLE_FLAIR[1])
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID.is_compressed
    scan = scan_upload(user=doctor_a, files=[upload("compressed.dcm", data)]).scan

    native = pydicom.dcmread(SAMPLE_FLAIR[1]).pixel_array
    assert np.array_equal(_native_from_png16(scan, scan.slices.get()), native.astype(np.float64))
    assert scan.metadata["transfer_syntax"] == str(pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID)


def test_nifti_volume(doctor_a):
    path = BRAINIX / "NIfTI" / "FLAIR.nii.gz"
    scan = scan_upload(user=doctor_a, files=[upload(path.name, path.read_bytes())]).scan

    volume = imaging.read_nifti(path)
    assert (scan.kind, scan.n_slices, scan.height, scan.width) == ("nifti", *volume.slices.shape)
    assert scan.metadata["slice_thickness"] == pytest.approx(6.0, abs=0.01)
    middle = scan.n_slices // 2
    assert np.array_equal(_png_array(scan.slices.get(index=middle).image), imaging.to_uint8(volume.slices)[middle])
    assert np.allclose(_native_from_png16(scan, scan.slices.get(index=middle)), volume.slices[middle])


def test_uncompressed_nifti(doctor_a):
    import gzip

    raw = gzip.decompress((BRAINIX / "NIfTI" / "T1.nii.gz").read_bytes())
    scan = scan_upload(user=doctor_a, files=[upload("T1.nii", raw)]).scan
    assert (scan.kind, scan.n_slices) == ("nifti", 22)


def test_lgg_tiff_keeps_its_8_bit_pixels(doctor_a):
    scan = scan_upload(user=doctor_a, files=[upload(SAMPLE_TIFF.name, SAMPLE_TIFF.read_bytes())]).scan

    assert (scan.kind, scan.n_slices, scan.width, scan.height, scan.pixel_dtype) == ("image", 1, 256, 256, "uint8")
    assert set(scan.metadata) == {"format", "sequence", "input_check"}
    assert scan.metadata["input_check"]["within"] is True
    assert scan.metadata["format"] == "TIFF" and scan.metadata["sequence"]["sequence"] == "unknown"
    (only,) = scan.slices.all()
    assert not only.image16 and scan.pixel_scale is None
    assert np.array_equal(_png_array(only.image), lgg_slice())  # 8-bit data byte for byte


def test_png_and_jpeg(doctor_a):
    pixels = lgg_slice()
    png = scan_upload(user=doctor_a, files=[upload("slice.png", png_bytes(pixels))]).scan
    assert np.array_equal(_png_array(png.slices.get().image), pixels)

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    jpeg = scan_upload(user=doctor_a, files=[upload("slice.jpg", buf.getvalue())]).scan
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    assert (jpeg.kind, jpeg.n_slices) == ("image", 1)
    # a JPEG is lossy whatever its pixels measure: the scan is outside the detector's input range; the PNG is not
    assert (jpeg.metadata["input_check"]["within"], jpeg.metadata["input_check"]["outside"]) == (
        False, ["lossy_compression"])
    assert png.metadata["input_check"]["within"] is True
    assert np.array_equal(_png_array(jpeg.slices.get().image), decoded)


def test_same_bytes_again_return_the_same_scan_and_store_nothing(doctor_a, doctor_b, settings):
    first = scan_upload(user=doctor_a, files=uploads_from(SAMPLE_FLAIR))
    files_before = sorted(p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file())

    again = scan_upload(user=doctor_a, files=uploads_from(reversed(SAMPLE_FLAIR)))  # order does not matter
    assert not again.created
    assert again.scan.pk == first.scan.pk
    assert "uploaded this exact file before" in again.message
    assert Scan.objects.count() == 1 and InferenceJob.objects.count() == 1
    assert sorted(p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()) == files_before

    # Another doctor uploading the same bytes gets a scan of their own.
    other = scan_upload(user=doctor_b, files=uploads_from(SAMPLE_FLAIR))
    assert other.created and other.scan.owner == doctor_b


def test_a_different_subset_of_the_series_is_a_different_scan(doctor_a):
    a = scan_upload(user=doctor_a, files=uploads_from(SAMPLE_FLAIR)).scan
    b = scan_upload(user=doctor_a, files=uploads_from(SAMPLE_FLAIR[:2])).scan
    assert a.pk != b.pk and b.n_slices == 2


@pytest.mark.parametrize("bad", bad_input_params())
def test_bad_input_is_refused_and_leaves_nothing(bad, doctor_a, apply_limits, assert_nothing_stored):
    apply_limits(bad)
    files = [upload(name, data) for name, data in bad.files()]
    with pytest.raises(UploadRejected) as caught:
        scan_upload(user=doctor_a, files=files)
    assert bad.message in caught.value.message
    assert_nothing_stored()
    # The refusal itself is audited.
    assert AuditEvent.objects.filter(action="scan.upload_rejected", outcome="failure").count() == 1


def test_every_file_pydicom_ships_is_decoded_or_refused_with_a_message():
    """pydicom's own test files (every transfer syntax, broken headers, deflated, big endian, multi-frame,
    truncated, odd VRs) through the upload's checks and decoding: each becomes a volume or an UploadRejected with
    a message; no other exception (a 500 for the doctor) for any of them."""
    import warnings

    from scans import ingest

    root = Path(pydicom.__file__).parent / "data" / "test_files"
    outcomes = {"decoded": 0, "refused": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            try:
                ingest.decode_originals(ingest.read_originals([upload(path.name, path.read_bytes())]))
                outcomes["decoded"] += 1
            except UploadRejected as exc:
                assert exc.message.strip(), path.name
                outcomes["refused"] += 1
    assert outcomes["decoded"] >= 20 and outcomes["refused"] >= 100, outcomes


def test_every_bad_input_has_its_own_message():
    assert len({b.message for b in BAD_INPUTS}) == len(BAD_INPUTS)


def test_several_bad_files_are_each_named(doctor_a, assert_nothing_stored):
    files = [upload("notes.txt", b"hello"), upload("empty.dcm", b""), upload(SAMPLE_FLAIR[0].name,
                                                                          SAMPLE_FLAIR[0].read_bytes())]
    with pytest.raises(UploadRejected) as caught:
        scan_upload(user=doctor_a, files=files)
    assert caught.value.message == "2 files were refused (see each file)."
    assert [e["file"] for e in caught.value.errors] == ["notes.txt", "empty.dcm"]
    assert_nothing_stored()


def test_zip_whose_member_unpacks_to_more_than_it_declares(doctor_a, assert_nothing_stored):
    """The declared size is a lie (patched in both headers): extraction stops at the declared size."""
    data = bytearray(zip_bytes([("IM-0001-0010.dcm", SAMPLE_FLAIR[0].read_bytes())]))
    real_size = SAMPLE_FLAIR[0].stat().st_size
    lie = (1000).to_bytes(4, "little")
    needle = real_size.to_bytes(4, "little")
    count = 0
    start = 0
    while (at := data.find(needle, start)) != -1:
        data[at:at + 4] = lie
        start = at + 4
        count += 1
    assert count == 2  # local header and central directory
    with pytest.raises(UploadRejected) as caught:
        scan_upload(user=doctor_a, files=[upload("series.zip", bytes(data))])
    assert "series.zip" in caught.value.message
    assert "unpacks to more than it declares" in caught.value.message or "cannot be unpacked" in caught.value.message
    assert_nothing_stored()


@pytest.mark.django_db(transaction=True)
def test_a_failed_commit_removes_the_stored_files(make_user, settings):
    """The database refuses the scan at commit (its owner was deleted meanwhile: a deferred foreign key):
    every file already written to storage is removed again."""
    from django.contrib.auth import get_user_model

    ghost = make_user("ghost")
    get_user_model().objects.filter(pk=ghost.pk).delete()
    with pytest.raises(Exception):
        scan_upload(user=ghost, files=uploads_from(SAMPLE_FLAIR[:1]))
    assert Scan.objects.count() == 0
    assert [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()] == []


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_uploads_of_the_same_bytes_make_one_scan(doctor_a, settings):
    results, errors = [], []
    payload = [(p.name, p.read_bytes()) for p in SAMPLE_FLAIR]

    def run():
        from django.db import connection

        try:
            results.append(scan_upload(user=doctor_a, files=[upload(n, d) for n, d in payload]))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Scan.objects.count() == 1
    assert {r.scan.pk for r in results} == {Scan.objects.get().pk}
    assert sorted(r.created for r in results) == [False, True]
    # Only one scan's files remain: 3 originals + 3 slices x (8-bit + 16-bit).
    scan = Scan.objects.get()
    assert scan.files.count() == 3 and scan.slices.count() == 3
    assert len([p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()]) == 9


def test_an_8_bit_slice_saved_as_16_bit_png_keeps_its_exact_bytes(doctor_a):
    """A tool that widens an 8-bit slice to 16 bits (v x 257) must not change what the detector reads: the
    windowing rule recovers the bytes instead of stretching the histogram (which would re-quantise the low bits
    where tamper traces live)."""
    grey = lgg_slice()
    grey = grey[..., 1] if grey.ndim == 3 else grey
    widened = grey.astype(np.uint16) * 257
    scan = scan_upload(user=doctor_a, files=[upload("widened.png", png_bytes(widened))]).scan
    assert scan.pixel_dtype == "uint16" and (scan.window_low, scan.window_high) == (0.0, 65535.0)
    assert np.array_equal(_png_array(scan.slices.get(index=0).image), grey)
