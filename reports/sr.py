"""The analysis as a DICOM Structured Report (Comprehensive 3D SR, TID 1500 "Imaging Measurement Report", made
with highdicom), so that a PACS, a reporting system or a research pipeline reads the verdict as coded data
instead of a picture of text.

What it holds, in the source study and for the source patient (copied from the uploaded originals):
- the observer: the detector (a device: model name, version, the first 16 hex digits of its weights' SHA-256),
  and the radiologist when the analysis was reviewed (the report is then marked verified and final, with the
  radiologist as verifying observer);
- one "scan verdict" group: the detector's verdict (coded), the probability of each of the four verdicts, the
  tamper score, the radiologist's verdict when there is one, and the DICOM header checks' outcome;
- one group per kind of region the detector marked (real tumor, injected tumor, erased tumor), referencing that
  segment of the analysis' DICOM SEG, with the number of slices it spans, its volume in mm³ (when the source gives
  the pixel and slice spacing) and the detector's highest score for such a region;
- one planar group per slice whose image another copy holds with other pixels (the PACS's, at its latest
  comparison, or another stored scan's; scans.selectors.SliceChange): the box of the changed pixels on that source
  image (a closed polyline), how many differ and by how much, local or spread, and which copy. That evidence can
  come after the analysis: an SR with it has its own UID (evidence_key), which names the SR of the same analysis
  and review without it as its predecessor.

Its UIDs derive from the analysis and its review (reports.dicom_ids): it references the very SEG the portal makes
for the same analysis (reports.seg), and a new review makes a new SR instance in the same series, which names the
one it replaces (the unreviewed report, or the one of the review it superseded) as its predecessor.
Checked by dciodvfy and by a real Orthanc in tests/reports/test_sr.py.
"""
from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
from django.utils import timezone
from pydicom.sr.codedict import codes

from inference.ml.labels import CATEGORIES, VERDICTS
from inference.models import scan_rule_brief, verdict_label
from reports.dicom_ids import analysis_uid, review_key
from reports.seg import (CODING_SCHEMES, PRIVATE_SCHEME, SEGMENT_TEXT, dataset_bytes, label_volume, scan_seg,
                         segment_tracking_uid, source_datasets)

SERIES_NUMBER_OFFSET = 3000  # SEG: source + 1000; report (Encapsulated PDF): + 2000
MANUFACTURER = "MRI tamper check portal"


def _code(value: str, meaning: str) -> hd.sr.CodedConcept:
    assert len(value) <= 16, value  # a Code Value (SH); longer ones would go to Long Code Value, which few read
    return hd.sr.CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning[:64])


VERDICT_CODES = {v: _code(v.upper(), verdict_label(v)) for v in VERDICTS}
TAMPER_CHECK = _code("TAMPERCHECK", "MRI tampering check")
DETECTOR_VERDICT = _code("DETECTOR_VERDICT", "Tamper detector verdict")
RADIOLOGIST_VERDICT = _code("REVIEW_VERDICT", "Radiologist's verdict")
TAMPER_SCORE = _code("TAMPER_SCORE", "Tamper score")
MAX_REGION_SCORE = _code("MAX_REGION_SCORE", "Highest detector score of the regions")
SLICES_WITH_REGION = _code("REGION_SLICES", "Number of slices with such a region")
HEADER_CHECKS = _code("HEADER_CHECKS", "DICOM header checks")
HEADER_STATUS_CODES = {
    "consistent": _code("HDR_CONSISTENT", "Headers consistent"),
    "single": _code("HDR_SINGLE", "Single file, nothing to compare"),
    "notices": _code("HDR_NOTICES", "Headers consistent, with notices"),
    "warnings": _code("HDR_WARNINGS", "Header warnings"),
    "error": _code("HDR_ERROR", "Headers could not be checked"),
}
SLICES_UNIT = hd.sr.CodedConcept(value="{slices}", scheme_designator="UCUM", meaning="slices")
# Where another copy of an image holds other pixel values (scans.selectors.SliceChange): pixel evidence of an edit
# that does not come from the detector.
CHANGED_PIXELS = _code("CHANGED_PIXELS", "Pixels that differ from another copy of the image")
CHANGED_PIXEL_COUNT = _code("CHANGED_COUNT", "Number of pixels that differ")
MAX_DIFFERENCE = _code("MAX_DIFFERENCE", "Largest difference of a pixel value")
CHANGE_EXTENT = _code("CHANGE_EXTENT", "Extent of the change")
CHANGE_EXTENTS = {False: _code("CHANGE_LOCAL", "Local: an edit in one place"),
                  True: _code("CHANGE_SPREAD", "Spread over the image")}
OTHER_COPY = _code("OTHER_COPY", "Copy compared with")
PIXELS_UNIT = hd.sr.CodedConcept(value="{pixels}", scheme_designator="UCUM", meaning="pixels")


def probability_code(verdict: str) -> hd.sr.CodedConcept:
    return _code(f"P_{verdict.upper()}", f"Probability of {verdict_label(verdict)}")


def _pn_component(text: str) -> str:
    """One component of a DICOM PN: ``^`` and ``=`` separate components and groups, ``\\`` values; none may
    come from a user's name."""
    return "".join(" " if ch in "^=\\" else ch for ch in str(text)).strip()


def _person_name(user) -> str:
    """DICOM PN (Family^Given) of a portal user: their name when the account has one, else the login as the family
    name (``doctor_a^``: one component, said as such, not a name a reader must guess the parts of)."""
    if user is None:
        return "Unknown^"
    if user.last_name or user.first_name:
        return f"{_pn_component(user.last_name)}^{_pn_component(user.first_name)}"
    return f"{_pn_component(user.get_username())}^"


def _spacing_mm3(source: pydicom.Dataset) -> float | None:
    """The volume of one voxel in mm³, from Pixel Spacing and Spacing Between Slices (else Slice Thickness); None
    when the source does not say."""
    try:
        row, col = (float(v) for v in source.PixelSpacing)
        depth = abs(float(source.get("SpacingBetweenSlices") or source.get("SliceThickness")))  # some write it < 0
    except (AttributeError, TypeError, ValueError):
        return None
    return row * col * depth if row > 0 and col > 0 and depth > 0 else None


def _verdict_group(report, algorithm, tracking_uid: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    job, scan = report.job, report.scan
    evaluations = [hd.sr.QualitativeEvaluation(DETECTOR_VERDICT, VERDICT_CODES[job.verdict])]
    if report.review is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(RADIOLOGIST_VERDICT, VERDICT_CODES[report.review.verdict]))
    status = ((scan.metadata or {}).get("header_checks") or {}).get("status")
    if status in HEADER_STATUS_CODES:
        evaluations.append(hd.sr.QualitativeEvaluation(HEADER_CHECKS, HEADER_STATUS_CODES[status]))
    measurements = [
        hd.sr.Measurement(name=probability_code(v), value=float(job.scores[v]), unit=codes.UCUM.NoUnits,
                          algorithm_id=algorithm)
        for v in VERDICTS if v in (job.scores or {})
    ]
    if job.tamper_score is not None:
        measurements.append(hd.sr.Measurement(name=TAMPER_SCORE, value=float(job.tamper_score),
                                              unit=codes.UCUM.NoUnits, algorithm_id=algorithm))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier="Scan verdict"),
        finding_type=TAMPER_CHECK,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )


def _region_groups(report, seg: hd.seg.Segmentation, sources, algorithm) -> list:
    labels = label_volume(report, (int(sources[0].Rows), int(sources[0].Columns)))
    voxel_mm3 = _spacing_mm3(sources[0])
    best_score: dict[str, float] = {}
    for result in report.results:
        for instance in result.instances.all():
            best_score[instance.label] = max(best_score.get(instance.label, 0.0), float(instance.score))
    series_uid = sources[0].SeriesInstanceUID
    groups = []
    for number, name in sorted(CATEGORIES.items()):
        present = labels == number
        if not present.any():
            continue
        measurements = [hd.sr.Measurement(name=SLICES_WITH_REGION, value=int(present.any(axis=(1, 2)).sum()),
                                          unit=SLICES_UNIT)]
        if voxel_mm3 is not None:
            measurements.append(hd.sr.Measurement(name=codes.SCT.Volume, value=round(float(present.sum()) * voxel_mm3, 2),
                                                  unit=codes.UCUM.CubicMillimeter, algorithm_id=algorithm))
        if name in best_score:
            measurements.append(hd.sr.Measurement(name=MAX_REGION_SCORE, value=best_score[name],
                                                  unit=codes.UCUM.NoUnits, algorithm_id=algorithm))
        description = next(d for d in seg.SegmentSequence if d.SegmentNumber == number)
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=segment_tracking_uid(report.job, series_uid, name),
                                                         identifier=f"{SEGMENT_TEXT[name][0]} regions"),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
                source_series=hd.sr.SourceSeriesForSegmentation(series_uid)),
            finding_type=hd.sr.CodedConcept.from_dataset(description.SegmentedPropertyTypeCodeSequence[0]),
            finding_category=hd.sr.CodedConcept.from_dataset(description.SegmentedPropertyCategoryCodeSequence[0]),
            finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
            algorithm_id=algorithm,
            measurements=measurements,
        ))
    return groups


def report_evidence(report) -> list:
    """The slices another copy of the scan's images holds with other pixels (its latest comparison with the PACS,
    the other stored copies): scans.selectors.SliceChange, with a box."""
    from scans.selectors import scan_slice_changes

    return [c for c in scan_slice_changes(scan=report.scan, user=report.scan.owner) if c.region.get("box")]


def evidence_key(changes: list) -> str | None:
    """What tells apart the states of that evidence, for the SR's UID (None: no evidence, the UID as before)."""
    if not changes:
        return None
    import hashlib
    import json

    facts = sorted([c.copy_id or 0, c.index, c.region.get("box"), c.region.get("pixels")] for c in changes)
    return "evidence-" + hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


def _evidence_groups(report, changes: list, sources: list[pydicom.Dataset], series_uid: str) -> list:
    """One planar group per changed slice: its box on the source image (a closed polyline, in pixel columns and rows),
    how many pixels differ and by how much, local or spread, and which copy it was compared with."""
    frames = []  # slice index -> (dataset, frame number or None)
    for ds in sources:
        n = int(ds.get("NumberOfFrames") or 1)
        frames += [(ds, k + 1 if n > 1 else None) for k in range(n)]
    groups = []
    for change in changes:
        if change.index >= len(frames):
            continue
        ds, frame = frames[change.index]
        x, y, w, h = change.region["box"]
        corners = [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]
        measurements = []
        if change.region.get("pixels") is not None:
            measurements.append(hd.sr.Measurement(name=CHANGED_PIXEL_COUNT, value=int(change.region["pixels"]),
                                                  unit=PIXELS_UNIT))
        if change.region.get("max_difference") is not None:
            measurements.append(hd.sr.Measurement(name=MAX_DIFFERENCE, value=float(change.region["max_difference"]),
                                                  unit=codes.UCUM.NoUnits))
        source = "the PACS's copy" if change.copy_id is None else f"stored scan #{change.copy_id}"
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=analysis_uid(report.job, series_uid, "sr", "change", change.copy_id or 0, change.index),
                identifier=f"Slice {change.index + 1}: other pixels than {source}"[:64]),
            referenced_region=hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=np.array(corners, dtype=float),
                source_image=hd.sr.SourceImageForRegion(
                    referenced_sop_class_uid=ds.SOPClassUID, referenced_sop_instance_uid=ds.SOPInstanceUID,
                    referenced_frame_numbers=[frame] if frame else None)),
            finding_type=CHANGED_PIXELS,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
            measurements=measurements,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(CHANGE_EXTENT, CHANGE_EXTENTS[bool(change.region.get("spread"))]),
                hd.sr.QualitativeEvaluation(OTHER_COPY, _code("PACS" if change.copy_id is None else "STORED_COPY",
                                                             source))],
        ))
    return groups


POSITION = "Image Position (Patient)"


def _image_library(sources: list[pydicom.Dataset]) -> hd.sr.ContainerContentItem:
    """TID 1600: the source images in one Image Library Group, with the descriptors they share (modality, frame of
    reference, matrix, pixel spacing, slice thickness, orientation: those of the first image, less its position)
    and one IMAGE entry (TID 1601) per image."""
    shared = [item for item in hd.sr.ImageLibraryEntryDescriptors(sources[0])
              if not item.ConceptNameCodeSequence[0].CodeMeaning.startswith(POSITION)]
    entries = [hd.sr.ImageContentItem(name=hd.sr.CodedConcept(value="260753009", scheme_designator="SCT",
                                                              meaning="Source"),
                                      referenced_sop_class_uid=ds.SOPClassUID,
                                      referenced_sop_instance_uid=ds.SOPInstanceUID,
                                      relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
               for ds in sources]
    group = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibraryGroup,
                                       relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    group.ContentSequence = hd.sr.ContentSequence([*shared, *entries])
    library = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibrary,
                                         relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library


def _predecessor(report, study_uid: str, series_uid: str, sr_series_uid: str,
                 evidence: str | None = None) -> list[pydicom.Dataset] | None:
    """The SR this one replaces (Predecessor Documents Sequence): with evidence from other copies (``evidence``:
    evidence_key), the SR of the same analysis and review without it; else, for a reviewed analysis, the SR of the
    state before this review (the superseded review's, or the unreviewed one); None for an unreviewed analysis
    without such evidence."""
    from reviews.selectors import review_superseded_by

    if evidence is not None:
        state = review_key(report.review)
    elif report.review is not None:
        state = review_key(review_superseded_by(report.review))
    else:
        return None
    earlier = pydicom.Dataset()
    earlier.SOPClassUID = pydicom.uid.Comprehensive3DSRStorage
    earlier.SOPInstanceUID = analysis_uid(report.job, series_uid, "sr", "instance", state)
    earlier.StudyInstanceUID, earlier.SeriesInstanceUID = study_uid, sr_series_uid
    return [earlier]


def scan_sr(report, sources: list[pydicom.Dataset] | None = None,
            seg: hd.seg.Segmentation | None = None) -> hd.sr.Comprehensive3DSR:
    """``sources``: the scan's originals (reports.seg.source_datasets), read here when not given (which raises
    DicomExportUnavailable for a scan that is not a DICOM upload); ``seg``: the analysis' SEG, made here when not
    given."""
    job, review = report.job, report.review
    sources = sources if sources is not None else source_datasets(report.scan)
    seg = seg if seg is not None else scan_seg(report, sources)
    changes = report_evidence(report)
    evidence = evidence_key(changes)
    series_uid = sources[0].SeriesInstanceUID
    version = (job.model_version or "unknown")[:64]
    # the scan rule that turned the slices into the scan's verdict (Algorithm Parameters, LO: 64 characters each)
    algorithm = hd.sr.AlgorithmIdentification(name=(job.model_name or "tamper detector")[:64], version=version,
                                              family=codes.cid7162.ArtificialIntelligence,
                                              parameters=[f"scan rule: {scan_rule_brief(job) or 'max'}"[:64]])
    device = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=pydicom.uid.generate_uid(entropy_srcs=["mri-tamper-detector", job.model_sha256 or version]),
            name=(job.model_name or "tamper detector")[:64], manufacturer_name=MANUFACTURER,
            model_name=version, serial_number=(job.model_sha256 or "unknown")[:16]))
    person = None
    if review is not None:
        person = hd.sr.ObserverContext(
            observer_type=codes.cid270.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=_person_name(review.reviewer), login_name=review.reviewer.get_username()))
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device),
        procedure_reported=[codes.cid100.MRIUnspecifiedBodyRegion, TAMPER_CHECK],
        imaging_measurements=[_verdict_group(report, algorithm, analysis_uid(job, series_uid, "sr", "verdict")),
                              *_region_groups(report, seg, sources, algorithm),
                              *_evidence_groups(report, changes, sources, series_uid)],
    )
    # The image library (TID 1600) before the measurements: one group whose shared descriptors say what the
    # series is, and a bare entry per image (highdicom's own library describes every image at length, which costs
    # about 50 ms a slice).
    items = content[0].ContentSequence
    at = next(i for i, item in enumerate(items) if item.ConceptNameCodeSequence[0].CodeValue
              == codes.DCM.ImagingMeasurements.value)
    items.insert(at, _image_library(sources))
    verified = review is not None
    sr_series_uid = analysis_uid(job, series_uid, "sr", "series")
    moment = timezone.localtime(review.created_at if verified else job.finished_at or job.created_at)
    return hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg],
        content=content[0],
        series_instance_uid=sr_series_uid,
        series_number=int(sources[0].get("SeriesNumber") or 0) + SERIES_NUMBER_OFFSET,
        sop_instance_uid=analysis_uid(job, series_uid, "sr", "instance", review_key(review),
                                      *([evidence] if evidence else [])),
        instance_number=1 + (review.pk if verified else 0),
        manufacturer=MANUFACTURER,
        is_complete=True,
        previous_versions=_predecessor(report, str(sources[0].StudyInstanceUID), series_uid, sr_series_uid,
                                       evidence),
        is_final=verified,
        is_verified=verified,
        verifying_observer_name=_person_name(review.reviewer) if verified else None,
        verifying_organization=MANUFACTURER if verified else None,
        coding_schemes=CODING_SCHEMES,
        series_description=f"Tamper check SR: {verdict_label(job.verdict)}"[:64],
        content_date=moment.date(),
        content_time=moment.time(),
    )


def scan_sr_bytes(report, sources: list[pydicom.Dataset] | None = None,
                  seg: hd.seg.Segmentation | None = None) -> bytes:
    return dataset_bytes(scan_sr(report, sources, seg))
