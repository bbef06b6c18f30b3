"""Fixtures for reviews: doctor_a's real 3-slice BRAINIX DICOM scan with a stored analysis (scan verdict
fake_added), as the worker stores one (tests.reports.conftest.store_analysis)."""
import pytest

from tests.reports.conftest import disk, store_analysis, upload_dicom  # noqa: F401  (upload_dicom: a fixture)


@pytest.fixture
def analysed(doctor_a, upload_dicom):
    scan = upload_dicom(doctor_a)
    shape = (scan.height, scan.width)
    regions = {1: [("fake_added", 0.91, disk(shape, (shape[0] // 3, shape[1] // 2), 14))]}
    return store_analysis(scan, verdicts={0: "no_tumor", 1: "fake_added", 2: "no_tumor"}, regions=regions,
                          scan_verdict="fake_added")
