"""DICOM SEG export: reads back, matches the stored masks, references the source series, passes dciodvfy and
is accepted by a real Orthanc server."""
import io
import json
import shutil
import subprocess
import urllib.request

import highdicom as hd
import numpy as np
import pydicom
import pytest

from audit import actions
from audit.models import AuditEvent
from reports.overlay import read_png
from tests.reports.conftest import brainix_paths, check_dicom_export_access, dicom_download
from tests.reports.orthanc import post_instance, running_orthanc

SOURCE_INDICES = (9, 10, 11)  # analysed_scan's files


@pytest.fixture
def seg_download(client_a, analysed_scan):
    return dicom_download(client_a, "reports:scan_seg", analysed_scan.scan.pk)


def _sources():
    return [pydicom.dcmread(p) for p in brainix_paths(SOURCE_INDICES)]


def _slice_index_of(ds, scan) -> int:
    """Which of the scan's slices shows this source instance: the best pixel correlation (independent of
    the SEG code's own ordering)."""
    src = ds.pixel_array.astype(float).ravel()
    best, best_r = None, -2.0
    for scan_slice in scan.slices.all():
        r = np.corrcoef(src, read_png(scan_slice.image).astype(float).ravel())[0, 1]
        if r > best_r:
            best, best_r = scan_slice.index, r
    assert best_r > 0.95
    return best


def test_seg_reads_back_and_matches_the_stored_masks(seg_download, analysed_scan):
    seg = hd.seg.segread(io.BytesIO(seg_download))
    sources = _sources()
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.PatientID == sources[0].PatientID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        ds.SOPInstanceUID for ds in sources}
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Real tumor", "Injected tumor", "Erased tumor"]
    assert seg.SegmentSequence[0].SegmentAlgorithmName == analysed_scan.job.model_name

    compared = 0
    for ds in sources:
        index = _slice_index_of(ds, analysed_scan.scan)
        labels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[ds.SOPInstanceUID], segment_numbers=[1, 2, 3], combine_segments=True,
            assert_missing_frames_are_empty=True)[0]
        expected = analysed_scan.masks.get(index, np.zeros(labels.shape, dtype=np.uint8))
        np.testing.assert_array_equal(labels, expected)
        compared += int(expected.any())
    assert compared == 2  # the two slices with regions

    event = AuditEvent.objects.get(action=actions.REPORT_SEG_DOWNLOADED)
    assert (event.actor_username, event.object_id) == ("doctor_a", str(analysed_scan.scan.pk))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_seg_passes_dciodvfy_without_errors(seg_download, tmp_path):
    path = tmp_path / "seg.dcm"
    path.write_bytes(seg_download)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    assert "Segmentation" in output  # it recognised the IOD
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert errors == [], output


@pytest.fixture
def orthanc(tmp_path):
    with running_orthanc(tmp_path) as server:
        yield server["http"]


def test_orthanc_accepts_the_source_series_and_the_seg(seg_download, orthanc):
    source_answers = [post_instance(orthanc, p.read_bytes()) for p in brainix_paths(SOURCE_INDICES)]
    assert {a["Status"] for a in source_answers} == {"Success"}
    answer = post_instance(orthanc, seg_download)
    assert answer["Status"] == "Success"
    # Stored in the same study as the source series, as a series of its own, with modality SEG.
    assert answer["ParentStudy"] == source_answers[0]["ParentStudy"]
    assert answer["ParentSeries"] != source_answers[0]["ParentSeries"]
    with urllib.request.urlopen(f"{orthanc}/series/{answer['ParentSeries']}", timeout=10) as response:
        series = json.loads(response.read())
    assert series["MainDicomTags"]["Modality"] == "SEG"
    with urllib.request.urlopen(f"{orthanc}/instances/{answer['ID']}/simplified-tags", timeout=10) as response:
        tags = json.loads(response.read())
    assert tags["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.66.4"


def test_no_seg_for_a_non_dicom_scan_and_none_of_another_doctors(client_a, client_b, doctor_a, analysed_scan):
    check_dicom_export_access(client_a=client_a, client_b=client_b, doctor_a=doctor_a, scan=analysed_scan.scan,
                              page="reports:scan_seg", api="api-scan-report-seg", modality="SEG",
                              action=actions.REPORT_SEG_DOWNLOADED)
