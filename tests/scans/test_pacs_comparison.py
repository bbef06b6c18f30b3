"""Compare a scan with the PACS's copy of its series: a real Orthanc holds the BRAINIX slices; the portal retrieves
them (C-GET) and compares each instance's pixels with the stored originals. The same series matches; a copy with one
image altered is caught at that slice; a scan of which the PACS holds only part, or nothing, is told so; the outcome
is kept, shown and audited, and nothing from the PACS is stored."""
import io

import pydicom
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from audit import actions
from audit.models import AuditEvent
from scans.models import Scan
from scans.services import scan_upload
from tests.reports.conftest import brainix_paths
from tests.reports.orthanc import free_port, post_instance, running_orthanc

INDICES = (9, 10, 11)


def _files(paint: int | None = None) -> list[ContentFile]:
    files = []
    for position, path in enumerate(brainix_paths(INDICES)):
        ds = pydicom.dcmread(path)
        if position == paint:
            pixels = ds.pixel_array.copy()
            pixels[100:120, 100:120] = pixels.max()
            ds.PixelData = pixels.tobytes()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(ContentFile(buffer.getvalue(), name=path.name))
    return files


@pytest.fixture
def pacs(tmp_path, settings):
    with running_orthanc(tmp_path, dicom=True) as server:
        for path in brainix_paths(INDICES[:2]):  # the PACS holds two of the three slices
            post_instance(server["http"], path.read_bytes())
        settings.PACS_DESTINATION = server["destination"]
        yield server


def test_a_scan_is_compared_with_the_pacs_copy_slice_by_slice(client_a, doctor_a, pacs):
    scan = scan_upload(user=doctor_a, files=_files()).scan
    response = client_a.post(reverse("scans:compare_pacs", args=[scan.pk]), follow=True)
    page = response.content.decode()
    scan.refresh_from_db()
    comparison = scan.metadata["pacs_comparison"]
    assert (comparison["instances"], comparison["same"], comparison["altered_slices"], comparison["extra_in_pacs"]) \
        == (3, 2, [], 0)
    missing = comparison["missing_slices"]
    assert len(missing) == 1
    assert f"2 of 3 images have the same pixels as in the PACS {pacs['destination']}." in page
    assert f"The PACS does not hold slice {missing[0] + 1} (no instance with that UID in the series)." in page
    assert "data-pacs-comparison-warning" in page and "compared " in page and " by doctor_a" in page
    assert Scan.objects.count() == 1  # nothing from the PACS was stored

    post_instance(pacs["http"], brainix_paths(INDICES)[2].read_bytes())  # now it holds the whole series
    api = client_a.post(reverse("api-scan-pacs-comparison", args=[scan.pk])).json()
    assert (api["same"], api["missing_slices"], api["altered_slices"]) == (3, [], [])
    assert api["text"] == f"All 3 images have the same pixels as in the PACS {pacs['destination']}."
    page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert "data-pacs-comparison-warning" not in page and "All 3 images have the same pixels" in page

    altered = scan_upload(user=doctor_a, files=_files(paint=1)).scan
    api = client_a.post(reverse("api-scan-pacs-comparison", args=[altered.pk])).json()
    painted = pydicom.dcmread(brainix_paths(INDICES)[1], stop_before_pixels=True).SOPInstanceUID
    index = altered.instances.get(sop_instance_uid=painted).first_slice
    assert (api["same"], api["altered_slices"]) == (2, [index])
    assert (f"Slice {index + 1} has other pixels than the PACS's copy of the same instance: one of the two was "
            "altered.") in api["text"]
    events = AuditEvent.objects.filter(action=actions.PACS_COMPARED).order_by("seq")
    assert [e.details["same"] for e in events] == [2, 3, 2] and {e.outcome for e in events} == {"success"}
    assert "PatientID" not in str(events.last().details) and events.last().object_id == str(altered.pk)


def test_no_copy_no_pacs_or_another_users_scan_is_refused_with_the_reason(client_a, client_b, doctor_a, settings,
                                                                          tmp_path):
    from tests.scans.scanfiles import SAMPLE_TIFF, uploads_from

    scan = scan_upload(user=doctor_a, files=_files()).scan
    image = scan_upload(user=doctor_a, files=uploads_from([SAMPLE_TIFF])).scan
    url = reverse("api-scan-pacs-comparison", args=[scan.pk])
    settings.PACS_DESTINATION = ""
    assert client_a.post(url).status_code == 409
    with running_orthanc(tmp_path, dicom=True) as server:  # a PACS that does not hold the series
        settings.PACS_DESTINATION = server["destination"]
        none = client_a.post(url)
        assert none.status_code == 502 and "does not hold this series" in none.json()["error"]
        assert client_a.post(reverse("api-scan-pacs-comparison", args=[image.pk])).status_code == 409
        assert client_b.post(url).status_code == 404
    settings.PACS_DESTINATION, settings.PACS_TIMEOUT_SECONDS = f"ORTHANC@127.0.0.1:{free_port()}", 3
    down = client_a.post(reverse("scans:compare_pacs", args=[scan.pk]), follow=True).content.decode()
    assert "Could not connect to the PACS" in down
    failures = AuditEvent.objects.filter(action=actions.PACS_COMPARED, outcome="failure")
    assert failures.count() == 2
    scan.refresh_from_db()
    assert "pacs_comparison" not in scan.metadata
    assert client_a.get(reverse("scans:compare_pacs", args=[scan.pk])).status_code == 405


def test_with_pacs_compare_uploads_an_upload_is_compared_by_a_worker(doctor_a, pacs, settings,
                                                                      django_capture_on_commit_callbacks):
    import uuid

    import redis
    from django.conf import settings as django_settings

    from scans.services import compare_after_upload

    post_instance(pacs["http"], brainix_paths(INDICES)[2].read_bytes())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        plain = scan_upload(user=doctor_a, files=_files()).scan
    assert len(callbacks) == 1  # the detector job only: comparing uploads is off by default

    settings.PACS_COMPARE_UPLOADS, settings.PACS_QUEUE = True, f"test-compare-{uuid.uuid4().hex}"
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            altered = scan_upload(user=doctor_a, files=_files(paint=0)).scan
        assert len(callbacks) == 2
        callbacks[-1]()  # the comparison's task, on the PACS queue
        assert broker.llen(settings.PACS_QUEUE) == 1
        assert "scans.compare_with_pacs" in broker.lindex(settings.PACS_QUEUE, 0).decode()
    finally:
        broker.delete(settings.PACS_QUEUE)
    comparison = compare_after_upload(altered.pk)  # the worker's work
    assert (comparison["by"], comparison["same"], len(comparison["altered_slices"])) == ("doctor_a", 2, 1)
    altered.refresh_from_db()
    assert altered.metadata["pacs_comparison"] == comparison
    plain.refresh_from_db()
    assert "pacs_comparison" not in plain.metadata

    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # came from the PACS: not compared
        scan_upload(user=doctor_a, files=_files(paint=2), origin={"pacs": pacs["destination"]})
    assert len(callbacks) == 1
