"""Fixtures for the inference tests: real detector bundles (random weights) and real scans from BRAINIX.

Random weights give arbitrary verdicts: tests assert structure and consistency, never a specific verdict.
"""
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inference.ml.paths import shared_datasets_dir
from inference.ml.model import load_bundle, save_bundle, save_random_bundle

BRAINIX_FLAIR = shared_datasets_dir() / "brainix-dicom" / "DICOM" / "FLAIR"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The four actors are created for nearly every test; Argon2 costs seconds on a shared 2-core machine.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory) -> Path:
    """The contract's tiny random-weight bundle (its untrained calibration shows no regions)."""
    return save_random_bundle(tmp_path_factory.mktemp("weights") / "tiny.pt", backbone="tiny", seed=0)


@pytest.fixture(scope="session")
def regions_bundle(tmp_path_factory) -> Path:
    """The same random tiny model, calibrated so that it always shows regions (verdict from the image head at a
    near-zero temperature, every detection counted): exercises mask and instance storage. Not a real detector."""
    path = save_random_bundle(tmp_path_factory.mktemp("weights") / "tiny-regions.pt", backbone="tiny", seed=0)
    bundle = load_bundle(path)
    bundle["calibration"].update(temperature=1e-3, image_weight=1.0, detection_threshold=0.0)
    save_bundle(bundle, path)
    return path


@pytest.fixture
def detector(settings, random_bundle):
    settings.DETECTOR_WEIGHTS = str(random_bundle)
    settings.DETECTOR_DEVICE = "cpu"
    settings.DETECTOR_BATCH_SIZE = 2
    return random_bundle


@pytest.fixture
def detector_with_regions(settings, regions_bundle):
    settings.DETECTOR_WEIGHTS = str(regions_bundle)
    settings.DETECTOR_DEVICE = "cpu"
    settings.DETECTOR_BATCH_SIZE = 2
    return regions_bundle


def brainix_files(indices) -> list[SimpleUploadedFile]:
    """BRAINIX FLAIR DICOM files (288 x 288, 16-bit), as a browser would upload them."""
    names = sorted(p.name for p in BRAINIX_FLAIR.iterdir())
    return [
        SimpleUploadedFile(names[i], (BRAINIX_FLAIR / names[i]).read_bytes(), content_type="application/dicom")
        for i in indices
    ]


@pytest.fixture
def upload_scan():
    """Upload a real scan through the scans service (which queues its job); returns (scan, job)."""
    from scans.services import scan_upload

    def upload(user, indices=(9, 10, 11)):
        result = scan_upload(user=user, files=brainix_files(indices))
        assert result.created
        return result.scan, result.scan.jobs.get()

    return upload
