"""The analysis as a DICOM Structured Report (TID 1500): the coded verdict, the four probabilities, the regions with
their volumes referencing the very SEG the portal makes; verified by the radiologist's review; stable UIDs; passes
dciodvfy; a real Orthanc files it in the source study; refused for non-DICOM scans, 404 for another doctor's."""
import hashlib
import io
import shutil
import subprocess

import pydicom
import pytest
from django.urls import reverse

from audit import actions
from audit.models import AuditEvent
from reports.overlay import read_png
from tests.reports.conftest import brainix_paths, check_dicom_export_access, dicom_download
from tests.reports.orthanc import get_json, post_instance, running_orthanc

SOURCE_INDICES = (9, 10, 11)  # analysed_scan's files
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SCORES = {"real_tumor": 0.05, "no_tumor": 0.12, "fake_added": 0.71, "fake_removed": 0.12}


@pytest.fixture
def scored_scan(analysed_scan):
    analysed_scan.job.scores = SCORES
    analysed_scan.job.save(update_fields=["scores"])
    return analysed_scan


def _download(client, scan_pk, name="reports:scan_sr") -> bytes:
    return dicom_download(client, name, scan_pk)


def _items(ds, path=()):
    """Every content item of the SR tree as (path of concept meanings, item)."""
    for item in ds.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        yield (*path, name), item
        yield from _items(item, (*path, name))


def _groups(ds) -> dict[str, dict]:
    """Measurement groups by tracking identifier: {concept meaning: value} of their direct children."""
    out = {}
    for path, item in _items(ds):
        if path[-1] == "Measurement Group":
            values = {}
            for child in item.ContentSequence:
                meaning = child.ConceptNameCodeSequence[0].CodeMeaning
                if child.ValueType == "TEXT":
                    values[meaning] = child.TextValue
                elif child.ValueType == "CODE":
                    values[meaning] = child.ConceptCodeSequence[0].CodeValue
                elif child.ValueType == "NUM":
                    values[meaning] = float(child.MeasuredValueSequence[0].NumericValue)
                elif child.ValueType == "UIDREF":
                    values[meaning] = child.UID
                elif child.ValueType == "IMAGE":
                    ref = child.ReferencedSOPSequence[0]
                    values[meaning] = (ref.ReferencedSOPInstanceUID, int(ref.ReferencedSegmentNumber))
            out[values["Tracking Identifier"]] = values
    return out


def test_the_sr_codes_the_verdict_probabilities_and_regions_of_the_seg(client_a, scored_scan):
    scan, job = scored_scan.scan, scored_scan.job
    content = _download(client_a, scan.pk)
    ds = pydicom.dcmread(io.BytesIO(content))
    sources = [pydicom.dcmread(p) for p in brainix_paths(SOURCE_INDICES)]
    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR and ds.Modality == "SR"
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName"):
        assert ds.get(keyword) == sources[0].get(keyword), keyword
    assert ds.SeriesNumber == int(sources[0].SeriesNumber) + 3000
    assert (ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag) == ("COMPLETE", "UNVERIFIED", "PRELIMINARY")
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"

    seg = pydicom.dcmread(io.BytesIO(_download(client_a, scan.pk, "reports:scan_seg")))
    evidence = {i.ReferencedSOPInstanceUID for s in ds.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert evidence == {s.SOPInstanceUID for s in sources} | {seg.SOPInstanceUID}

    # The image library: one group describing the series once, one entry per source image.
    (library,) = [item for path, item in _items(ds) if path[-1] == "Image Library Group"]
    entries = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in library.ContentSequence
               if i.ValueType == "IMAGE"]
    assert sorted(entries) == sorted(s.SOPInstanceUID for s in sources)
    shared = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in library.ContentSequence if i.ValueType != "IMAGE"}
    assert shared["Modality"].ConceptCodeSequence[0].CodeValue == "MR"
    assert shared["Frame of Reference UID"].UID == sources[0].FrameOfReferenceUID
    assert not any(name.startswith("Image Position") for name in shared)  # per image: in the images themselves

    groups = _groups(ds)
    verdict = groups["Scan verdict"]
    assert verdict["Tamper detector verdict"] == "FAKE_ADDED"
    assert "Radiologist's verdict" not in verdict
    assert verdict["DICOM header checks"] == "HDR_CONSISTENT"
    assert {k: v for k, v in verdict.items() if k.startswith("Probability of")} == {
        "Probability of Real tumor": 0.05, "Probability of No tumor": 0.12, "Probability of Fake added": 0.71,
        "Probability of Fake removed": 0.12}
    assert verdict["Tamper score"] == pytest.approx(job.tamper_score)
    # the scan rule that turned the slices into this verdict (this stored analysis had none: the max rule)
    items = [i for path, i in _items(ds) if path[-1] == "Algorithm Parameters"]
    assert items and {i.TextValue for i in items} == {"scan rule: max"}

    # One group per kind of region, each pointing at its segment of the SEG; the volume from the stored masks.
    labels = {r.index: read_png(r.mask) for r in job.slice_results.all() if r.mask}
    spacing = [float(v) for v in sources[0].PixelSpacing]
    voxel = spacing[0] * spacing[1] * float(sources[0].SpacingBetweenSlices)
    expected = {"Injected tumor regions": (2, 0.91), "Erased tumor regions": (3, 0.77), "Real tumor regions": (1, 0.55)}
    assert set(groups) == {"Scan verdict", *expected}
    for name, (number, score) in expected.items():
        group = groups[name]
        assert group["Referenced Segment"] == (seg.SOPInstanceUID, number)
        pixels = sum(int((m == number).sum()) for m in labels.values())
        assert pixels > 0 and group["Volume"] == pytest.approx(pixels * voxel, abs=0.01)
        assert group["Number of slices with such a region"] == 1
        assert group["Highest detector score of the regions"] == pytest.approx(score)
    # The SR tracks each kind of region with the Tracking UID its segment has in the SEG.
    tracking = {s.SegmentNumber: s.TrackingUID for s in seg.SegmentSequence}
    assert {groups[n]["Tracking Unique Identifier"] for n in expected} == {tracking[n] for n, _ in expected.values()}

    event = AuditEvent.objects.get(action=actions.REPORT_SR_DOWNLOADED)
    assert (event.actor_username, event.object_id) == ("doctor_a", str(scan.pk))
    assert event.details["sha256"] == hashlib.sha256(content).hexdigest()
    assert event.details["seg_sop_instance_uid"] == seg.SOPInstanceUID and event.details["review_id"] is None

    # an analysis under a scan rule names it
    job.scan_rule = {"threshold": 0.96, "min_slices": 1, "slope": 1.04, "chosen_on": "val"}
    job.save(update_fields=["scan_rule"])
    ruled = pydicom.dcmread(io.BytesIO(_download(client_a, scan.pk)))
    assert {i.TextValue for path, i in _items(ruled) if path[-1] == "Algorithm Parameters"} == {
        "scan rule: threshold 0.96; slice 1; slope 1.04"}


def test_the_same_analysis_gives_the_same_uids_and_a_review_a_new_verified_sr(client_a, scored_scan, doctor_a):
    from reviews.services import review_record

    scan = scored_scan.scan
    first = pydicom.dcmread(io.BytesIO(_download(client_a, scan.pk)))
    again = pydicom.dcmread(io.BytesIO(_download(client_a, scan.pk)))
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (again.SOPInstanceUID, again.SeriesInstanceUID)
    seg_uids = {pydicom.dcmread(io.BytesIO(_download(client_a, scan.pk, "reports:scan_seg"))).SOPInstanceUID
                for _ in range(2)}
    assert len(seg_uids) == 1

    doctor_a.first_name, doctor_a.last_name = "Ada", "Moreau"
    doctor_a.save()
    review_record(scan=scan, job_id=scored_scan.job.pk, verdict="real_tumor", note="Enhancing rim, not a splice.",
                  reviewer=doctor_a)
    reviewed = pydicom.dcmread(io.BytesIO(_download(client_a, scan.pk)))
    assert reviewed.SeriesInstanceUID == first.SeriesInstanceUID and reviewed.SOPInstanceUID != first.SOPInstanceUID
    assert (reviewed.VerificationFlag, reviewed.PreliminaryFlag) == ("VERIFIED", "FINAL")
    assert str(reviewed.VerifyingObserverSequence[0].VerifyingObserverName) == "Moreau^Ada"
    verdict = _groups(reviewed)["Scan verdict"]
    assert (verdict["Tamper detector verdict"], verdict["Radiologist's verdict"]) == ("FAKE_ADDED", "REAL_TUMOR")
    observers = {path[-1]: str(item.get("PersonName") or item.get("TextValue")) for path, item in _items(reviewed)
                 if path[-1] in ("Person Observer Name", "Device Observer Name")}
    assert observers == {"Person Observer Name": "Moreau^Ada", "Device Observer Name": scored_scan.job.model_name}
    assert _groups(reviewed)["Injected tumor regions"]["Referenced Segment"][0] in seg_uids  # still that SEG
    # It replaces the unreviewed SR, and a later review's SR replaces it in turn.
    assert "PredecessorDocumentsSequence" not in first

    def predecessor(ds):
        (study,) = ds.PredecessorDocumentsSequence
        (series,) = study.ReferencedSeriesSequence
        assert (study.StudyInstanceUID, series.SeriesInstanceUID) == (first.StudyInstanceUID, first.SeriesInstanceUID)
        return series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID

    assert predecessor(reviewed) == first.SOPInstanceUID
    review_record(scan=scan, job_id=scored_scan.job.pk, verdict="fake_added", reviewer=doctor_a)
    second = pydicom.dcmread(io.BytesIO(_download(client_a, scan.pk)))
    assert second.SOPInstanceUID not in (first.SOPInstanceUID, reviewed.SOPInstanceUID)
    assert predecessor(second) == reviewed.SOPInstanceUID


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_the_sr_passes_dciodvfy_without_errors(client_a, scored_scan, tmp_path):
    path = tmp_path / "sr.dcm"
    path.write_bytes(_download(client_a, scored_scan.scan.pk))
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    assert "Comprehensive3DSR" in output  # it recognised the IOD
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert errors == [], output


def test_orthanc_files_the_sr_and_its_seg_in_the_source_study(client_a, scored_scan, tmp_path):
    sr = _download(client_a, scored_scan.scan.pk)
    seg = _download(client_a, scored_scan.scan.pk, "reports:scan_seg")
    with running_orthanc(tmp_path) as server:
        orthanc = server["http"]
        sources = [post_instance(orthanc, p.read_bytes()) for p in brainix_paths(SOURCE_INDICES)]
        answers = [post_instance(orthanc, seg), post_instance(orthanc, sr)]
        assert [a["Status"] for a in answers] == ["Success", "Success"]
        assert {a["ParentStudy"] for a in answers} == {sources[0]["ParentStudy"]}
        assert get_json(orthanc, f"/series/{answers[1]['ParentSeries']}")["MainDicomTags"]["Modality"] == "SR"
        assert post_instance(orthanc, sr)["Status"] == "AlreadyStored"  # the same analysis: the same instance


def test_no_sr_for_a_non_dicom_scan_and_none_of_another_doctors(client_a, client_b, doctor_a, scored_scan):
    png = check_dicom_export_access(client_a=client_a, client_b=client_b, doctor_a=doctor_a, scan=scored_scan.scan,
                                    page="reports:scan_sr", api="api-scan-report-sr", modality="SR",
                                    action=actions.REPORT_SR_DOWNLOADED)
    page = client_a.get(reverse("scans:detail", args=[scored_scan.scan.pk])).content.decode()
    assert f'href="{reverse("reports:scan_sr", args=[scored_scan.scan.pk])}"' in page
    assert "Structured report" not in client_a.get(reverse("scans:detail", args=[png.pk])).content.decode()

def test_pixels_another_copy_holds_otherwise_are_in_a_new_sr_that_replaces_the_plain_one(client_a, scored_scan,
                                                                                         doctor_a, tmp_path):
    """Another stored copy of the scan with a square painted into one image: the SR gains a planar group for that
    slice (its box on the source image, how many pixels differ, local), under a new UID that names the SR without
    it as its predecessor; dciodvfy still finds no error."""
    from scans.models import DicomInstance
    from scans.services import scan_upload
    from tests.scans.scanfiles import brainix_flair_upload

    scan = scored_scan.scan
    plain = pydicom.dcmread(io.BytesIO(_download(client_a, scan.pk)))
    assert not [g for g in _groups(plain) if g.startswith("Slice ")]
    copy = scan_upload(user=doctor_a, files=brainix_flair_upload(SOURCE_INDICES, paint=1)).scan
    painted = pydicom.dcmread(brainix_paths(SOURCE_INDICES)[1], stop_before_pixels=True).SOPInstanceUID
    index = DicomInstance.objects.get(scan=scan, sop_instance_uid=painted).first_slice

    data = _download(client_a, scan.pk)
    sr = pydicom.dcmread(io.BytesIO(data))
    group = _groups(sr)[f"Slice {index + 1}: other pixels than stored scan #{copy.pk}"]
    assert (group["Finding"], group["Number of pixels that differ"], group["Extent of the change"],
            group["Copy compared with"]) == ("CHANGED_PIXELS", 400.0, "CHANGE_LOCAL", "STORED_COPY")
    region = next(item for path, item in _items(sr) if path[-1] == "Image Region")
    assert region.GraphicType == "POLYLINE"
    assert [float(v) for v in region.GraphicData] == [100, 100, 120, 100, 120, 120, 100, 120, 100, 100]
    assert region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == painted
    assert sr.SOPInstanceUID != plain.SOPInstanceUID and sr.SeriesInstanceUID == plain.SeriesInstanceUID
    (study,) = sr.PredecessorDocumentsSequence
    assert study.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == plain.SOPInstanceUID
    assert pydicom.dcmread(io.BytesIO(_download(client_a, scan.pk))).SOPInstanceUID == sr.SOPInstanceUID  # stable
    if shutil.which("dciodvfy"):
        path = tmp_path / "sr.dcm"
        path.write_bytes(data)
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], run.stdout + run.stderr


def test_person_names_are_dicom_person_names():
    from types import SimpleNamespace

    from reports.sr import _person_name

    def user(username, first="", last=""):
        return SimpleNamespace(first_name=first, last_name=last, get_username=lambda: username)

    assert _person_name(user("doctor_a", "Ada", "Moreau")) == "Moreau^Ada"
    assert _person_name(user("doctor_a")) == "doctor_a^"  # the login, as a one-component name, said so
    assert _person_name(user("x", "Jo=Ann", "de^la\\Cruz")) == "de la Cruz^Jo Ann"  # no stray separators
    assert _person_name(None) == "Unknown^"
