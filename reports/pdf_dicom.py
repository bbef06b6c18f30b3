"""The PDF report as a DICOM Encapsulated PDF, filed under the source study, so that a PACS keeps the tamper check
beside the images it concerns (a new series, modality DOC, in the same study and for the same patient).

The patient and study attributes are copied from the uploaded originals (the portal itself never stores them);
the document references every source instance (Source Instance Sequence) and carries the detector's verdict in
its title. Its UIDs derive from the analysis, its review and the pixel evidence of altered copies (reports.dicom_ids,
reports.sr.evidence_key): sent twice, it is filed once; sent again with new evidence, it is a new document.
Checked by dciodvfy and by a real Orthanc in tests/reports/test_pdf_dicom.py.
"""
from __future__ import annotations

import io

import pydicom
from django.utils import timezone
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, EncapsulatedPDFStorage

from reports.dicom_ids import analysis_uid, review_key

from inference.models import verdict_label
from reports.seg import source_datasets
from reports.sr import evidence_key, report_evidence

# What the PACS files the report under: copied from the source when present (type 2: empty when absent).
PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                 "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
OPTIONAL_COPIED = ("IssuerOfPatientID", "PatientAge", "StudyDescription", "SpecificCharacterSet")
SERIES_NUMBER_OFFSET = 2000  # the SEG takes source + 1000


def report_pdf_dicom(report, pdf: bytes, sources: list[Dataset] | None = None) -> bytes:
    """``pdf`` (the scan's PDF report) wrapped as an Encapsulated PDF instance in the source study; ``sources``:
    the scan's original instances (``reports.seg.source_datasets``, read here when not given), which raises
    DicomExportUnavailable for a scan that is not a DICOM upload."""
    scan, job = report.scan, report.job
    sources = sources if sources is not None else source_datasets(scan)
    first = sources[0]
    now = timezone.localtime()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    series_uid = first.SeriesInstanceUID
    # like the SR: pixel evidence found after the analysis (its warnings are in the PDF) makes a new document, so
    # that a PACS which keeps the first instance of a UID still gets the report that names it
    evidence = evidence_key(report_evidence(report))
    meta.MediaStorageSOPInstanceUID = analysis_uid(job, series_uid, "report", "instance", review_key(report.review),
                                                   *([evidence] if evidence else []))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    for keyword in PATIENT_STUDY:
        setattr(ds, keyword, first.get(keyword, ""))
    for keyword in OPTIONAL_COPIED:
        if first.get(keyword):
            setattr(ds, keyword, first.get(keyword))
    # Encapsulated Document Series and General Equipment
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = analysis_uid(job, series_uid, "report", "series")
    ds.SeriesNumber = int(first.get("SeriesNumber") or 0) + SERIES_NUMBER_OFFSET
    ds.SeriesDescription = f"Tamper check report: {verdict_label(job.verdict)}"[:64]
    ds.Manufacturer = "MRI tamper check portal"
    ds.ManufacturerModelName = "Tamper detector"
    ds.SoftwareVersions = (job.model_version or "unknown")[:64]
    ds.ConversionType = "WSD"  # SC Equipment: a workstation made it
    # Encapsulated Document
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "NO"  # the report names the scan and the uploader, never the patient
    ds.DocumentTitle = (f"MRI tamper check of scan {scan.pk}: {verdict_label(job.verdict)} "
                        f"({job.model_name} {job.model_version})")[:1024]
    ds.ConceptNameCodeSequence = []
    ds.SourceInstanceSequence = []
    for source in sources:
        item = Dataset()
        item.ReferencedSOPClassUID = source.SOPClassUID
        item.ReferencedSOPInstanceUID = source.SOPInstanceUID
        ds.SourceInstanceSequence.append(item)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")  # OB: even length, padded with a NUL
    ds.EncapsulatedDocumentLength = len(pdf)
    # SOP Common
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime

    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
