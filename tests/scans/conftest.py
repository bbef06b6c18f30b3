"""Fixtures of the scans tests (the files themselves: tests/scans/scanfiles.py)."""
from pathlib import Path

import pytest

from .scanfiles import BadInput


@pytest.fixture
def apply_limits(settings):
    def apply(bad: BadInput):
        for key, value in (bad.settings or {}).items():
            setattr(settings, key, value)

    return apply


@pytest.fixture
def assert_nothing_stored(settings):
    """No scan row, no stored file, no job."""

    def check():
        from inference.models import InferenceJob
        from scans.models import Scan, ScanFile, ScanSlice

        assert Scan.objects.count() == 0
        assert ScanFile.objects.count() == 0
        assert ScanSlice.objects.count() == 0
        assert InferenceJob.objects.count() == 0
        media = Path(settings.MEDIA_ROOT)
        left = [p for p in media.rglob("*") if p.is_file()] if media.exists() else []
        assert left == [], f"files left in storage: {left}"

    return check


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The users of the permission matrix are made with passwords; argon2 costs ~0.3 s each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def flair_scan_of(doctor_a):
    """A stored scan (the three sample FLAIR slices) uploaded through the service by `user`."""
    from scans.services import scan_upload

    from .scanfiles import SAMPLE_FLAIR, uploads_from

    def make(user=None):
        return scan_upload(user=user or doctor_a, files=uploads_from(SAMPLE_FLAIR)).scan

    return make
