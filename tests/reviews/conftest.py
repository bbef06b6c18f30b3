"""Fixtures for reviews: doctor_a's real 3-slice BRAINIX DICOM scan with a stored analysis (scan verdict
fake_added), as the worker stores one (tests.reports.conftest.store_analysis)."""
import pytest

from tests.reports.conftest import brainix_paths, disk, store_analysis  # noqa: F401


@pytest.fixture
def upload_dicom():
    from django.core.files.uploadedfile import SimpleUploadedFile

    from scans.services import scan_upload

    def upload(user, indices=(9, 10, 11)):
        files = [SimpleUploadedFile(p.name, p.read_bytes(), content_type="application/dicom")
                 for p in brainix_paths(indices)]
        return scan_upload(user=user, files=files).scan

    return upload


@pytest.fixture
def analysed(doctor_a, upload_dicom):
    scan = upload_dicom(doctor_a)
    shape = (scan.height, scan.width)
    regions = {1: [("fake_added", 0.91, disk(shape, (shape[0] // 3, shape[1] // 2), 14))]}
    return store_analysis(scan, verdicts={0: "no_tumor", 1: "fake_added", 2: "no_tumor"}, regions=regions,
                          scan_verdict="fake_added")
