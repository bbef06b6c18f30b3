"""From upload to reports with the real worker code: a BRAINIX DICOM series is uploaded, the detector job runs
(a random-weight tiny bundle calibrated to always show regions: structure, not accuracy), and the PDF, CSV and
DICOM SEG are made from what the job stored."""
import csv
import io

import highdicom as hd
import numpy as np
import pytest
from django.urls import reverse
from pypdf import PdfReader

from inference.models import VERDICT_LABELS
from reports.overlay import read_png


@pytest.fixture(scope="module")
def regions_bundle(tmp_path_factory):
    from inference.ml.model import load_bundle, save_bundle, save_random_bundle

    path = save_random_bundle(tmp_path_factory.mktemp("weights") / "tiny-regions.pt", backbone="tiny", seed=0)
    bundle = load_bundle(path)
    bundle["calibration"].update(temperature=1e-3, image_weight=1.0, detection_threshold=0.0)
    save_bundle(bundle, path)
    return path


@pytest.mark.slow
def test_reports_of_a_real_job(client_a, doctor_a, upload_dicom, settings, regions_bundle):
    from inference.services import job_run

    settings.DETECTOR_WEIGHTS = str(regions_bundle)
    settings.DETECTOR_DEVICE = "cpu"
    scan = upload_dicom(doctor_a, indices=(8, 9, 10))
    job = job_run(job_id=scan.jobs.get().pk)
    assert job.status == "succeeded", job.error_message
    results = list(job.slice_results.order_by("index"))
    assert any(r.mask for r in results)

    pdf = client_a.get(reverse("reports:scan_pdf", args=[scan.pk]))
    assert pdf.status_code == 200
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert f"Verdict: {VERDICT_LABELS[job.verdict]}" in text and job.model_version in text

    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:scan_csv", args=[scan.pk])).content.decode())))
    assert [r["verdict"] for r in rows] == [r.verdict for r in results]

    seg_response = client_a.get(reverse("reports:scan_seg", args=[scan.pk]))
    assert seg_response.status_code == 200
    seg = hd.seg.segread(io.BytesIO(seg_response.content))
    uids = [i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    stored = np.stack([read_png(r.mask) if r.mask else np.zeros((scan.height, scan.width), np.uint8) for r in results])
    from reports.seg import source_datasets

    ordered_uids = [ds.SOPInstanceUID for ds in source_datasets(scan)]
    assert set(uids) == set(ordered_uids)
    labels = seg.get_pixels_by_source_instance(source_sop_instance_uids=ordered_uids, segment_numbers=[1, 2, 3],
                                               combine_segments=True, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(labels, stored)
