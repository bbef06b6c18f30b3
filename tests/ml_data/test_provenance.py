"""DICOM header checks (inference.ml.provenance) on the real BRAINIX series, untouched and edited the ways a
tampering tool or a careless export edits files: each edit must be found at the slice it touched, and the
untouched real series must raise nothing."""
from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from inference.ml import imaging
from inference.ml.paths import shared_datasets_dir
from inference.ml.provenance import _slices_text, check_series

BRAINIX = shared_datasets_dir() / "brainix-dicom" / "DICOM"
# BRAINIX's files run from the top of the head down; the portal shows slices by position, bottom up, so file
# IM-0001-0011 (index 10) is shown as slice 12 (0-based 11).
EDITED = 10
SHOWN = 11


def _series(name: str = "FLAIR") -> list[bytes]:
    files = sorted((BRAINIX / name).glob("*.dcm"))
    assert len(files) == 22, f"the BRAINIX {name} series is expected under {BRAINIX}"
    return [p.read_bytes() for p in files]


def _edited(raw: list[bytes], index: int, edit) -> list[bytes]:
    ds = pydicom.dcmread(io.BytesIO(raw[index]))
    edit(ds)
    buf = io.BytesIO()
    ds.save_as(buf)
    return raw[:index] + [buf.getvalue()] + raw[index + 1:]


def _checks(raw: list[bytes]) -> dict:
    return imaging.read_dicom_series([io.BytesIO(b) for b in raw]).metadata["header_checks"]


def _paste(ds, value: int = 900) -> None:
    pixels = ds.pixel_array.copy()
    pixels[100:130, 100:130] = value
    ds.PixelData = pixels.tobytes()


def _only(checks: dict, check: str, severity: str = "warning") -> dict:
    found = [f for f in checks["findings"] if f["check"] == check and f["severity"] == severity]
    assert len(found) == 1, checks["findings"]
    return found[0]


@pytest.mark.parametrize("name", ["T1", "T2", "FLAIR"])
def test_untouched_real_series_are_consistent(name):
    checks = _checks(_series(name))
    assert checks["status"] == "consistent", checks["findings"]
    assert (checks["files"], checks["warnings"], checks["notices"], checks["findings"]) == (22, 0, 0, [])
    assert checks["writers"] == [{"name": "OSIRIX", "uid": "1.2.276.0.7238010.5.0.3.5.4", "files": 22}]
    assert checks["message"] == "The 22 files' headers agree with one acquisition, written by one program (OSIRIX)."


def test_one_file_has_nothing_to_compare_with():
    checks = _checks(_series()[:1])
    assert (checks["status"], checks["findings"]) == ("single", [])
    assert "cannot be compared" in checks["message"]


def test_pixels_edited_and_saved_back_with_their_header_leave_no_trace():
    """The honest limit: pydicom's save_as keeps the file meta, UIDs and times. The pixels changed, the headers
    did not, so the checks see nothing (the detector reads the pixels)."""
    raw = _series()
    edited = _edited(raw, EDITED, _paste)
    assert edited[EDITED] != raw[EDITED]
    assert _checks(edited)["status"] == "consistent"


def test_a_file_saved_again_by_another_program_is_found_at_its_slice():
    def rewrite(ds):
        _paste(ds)
        ds.file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
        ds.file_meta.ImplementationVersionName = "PYDICOM 3.0.2"

    checks = _checks(_edited(_series(), EDITED, rewrite))
    finding = _only(checks, "writer")
    assert finding["slices"] == [SHOWN]
    assert finding["message"].startswith("1 of 22 files were last written by a different program (PYDICOM 3.0.2) "
                                         "from the rest (OSIRIX, 21 files), at slice 12")
    assert checks["status"] == "warnings" and checks["warnings"] == 1
    assert {w["name"]: w["files"] for w in checks["writers"]} == {"OSIRIX": 21, "PYDICOM 3.0.2": 1}


def test_a_program_of_the_same_name_but_another_implementation_is_named_by_its_uid():
    def other_build(ds):
        ds.file_meta.ImplementationClassUID = "1.2.3.4.5"  # still "OSIRIX", another implementation

    finding = _only(_checks(_edited(_series(), EDITED, other_build)), "writer")
    assert finding["message"].startswith("1 of 22 files were last written by a different program (OSIRIX 1.2.3.4.5) "
                                         "from the rest (OSIRIX 1.2.276.0.7238010.5.0.3.5.4, 21 files), at slice 12")


def test_a_new_instance_uid_from_another_root_is_found_and_so_is_a_file_meta_left_behind():
    def new_identity(ds):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()

    def identity_only(ds):
        ds.SOPInstanceUID = generate_uid()

    checks = _checks(_edited(_series(), EDITED, new_identity))
    assert [f["check"] for f in checks["findings"]] == ["uid"]
    assert "another organisation's root (1.2.826.0 against 1.3.46.670589)" in checks["findings"][0]["message"]
    checks = _checks(_edited(_series(), EDITED, identity_only))
    messages = [f["message"] for f in checks["findings"]]
    assert len(messages) == 2 and "1 file names a different instance in the file meta" in messages[1]
    assert all(f["slices"] == [SHOWN] for f in checks["findings"])


def test_stored_values_beyond_bits_stored_are_found_though_pydicom_masks_them():
    def overflow(ds):
        _paste(ds, value=5000)  # 12 bits stored: 4095 at most

    edited = _edited(_series(), EDITED, overflow)
    shown = pydicom.dcmread(io.BytesIO(edited[EDITED])).pixel_array
    assert shown.max() < 4096  # what a viewer shows is not what the file holds
    finding = _only(_checks(edited), "bits")
    assert finding["slices"] == [SHOWN] and "(Bits Stored 12)" in finding["message"]


def test_a_file_created_two_days_after_the_rest_is_found():
    def later(ds):
        ds.InstanceCreationDate, ds.InstanceCreationTime = "20061203", "101500"

    finding = _only(_checks(_edited(_series(), EDITED, later)), "time")
    assert finding["message"] == "1 of 22 files were created up to 43 h 21 min after the rest of the series, at slice 12."


def test_a_slice_of_another_series_passed_off_as_this_one_is_found():
    t1 = pydicom.dcmread(io.BytesIO(_series("T1")[EDITED]))
    t2 = _series("T2")
    t1.SeriesInstanceUID = pydicom.dcmread(io.BytesIO(t2[0]), stop_before_pixels=True).SeriesInstanceUID
    buf = io.BytesIO()
    t1.save_as(buf)
    checks = _checks(t2[:EDITED] + [buf.getvalue()] + t2[EDITED + 1:])
    warned = {f["message"].split(" (")[0] for f in checks["findings"] if f["severity"] == "warning"}
    assert warned == {"1 of 22 files have another series description", "1 of 22 files have another protocol",
                      "1 of 22 files have another pixel spacing"}
    noted = {f["message"].split(" (")[0] for f in checks["findings"] if f["check"] == "acquisition"
             and f["severity"] == "notice"}
    assert noted == {"1 of 22 files have another repetition time", "1 of 22 files have another echo time"}
    assert all(f["slices"] == [SHOWN] for f in checks["findings"])


def test_another_patient_is_found_and_never_named():
    def other(ds):
        ds.PatientID, ds.PatientName = "OTHER-4711", "Doe^Jane"

    checks = _checks(_edited(_series(), 3, other))
    finding = _only(checks, "identity")
    assert finding["message"].startswith("1 of 22 files name another patient (name, ID or birth date), at slice 19")
    text = json.dumps(checks)
    assert "4711" not in text and "Doe" not in text
    real = pydicom.dcmread(io.BytesIO(_series()[0]), stop_before_pixels=True)
    assert str(real.PatientID) not in text and str(real.PatientName) not in text


def test_missing_slices_are_a_notice_and_a_duplicated_one_a_warning():
    raw = _series()
    gap = _checks(raw[:8] + raw[11:])
    assert gap["status"] == "notices" and gap["warnings"] == 0
    assert _only(gap, "position", "notice")["message"].startswith("The slice spacing is usually 6.00 mm but jumps 1 time")
    duplicated = _checks(raw + [raw[5]])
    assert {f["check"] for f in duplicated["findings"] if f["severity"] == "warning"} == {"uid", "position"}


def test_a_multi_echo_series_at_shared_positions_is_not_called_duplicated():
    """Two echoes per position (as a dual-echo series is stored): a notice on the echo times, no warning."""
    raw = _series()[:6]
    second = []
    for data in raw:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.EchoTime = 30
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".2"
        ds.InstanceNumber = int(ds.InstanceNumber) + 100
        buf = io.BytesIO()
        ds.save_as(buf)
        second.append(buf.getvalue())
    checks = _checks(raw + second)
    assert checks["warnings"] == 0, checks["findings"]
    assert [f["message"].split(" (")[0] for f in checks["findings"]] == ["6 of 12 files have another echo time"]


def test_software_versions_repeated_a_varying_number_of_times_are_one_value():
    """BRAINIX's own files list the same Gyroscan software 3 to 5 times: the same software."""
    datasets = [pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True) for b in _series()[:3]]
    datasets[0].SoftwareVersions = ["1.5.4", "1.5.4"]
    datasets[1].SoftwareVersions = ["1.5.4"]
    datasets[2].SoftwareVersions = ["1.5.4", "1.5.4", "1.5.4"]
    assert check_series(datasets)["findings"] == []
    datasets[2].SoftwareVersions = ["1.5.5"]
    assert check_series(datasets)["findings"][0]["message"].startswith(
        "1 of 3 files name a different scanner software (1.5.5 against 1.5.4)")


def test_slices_text_numbers_slices_from_one_and_joins_runs():
    assert _slices_text([0]) == "slice 1"
    assert _slices_text([4, 2, 3, 9, 11, 10]) == "slices 3-5, 10-12"
    assert _slices_text([]) == ""


def test_a_failing_check_is_recorded_and_does_not_cost_the_upload(monkeypatch):
    import inference.ml.provenance as provenance

    def broken(*args, **kwargs):
        raise ValueError("unexpected header")

    monkeypatch.setattr(provenance, "check_series", broken)
    volume = imaging.read_dicom_series([io.BytesIO(b) for b in _series()[:2]])
    assert volume.slices.shape[0] == 2
    checks = volume.metadata["header_checks"]
    assert (checks["status"], checks["message"]) == ("error", "The header checks could not run: unexpected header")


def test_multi_frame_files_name_the_frames_they_hold():
    datasets = [pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True) for b in _series()[:2]]
    datasets[1].file_meta.ImplementationVersionName = "OTHER"
    checks = check_series(datasets, None, [3, 2])
    assert checks["findings"][0]["slices"] == [3, 4]
    assert np.all(np.array(checks["findings"][0]["slices"]) < 5)


def test_the_checks_read_every_odd_file_pydicom_ships_without_failing():
    """pydicom's own test files (every transfer syntax, multi-frame, big endian, broken headers): each file
    alone, and the files of each series together, are checked without an exception."""
    import warnings
    from collections import defaultdict
    from pathlib import Path

    root = Path(pydicom.__file__).parent / "data" / "test_files"
    by_series, read = defaultdict(list), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            try:
                ds = pydicom.dcmread(path)
            except Exception:
                continue  # not DICOM, or too broken for pydicom itself
            read += 1
            try:
                n_frames = imaging.dicom_int(ds, "NumberOfFrames", 1) or 1 if "PixelData" in ds else 1
            except imaging.ImagingError:  # badVR.dcm: "1A" (the upload refuses it; see tests/scans/scanfiles.py)
                n_frames = 1
            assert check_series([ds], [imaging._slice_position(ds)], [n_frames])["status"] in {"single", "notices", "warnings"}
            if "SeriesInstanceUID" in ds:
                by_series[str(ds.SeriesInstanceUID)].append((ds, n_frames))
        assert read > 100
        for members in by_series.values():
            datasets = [ds for ds, _ in members]
            checks = check_series(datasets, [imaging._slice_position(ds) for ds in datasets], [k for _, k in members])
            assert checks["status"] in {"single", "consistent", "notices", "warnings"}
            assert all(0 <= s < sum(k for _, k in members) for f in checks["findings"] for s in f["slices"])
