"""Job lifecycle against the real database, the real detector code (random tiny weights) and real BRAINIX DICOM."""
import uuid
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone
from PIL import Image
from pycocotools import mask as coco_mask

from inference import services
from inference.ml.labels import CATEGORY_IDS, VERDICTS
from inference.ml.predictor import ModelNotInstalled, Predictor, SlicePrediction, file_sha256, volume_verdict
from inference.models import InferenceJob, SliceResult

pytestmark = pytest.mark.django_db

Status = InferenceJob.Status


def _age_heartbeat(job, seconds=3600):
    old = timezone.now() - timedelta(seconds=seconds)
    InferenceJob.objects.filter(pk=job.pk).update(heartbeat_at=old, started_at=old)


def _job_audit_actions(job):
    from audit.models import AuditEvent

    return list(
        AuditEvent.objects.filter(object_type="inference.inferencejob", object_id=str(job.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )


def _assert_consistent_prediction(obj):
    assert set(obj.scores) == set(VERDICTS)
    assert sum(obj.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert obj.verdict == max(VERDICTS, key=lambda v: obj.scores[v])
    assert obj.confidence == pytest.approx(obj.scores[obj.verdict])
    assert obj.tamper_score == pytest.approx(obj.scores["fake_added"] + obj.scores["fake_removed"])


def test_upload_queues_one_job_and_sends_it_to_the_broker_after_commit(
    doctor_a, upload_scan, settings, django_capture_on_commit_callbacks
):
    queue = f"test-inference-{uuid.uuid4().hex}"
    settings.INFERENCE_QUEUE = queue
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            scan, job = upload_scan(doctor_a, indices=(10,))
            assert job.status == Status.QUEUED
            assert job.scan == scan and job.requested_by == doctor_a
            assert broker.llen(queue) == 0  # nothing is sent before the commit
        for callback in callbacks:
            callback()
        assert broker.llen(queue) == 1  # the real message is waiting in Redis
        job.refresh_from_db()
        assert job.celery_task_id
        assert str(job.pk) in broker.lindex(queue, 0).decode()
    finally:
        broker.delete(queue)


@pytest.fixture
def unreachable_broker():
    """Point the Celery app at a port where nothing listens (a real connection failure), then restore it."""
    from inference.tasks import run_inference_job

    app = run_inference_job.app

    def reset_pools():
        app._pool = None
        app.amqp._producer_pool = None

    original = app.conf.broker_write_url
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"  # where the app sends tasks
    reset_pools()
    yield
    app.conf.broker_write_url = original
    reset_pools()


def test_an_unreachable_broker_fails_the_job_visibly_and_keeps_the_scan(
    doctor_a, upload_scan, unreachable_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        scan, job = upload_scan(doctor_a, indices=(10,))
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error_message.startswith("The job could not be handed to the workers")
    assert job.celery_task_id == ""
    assert scan.slices.count() == 1  # the upload itself is kept; the user retries the job


def test_job_run_stores_a_consistent_result_for_every_slice(doctor_a, detector, upload_scan):
    scan, job = upload_scan(doctor_a)
    job = services.job_run(job_id=job.pk)

    assert job.status == Status.SUCCEEDED, job.error_message
    assert job.error_message == ""
    assert job.attempts == 1
    assert job.slices_total == job.slices_done == scan.n_slices == 3
    assert job.started_at <= job.finished_at
    assert job.seconds_total > 0 and job.seconds_per_slice > 0 and job.model_load_seconds is not None
    predictor = Predictor.load(detector, device="cpu")
    assert (job.model_name, job.model_version) == (predictor.name, predictor.version)
    assert job.model_sha256 == file_sha256(detector)
    assert job.device == "cpu"
    assert _job_audit_actions(job) == ["job.queued", "job.started", "job.succeeded"]

    results = list(job.slice_results.order_by("index"))
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.scan_slice_id for r in results] == list(scan.slices.order_by("index").values_list("pk", flat=True))
    for result in results:
        _assert_consistent_prediction(result)
        if not result.instances.exists():
            assert not result.mask

    # The scan-level verdict is volume_verdict over the stored slice scores, under the rule the job records
    # (this random bundle has none beside it: the max rule)
    assert job.scan_rule == {}
    expected = volume_verdict(
        [SlicePrediction(verdict=r.verdict, scores=r.scores, tamper_score=r.tamper_score) for r in results]
    )
    _assert_consistent_prediction(job)
    assert job.verdict == expected.verdict
    assert job.scores == pytest.approx(expected.scores)


def test_the_worker_reads_the_same_pixels_as_an_independent_prediction(doctor_a, detector, upload_scan):
    """The stored per-slice scores are what the predictor gives on the scan's 8-bit slices."""
    scan, job = upload_scan(doctor_a, indices=(10,))
    services.job_run(job_id=job.pk)
    with scan.slices.get().image.open("rb") as fh:
        pixels = np.asarray(Image.open(fh))
    direct = Predictor.load(detector, device="cpu").predict(pixels)
    stored = SliceResult.objects.get(job=job)
    assert stored.verdict == direct.verdict
    assert stored.scores == pytest.approx(direct.scores, abs=1e-5)


def test_masks_and_instances_are_stored_as_label_maps_and_coco_rle(doctor_a, detector_with_regions, upload_scan):
    scan, job = upload_scan(doctor_a, indices=(10, 11))
    job = services.job_run(job_id=job.pk)
    assert job.status == Status.SUCCEEDED, job.error_message

    results = list(job.slice_results.prefetch_related("instances"))
    with_regions = [r for r in results if r.instances.all()]
    assert with_regions, "the regions bundle shows regions on these slices"
    for result in with_regions:
        assert result.mask.name.endswith(f"slice-{result.index:04d}.png")
        with result.mask.open("rb") as fh:
            label_map = np.asarray(Image.open(fh))
        assert label_map.shape == (scan.height, scan.width) and label_map.dtype == np.uint8
        union = np.zeros(label_map.shape, dtype=bool)
        for instance in result.instances.all():
            # The instances shown on a slice are of the slice's verdict (the predictor contract).
            assert instance.label == result.verdict
            decoded = coco_mask.decode({"size": instance.mask_rle["size"], "counts": instance.mask_rle["counts"].encode()})
            assert decoded.shape == label_map.shape
            assert int(decoded.sum()) == instance.area
            x0, y0, x1, y1 = instance.box
            assert 0 <= x0 <= x1 <= scan.width and 0 <= y0 <= y1 <= scan.height
            assert 0 <= instance.score <= 1
            union |= decoded.astype(bool)
        # The label map is exactly the union of the instance masks, in the verdict's category.
        expected = np.where(union, CATEGORY_IDS[result.verdict], 0).astype(np.uint8)
        np.testing.assert_array_equal(label_map, expected)


def test_a_redelivered_task_for_a_succeeded_job_does_nothing(doctor_a, detector, upload_scan):
    scan, job = upload_scan(doctor_a, indices=(10,))
    services.job_run(job_id=job.pk)
    before = InferenceJob.objects.get(pk=job.pk)
    result_ids = list(SliceResult.objects.filter(job=job).values_list("pk", flat=True))

    again = services.job_run(job_id=job.pk)

    assert again.status == Status.SUCCEEDED
    assert again.attempts == 1
    assert again.finished_at == before.finished_at
    assert list(SliceResult.objects.filter(job=job).values_list("pk", flat=True)) == result_ids


def test_a_job_left_running_by_a_killed_worker_is_run_again_from_scratch(doctor_a, detector, upload_scan):
    scan, job = upload_scan(doctor_a)
    # A worker claims the job, stores the first slice, and is killed (nothing more happens, the heartbeat ages).
    dead = services._claim(job.pk)
    with scan.slices.get(index=0).image.open("rb") as fh:
        first = Predictor.load(detector, device="cpu").predict(np.asarray(Image.open(fh)))
    partial = services._store_slice(dead.job, 0, None, first, (scan.height, scan.width))
    InferenceJob.objects.filter(pk=job.pk).update(slices_total=3, slices_done=1)
    _age_heartbeat(job)

    # The message comes back (acks_late + reject_on_worker_lost) and another worker takes the job over.
    job = services.job_run(job_id=job.pk)

    assert job.status == Status.SUCCEEDED, job.error_message
    assert job.attempts == 2
    assert job.slices_done == job.slices_total == 3
    assert not SliceResult.objects.filter(pk=partial.pk).exists()  # partial results were cleared first
    assert sorted(job.slice_results.values_list("index", flat=True)) == [0, 1, 2]
    # The dead attempt's fencing token no longer matches: it could not write over the new results.
    assert not services._fenced(dead).exists()


def test_a_running_job_with_a_fresh_heartbeat_is_left_to_its_worker(doctor_a, detector, upload_scan):
    scan, job = upload_scan(doctor_a, indices=(10,))
    services._claim(job.pk)
    with pytest.raises(services.JobBusy):
        services.job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Status.RUNNING and job.attempts == 1


def test_the_reaper_fails_running_jobs_without_a_heartbeat(doctor_a, detector, upload_scan):
    scan, job = upload_scan(doctor_a, indices=(10,))
    services._claim(job.pk)
    _, live = upload_scan(doctor_a, indices=(11,))
    services._claim(live.pk)
    _age_heartbeat(job)

    assert services.jobs_reap_stale() == 1

    job.refresh_from_db()
    live.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error_message.startswith("The worker running this job stopped without finishing it")
    assert job.finished_at is not None
    assert live.status == Status.RUNNING
    # A late re-delivery of the dead job's message does not resurrect it: the user retries.
    assert services.job_run(job_id=job.pk).status == Status.FAILED


def test_on_read_recovery_fails_a_stale_job(doctor_a, detector, upload_scan):
    scan, job = upload_scan(doctor_a, indices=(10,))
    services._claim(job.pk)
    job = InferenceJob.objects.get(pk=job.pk)
    assert services.job_refresh_if_stale(job=job).status == Status.RUNNING
    _age_heartbeat(job)
    job = InferenceJob.objects.get(pk=job.pk)
    assert services.job_refresh_if_stale(job=job).status == Status.FAILED


def test_missing_weights_fail_the_job_with_the_predictor_message(doctor_a, settings, tmp_path, upload_scan):
    missing = tmp_path / "no-such-detector.pt"
    settings.DETECTOR_WEIGHTS = str(missing)
    with pytest.raises(ModelNotInstalled) as expected:
        Predictor.load(missing)
    scan, job = upload_scan(doctor_a, indices=(10,))

    job = services.job_run(job_id=job.pk)

    assert job.status == Status.FAILED
    assert job.error_message == str(expected.value)
    assert str(missing) in job.error_message
    assert _job_audit_actions(job) == ["job.queued", "job.started", "job.failed"]
    assert job.verdict == "" and job.confidence is None and job.scores == {}
    assert not job.slice_results.exists()


def test_a_file_that_is_not_a_bundle_fails_the_job(doctor_a, settings, tmp_path, upload_scan):
    bogus = tmp_path / "detector.pt"
    bogus.write_bytes(b"not a torch file")
    settings.DETECTOR_WEIGHTS = str(bogus)
    scan, job = upload_scan(doctor_a, indices=(10,))
    job = services.job_run(job_id=job.pk)
    assert job.status == Status.FAILED
    assert "is not a usable detector bundle" in job.error_message


def test_a_slice_missing_from_storage_fails_the_job_with_a_message(doctor_a, detector, upload_scan):
    scan, job = upload_scan(doctor_a)
    lost = scan.slices.get(index=1)
    lost.image.storage.delete(lost.image.name)
    job = services.job_run(job_id=job.pk)
    assert job.status == Status.FAILED
    assert job.error_message.startswith("Slice 2 of the scan cannot be read from storage")
    assert job.verdict == "" and job.slices_done <= 2


def test_retry_requeues_a_failed_job_which_then_succeeds(
    doctor_a, settings, tmp_path, random_bundle, upload_scan, django_capture_on_commit_callbacks
):
    settings.DETECTOR_WEIGHTS = str(tmp_path / "missing.pt")
    settings.DETECTOR_DEVICE = "cpu"
    scan, job = upload_scan(doctor_a, indices=(10,))
    job = services.job_run(job_id=job.pk)
    assert job.status == Status.FAILED

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = services.job_retry(job=job, user=doctor_a)
    assert len(callbacks) == 1  # the task is sent once the retry commits
    assert job.status == Status.QUEUED and job.error_message == "" and job.finished_at is None

    settings.DETECTOR_WEIGHTS = str(random_bundle)  # the model gets installed
    job = services.job_run(job_id=job.pk)
    assert job.status == Status.SUCCEEDED and job.attempts == 2
    assert _job_audit_actions(job) == [
        "job.queued", "job.started", "job.failed", "job.retried", "job.started", "job.succeeded"
    ]

    with pytest.raises(services.JobNotRetryable):
        services.job_retry(job=job, user=doctor_a)


def test_the_predictor_is_loaded_once_per_process_and_reloaded_when_the_weights_change(settings, tmp_path):
    from inference.ml.model import save_random_bundle

    weights = save_random_bundle(tmp_path / "w.pt", seed=1)
    settings.DETECTOR_WEIGHTS = str(weights)
    settings.DETECTOR_DEVICE = "cpu"
    first, _ = services.predictor_get()
    second, load_seconds = services.predictor_get()
    assert second is first and load_seconds == 0.0
    save_random_bundle(weights, seed=2)  # a new model installed at the same path
    third, _ = services.predictor_get()
    assert third is not first and third.sha256 == file_sha256(weights)


def test_the_detector_shares_the_cores_among_the_jobs_the_worker_is_running(settings, monkeypatch, doctor_a,
                                                                            detector, upload_scan):
    import torch

    from portal.celery import _share_the_cores

    settings.DETECTOR_THREADS = 0
    monkeypatch.setattr(services, "_cores", lambda: 4)  # as on a 4-core machine, whatever this one has
    monkeypatch.setattr(services, "_jobs_at_once", services._jobs_at_once)  # both restored after the test
    monkeypatch.setattr(services, "_running", services._running)
    threads = torch.get_num_threads()
    try:
        assert services.detector_threads() == 4  # outside a worker: one job at a time
        _share_the_cores(sender=SimpleNamespace(concurrency=2))  # what a Celery worker with two pool processes sends
        running = services._running
        assert running.value == 0 and services.detector_threads() == 4

        # A lone job has every core.
        torch.set_num_threads(1)
        scan, job = upload_scan(doctor_a, indices=(10,))
        assert services.job_run(job_id=job.pk).status == Status.SUCCEEDED
        assert torch.get_num_threads() == 4 and running.value == 0

        # Beside a job of another pool process, half of them; never more jobs than the pool runs at once.
        running.value = 1
        scan, job = upload_scan(doctor_a, indices=(11,))
        assert services.job_run(job_id=job.pk).status == Status.SUCCEEDED
        assert torch.get_num_threads() == 2 and running.value == 1
        running.value = 7
        assert services.detector_threads() == 2
        _share_the_cores(sender=SimpleNamespace(concurrency=8))
        services._running.value = 8
        assert services.detector_threads() == 1  # never none

        # A job that fails leaves the count as it found it.
        services._running.value = 0
        with pytest.raises(RuntimeError), services._counted_as_running():
            assert services._running.value == 1
            raise RuntimeError("the job's own failure")
        assert services._running.value == 0

        _share_the_cores(sender=SimpleNamespace(concurrency="auto"))  # not resolved yet: taken as one job
        services._running.value = 2
        assert services.detector_threads() == 4
        settings.DETECTOR_THREADS = 3  # stated: used as it is
        assert services.detector_threads() == 3
    finally:
        torch.set_num_threads(threads)


def test_label_map_prefers_the_higher_score_where_instances_overlap():
    from inference.ml.predictor import Instance

    low = np.zeros((4, 4), bool)
    low[:2, :] = True
    high = np.zeros((4, 4), bool)
    high[1:3, :] = True
    label_map = services.label_map(
        (4, 4),
        [Instance("fake_added", 0.9, (0, 1, 4, 3), high), Instance("real_tumor", 0.4, (0, 0, 4, 2), low)],
    )
    assert label_map[:, 0].tolist() == [1, 2, 2, 0]


def test_the_job_uses_and_records_the_models_scan_rule(doctor_a, client_a, settings, tmp_path, random_bundle,
                                                       upload_scan):
    """A scan rule beside the weights decides the scan verdict, is recorded on the job, and is said on the page,
    the API and the PDF report; a rule changed on disk is picked up without a new model."""
    import json
    import shutil
    from html import escape

    from inference.ml.scan_rule import scan_rule_path

    weights = shutil.copy(random_bundle, tmp_path / "detector.pt")
    settings.DETECTOR_WEIGHTS = str(weights)
    settings.DETECTOR_DEVICE = "cpu"
    # the lowest threshold a rule may have, so that this untrained model's slices cross it one way or the other
    scan_rule_path(weights).write_text(json.dumps({
        "model_sha256": file_sha256(weights), "rule": {"threshold": 0.7, "min_slices": 2},
        "chosen_on": "3 validation series (a test rule)"}))
    scan, job = upload_scan(doctor_a)
    job = services.job_run(job_id=job.pk)
    assert job.status == Status.SUCCEEDED, job.error_message
    assert job.scan_rule == {"threshold": 0.7, "min_slices": 2, "slope": 1.0,
                             "chosen_on": "3 validation series (a test rule)"}
    results = list(job.slice_results.order_by("index"))
    expected = volume_verdict([SlicePrediction(r.verdict, r.scores, r.tamper_score) for r in results], job.scan_rule)
    assert job.verdict == expected.verdict and job.scores == pytest.approx(expected.scores)
    _assert_consistent_prediction(job)

    text = ("the scan's probability of being tampered (were tampered and authentic scans equally common) rises with "
            "its 2nd-highest slice tamper score, passing 50% at 70%; the most probable of the four verdicts wins; "
            "chosen on 3 validation series (a test rule)")
    api = client_a.get(f"/api/jobs/{job.pk}/").json()
    assert api["scan_rule"] == {"threshold": 0.7, "min_slices": 2, "slope": 1.0,
                                "chosen_on": "3 validation series (a test rule)", "text": text}
    page = client_a.get(f"/scans/{scan.pk}/").content.decode()
    assert f"<dd data-scan-rule>{escape(text)}</dd>" in page
    from tests.reports.conftest import report_pdf_text

    import csv
    import io

    from django.urls import reverse

    from inference.models import scan_rule_brief

    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:results_csv")).content.decode())))
    assert [r["scan_rule"] for r in rows] == ["threshold 0.7; slice 2; slope 1"]
    assert scan_rule_brief(InferenceJob(status="succeeded", scan_rule={})) == "max"
    assert scan_rule_brief(InferenceJob(status="queued")) == "" and scan_rule_brief(None) == ""
    pdf = " ".join(report_pdf_text(client_a, scan.pk).split())
    assert ("Scan verdict rule: the scan's probability of being tampered (were tampered and authentic scans equally "
            "common) rises with its 2nd-highest slice tamper score") in pdf

    # how likely the scan is tampered where tampering is rare: at 1 in 10, 100, 1000 when the site set no share
    from inference.ml.scan_rule import at_prevalence
    from inference.models import fine_percent

    q = job.tamper_score
    odds = api["tamper_odds"]
    assert odds["even_odds"] == pytest.approx(q, abs=1e-6) and odds["site_prevalence"] is None
    assert [a["prevalence"] for a in odds["at"]] == [0.1, 0.01, 0.001]
    assert [a["probability"] for a in odds["at"]] == pytest.approx([at_prevalence(q, p) for p in (0.1, 0.01, 0.001)],
                                                                   abs=1e-7)
    assert odds["text"] == (f"{fine_percent(q)} if tampered and authentic scans were equally common; "
                            f"{fine_percent(at_prevalence(q, 0.1))} if 1 in 10 scans were tampered; "
                            f"{fine_percent(at_prevalence(q, 0.01))} if 1 in 100; "
                            f"{fine_percent(at_prevalence(q, 0.001))} if 1 in 1,000. These do not change the verdict.")
    assert f"<dd data-scan-odds>{escape(odds['text'])}</dd>" in page
    assert "Chance the scan is tampered: " + odds["text"].split(";")[0] in pdf
    settings.TAMPER_PREVALENCE = 0.005  # the site says 1 in 200
    odds = client_a.get(f"/api/jobs/{job.pk}/").json()["tamper_odds"]
    assert odds["site_prevalence"] == 0.005 and len(odds["at"]) == 1
    assert odds["at"][0]["probability"] == pytest.approx(at_prevalence(q, 0.005), abs=1e-7)
    assert "at the share of tampered scans this site expects (1 in 200)" in odds["text"]
    assert escape(odds["text"]) in client_a.get(f"/scans/{scan.pk}/").content.decode()
    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:results_csv")).content.decode())))
    assert float(rows[0]["tamper_probability_at_site_share"]) == pytest.approx(at_prevalence(q, 0.005), abs=1e-6)
    settings.TAMPER_PREVALENCE = None
    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:results_csv")).content.decode())))
    assert rows[0]["tamper_probability_at_site_share"] == ""  # no share set: nothing to restate it at

    # a new rule on disk: the next job loads it (the weights did not change)
    scan_rule_path(weights).write_text(json.dumps({
        "model_sha256": file_sha256(weights), "rule": {"threshold": 0.99, "min_slices": 1}}))
    predictor, _ = services.predictor_get()
    assert predictor.scan_rule == {"threshold": 0.99, "min_slices": 1, "slope": 1.0, "chosen_on": ""}
    scan_rule_path(weights).unlink()
    predictor, _ = services.predictor_get()
    assert predictor.scan_rule is None
    # under the max rule the scan's scores are no calibrated probability: nothing to restate
    scan, job = upload_scan(doctor_a, indices=(12, 13, 14))
    job = services.job_run(job_id=job.pk)
    assert job.status == Status.SUCCEEDED and job.scan_rule == {}
    assert client_a.get(f"/api/jobs/{job.pk}/").json()["tamper_odds"] is None
    page = client_a.get(f"/scans/{scan.pk}/").content.decode()
    assert '<dd class="hidden" data-scan-odds></dd>' in page
