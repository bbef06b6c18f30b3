"""The detector's masks as a DICOM Segmentation (highdicom), referencing the uploaded source series, so any
PACS viewer shows them over the original images.

One SEG per analysis: a label-map style BINARY segmentation with three segments (1 real_tumor, 2 fake_added,
3 fake_removed: the COCO ids of the contract, which are also the stored label-map values), built from the
stored per-slice label maps. Frames without any region are left out (a viewer shows nothing there anyway).
Its UIDs, and each segment's Tracking UID, derive from the analysis (reports.dicom_ids): the structured report
(reports.sr) references it, and a PACS that receives it twice files it once.
"""
from __future__ import annotations

import io
from collections.abc import Callable

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from inference.ml.labels import CATEGORIES
from reports.dicom_ids import analysis_uid
from reports.overlay import read_png

# A private coding scheme (DICOM PS3.16 allows "99" prefixes) for what SNOMED has no code for.
PRIVATE_SCHEME = "99MRITAMPER"
# Declared in every object that uses it (Coding Scheme Identification Sequence).
CODING_SCHEMES = [CodingSchemeIdentificationItem(designator=PRIVATE_SCHEME, name="MRI tamper check portal codes",
                                                    responsible_organization="MRI tamper check portal")]
SEGMENT_TEXT = {
    "real_tumor": ("Real tumor", "An authentic tumor found by the detector"),
    "fake_added": ("Injected tumor", "A tumor that was added to the image (tampering)"),
    "fake_removed": ("Erased tumor", "The region where a tumor was removed from the image (tampering)"),
}


SERIES_NUMBER_OFFSET = 1000  # the SEG's series number: the source's + 1000


def segment_tracking_uid(job, source_series_uid: str, name: str) -> str:
    return analysis_uid(job, source_series_uid, "seg", "segment", name)


class DicomExportUnavailable(Exception):
    """No DICOM object can be made for this scan (not a DICOM upload, or its originals cannot be read back)."""


class SegUnavailable(DicomExportUnavailable):
    """No DICOM SEG can be made for this scan (not a DICOM upload, or its originals do not match its slices)."""


def _segment_codes(name: str) -> tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]:
    if name == "real_tumor":
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    category = hd.sr.CodedConcept(value="TAMPER", scheme_designator=PRIVATE_SCHEME, meaning="Image tampering")
    label, _ = SEGMENT_TEXT[name]
    return category, hd.sr.CodedConcept(value=name.upper(), scheme_designator=PRIVATE_SCHEME, meaning=label)


def segment_descriptions(algorithm: hd.AlgorithmIdentificationSequence,
                         tracking_uid: Callable[[str], str]) -> list[hd.seg.SegmentDescription]:
    """``tracking_uid(name)``: the Tracking UID of the segment of class ``name`` (the structured report names
    the same one)."""
    out = []
    for number, name in sorted(CATEGORIES.items()):
        category, property_type = _segment_codes(name)
        out.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=SEGMENT_TEXT[name][0],
            segmented_property_category=category,
            segmented_property_type=property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=tracking_uid(name),
            tracking_id=name,
        ))
    return out


def source_datasets(scan) -> list[pydicom.Dataset]:
    """The uploaded DICOM instances, in the scan's slice order (``imaging.order_dicom_datasets``, the order
    ``read_dicom_series`` gave the slices)."""
    from inference.ml.imaging import ImagingError, order_dicom_datasets, read_dicom_dataset
    from scans import ingest

    if scan.kind != "dicom":
        raise DicomExportUnavailable(f"A DICOM object can only be made for a DICOM upload; this scan is "
                                     f"{scan.get_kind_display()}. Download the PDF or CSV report instead.")
    blobs: list[bytes] = []
    for scan_file in scan.files.order_by("position"):
        with scan_file.file.open("rb") as fh:
            data = fh.read()
        if scan_file.original_name.lower().endswith(".zip"):
            original = ingest.Original(name=scan_file.original_name, data=data, sha256=scan_file.sha256, kind="zip")
            blobs.extend(member for _, member in ingest.expand_zip(original))
        else:
            blobs.append(data)
    try:
        datasets = order_dicom_datasets([read_dicom_dataset(io.BytesIO(b)) for b in blobs])
    except ImagingError as exc:
        raise DicomExportUnavailable(f"The stored originals cannot be read as DICOM: {exc}") from exc
    for ds in datasets:
        # The SEG copies the patient module from the source; a non-standard Patient's Sex (seen in the wild,
        # e.g. "0000") is written as unknown (empty, allowed for this type 2 attribute) rather than refused.
        if str(ds.get("PatientSex", "") or "") not in ("M", "F", "O", ""):
            ds.PatientSex = ""
    return datasets


def label_volume(report, shape: tuple[int, int]) -> np.ndarray:
    """(n_slices, h, w) uint8: the stored label map of each slice, zeros where the model showed no region."""
    volume = np.zeros((report.scan.n_slices, *shape), dtype=np.uint8)
    for result in report.results:
        if result.mask:
            labels = read_png(result.mask)
            if labels.shape != shape:
                raise SegUnavailable(f"The stored mask of slice {result.index + 1} is {labels.shape}, not {shape}.")
            volume[result.index] = labels
    return volume


def scan_seg(report, sources: list[pydicom.Dataset] | None = None) -> hd.seg.Segmentation:
    """``sources``: the scan's originals (``source_datasets``), read here when not given."""
    scan, job = report.scan, report.job
    if scan.kind != "dicom":
        raise SegUnavailable("A DICOM SEG can only be made for a DICOM upload; this scan is "
                             f"{scan.get_kind_display()}. Download the PDF or CSV report instead.")
    sources = sources if sources is not None else source_datasets(scan)
    n_frames = sum(int(getattr(ds, "NumberOfFrames", 1) or 1) for ds in sources)
    if len(sources) > 1 and n_frames != len(sources):
        raise SegUnavailable("The series mixes multi-frame instances; a DICOM SEG cannot reference it.")
    if n_frames != scan.n_slices:
        raise SegUnavailable(f"The originals hold {n_frames} frames but the scan has {scan.n_slices} slices.")
    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    labels = label_volume(report, (rows, columns))
    pixel_array = labels if labels.shape[0] > 1 else labels[0]

    algorithm = hd.AlgorithmIdentificationSequence(
        name=(job.model_name or "tamper detector")[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=(job.model_version or "unknown")[:64],
    )
    source_series_number = sources[0].get("SeriesNumber")
    series_uid = sources[0].SeriesInstanceUID
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(algorithm, lambda name: segment_tracking_uid(job, series_uid, name)),
        series_instance_uid=analysis_uid(job, series_uid, "seg", "series"),
        series_number=int(source_series_number or 0) + SERIES_NUMBER_OFFSET,
        sop_instance_uid=analysis_uid(job, series_uid, "seg", "instance"),
        instance_number=1,
        manufacturer="MRI tamper check portal",
        manufacturer_model_name="Tamper detector",
        software_versions=(job.model_version or "unknown")[:64],
        device_serial_number=(job.model_sha256 or "unknown")[:16],
        content_label="TAMPERCHECK",
        content_description=f"Tamper detector result, verdict {job.verdict}"[:64],
        series_description=f"Tamper check: {job.verdict}"[:64],
        omit_empty_frames=bool(labels.any()),
        coding_schemes=CODING_SCHEMES,
    )


def dataset_bytes(ds: pydicom.Dataset) -> bytes:
    """A highdicom object as a DICOM file (Part 10)."""
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def scan_seg_bytes(report, sources: list[pydicom.Dataset] | None = None) -> bytes:
    return dataset_bytes(scan_seg(report, sources))
