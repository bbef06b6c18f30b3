"""UIDs of the DICOM objects the portal makes for an analysis, derived from what they stand for rather than drawn
at random, so that the same analysis always gives the same SEG (and, in the same state of its review, the same
structured report and DICOM report):
a structured report downloaded today still points at the SEG the PACS received yesterday, and sending a scan
twice replaces the objects in the PACS instead of filing copies beside them.

The source series' UID (unique in the world) and the job's id and creation time (unique in this portal) make
the UIDs unique; pydicom hashes them (SHA-512) into its UID root.
"""
from __future__ import annotations

from pydicom.uid import generate_uid


def review_key(review) -> str:
    """What tells apart the states of an analysis' review, for the UIDs of the objects that show it."""
    return f"review-{review.pk}" if review is not None else "unreviewed"


def analysis_uid(job, source_series_uid: str, *what: object) -> str:
    """The UID of the object ``what`` (e.g. ("seg", "instance")) made for ``job`` from the series
    ``source_series_uid``."""
    created = job.created_at.isoformat() if job.created_at else ""
    return generate_uid(entropy_srcs=["mri-tamper-portal", str(source_series_uid), str(job.pk), created,
                                      job.model_sha256 or "", *(str(w) for w in what)])
