"""End to end with a REAL Celery worker process (`celery -A portal worker`, prefork) against Redis and the test
database: upload the real BRAINIX FLAIR series through the scans API, let the worker analyse it, check what is
stored; then kill the worker's pool process in the middle of a job and check the job still ends, run again; and
send an analysis to a real PACS (Orthanc's DICOM server) through the worker.

The worker gets the test database (pytest-django's test_<name>) through DATABASE_URL, the test's media folder,
a random-weight tiny detector bundle, and a queue of its own, so it never sees anyone else's tasks.
"""
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.urls import reverse

from inference.ml.predictor import SlicePrediction, file_sha256, volume_verdict
from inference.models import InferenceJob, SliceResult
from scans.models import ScanSlice
from tests.inference.conftest import BRAINIX_FLAIR, brainix_files

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
WORKER_START_TIMEOUT = 90
JOB_TIMEOUT = 180
STALE_AFTER_SECONDS = 3


@dataclass
class Worker:
    process: subprocess.Popen
    queue: str
    media: Path
    log: Path
    weights: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def pool_children(self) -> list[int]:
        """The prefork pool's processes (children of the main worker process)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, tmp_path_factory, random_bundle):
    if connection.vendor != "postgresql":
        pytest.fail("The end-to-end test needs PostgreSQL (DATABASE_URL): the worker is another process.")
    base = tmp_path_factory.mktemp("e2e")
    queue = f"e2e-{uuid.uuid4().hex[:12]}"
    log = base / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(base / "media"),
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "CELERY_QUEUE": queue,
        "DETECTOR_WEIGHTS": str(random_bundle),
        "DETECTOR_DEVICE": "cpu",
        "DETECTOR_BATCH_SIZE": "2",
        "INFERENCE_STALE_AFTER_SECONDS": str(STALE_AFTER_SECONDS),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", queue, "--pool", "prefork",
        "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"{queue}@%h",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    w = Worker(process=process, queue=queue, media=base / "media", log=log, weights=random_bundle)
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while "ready." not in w.log_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"The Celery worker did not start:\n{w.log_text()[-4000:]}")
        time.sleep(0.25)
    yield w
    process.send_signal(signal.SIGQUIT)  # cold shutdown: nothing is in flight any more
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).delete(queue)


@pytest.fixture
def use_worker(worker, settings):
    """This test's uploads land where the worker reads them, and its jobs go to the worker's queue."""
    settings.MEDIA_ROOT = worker.media
    settings.INFERENCE_QUEUE = worker.queue
    settings.DETECTOR_WEIGHTS = str(worker.weights)
    return worker


def _upload(client, files) -> int:
    response = client.post(reverse("api-scan-list"), {"files": files})
    assert response.status_code == 201, response.content
    return response.json()["scan"]["id"]


def _wait(job_id, worker, until, what, timeout=JOB_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = InferenceJob.objects.get(pk=job_id)
        if until(job):
            return job
        if worker.process.poll() is not None:
            pytest.fail(f"The worker exited:\n{worker.log_text()[-4000:]}")
        time.sleep(0.2)
    pytest.fail(f"Timed out waiting for {what}; job is {job.status} {job.slices_done}/{job.slices_total}.\n"
                f"{worker.log_text()[-4000:]}")


def _assert_complete(job, scan_id, n):
    results = list(SliceResult.objects.filter(job=job).order_by("index"))
    assert [r.index for r in results] == list(range(n))
    assert all(r.scan_slice is not None and r.scan_slice.index == r.index and r.scan_slice.scan_id == scan_id
               for r in results)
    for r in results:
        assert sum(r.scores.values()) == pytest.approx(1.0, abs=1e-6)
        assert r.verdict == max(r.scores, key=r.scores.get)
    expected = volume_verdict([SlicePrediction(r.verdict, r.scores, r.tamper_score) for r in results],
                              job.scan_rule or None)
    assert job.verdict == expected.verdict and job.scores == pytest.approx(expected.scores)


def test_the_brainix_flair_series_is_analysed_by_a_real_worker(use_worker, client_a):
    n_files = len(list(BRAINIX_FLAIR.iterdir()))
    started = time.monotonic()
    scan_id = _upload(client_a, brainix_files(range(n_files)))
    job_id = client_a.get(reverse("api-scan-latest-job", args=[scan_id])).json()["id"]

    job = _wait(job_id, use_worker, lambda j: j.is_finished, "the job to finish")
    wall = time.monotonic() - started

    assert job.status == InferenceJob.Status.SUCCEEDED, job.error_message
    assert job.attempts == 1 and job.celery_task_id
    assert job.slices_done == job.slices_total == n_files == 22
    assert job.model_sha256 == file_sha256(use_worker.weights) and job.device == "cpu"
    _assert_complete(job, scan_id, 22)
    api = client_a.get(reverse("api-job-detail", args=[job_id])).json()
    assert api["status"] == "succeeded" and api["progress"]["fraction"] == 1.0
    results = client_a.get(reverse("api-job-results", args=[job_id]), {"page_size": 100}).json()
    assert results["count"] == 22
    print(
        f"\nBRAINIX FLAIR, 22 slices 288x288, tiny random model, CPU: job {job.seconds_total:.2f} s "
        f"({job.seconds_per_slice:.3f} s/slice model time, load {job.model_load_seconds:.2f} s); "
        f"upload to result {wall:.1f} s"
    )


def test_a_job_whose_worker_process_is_killed_runs_again_and_finishes(use_worker, client_a):
    # A subset of the series: another scan (other bytes). The worker is held mid-job deterministically, not by
    # timing: an uncommitted result row for slice 2 makes its insert of that row wait (unique job+index) after
    # it has stored slices 0-1, so the pool process is killed with the job provably half done.
    os.kill(use_worker.process.pid, signal.SIGSTOP)  # no task is taken until the blocker is in place
    try:
        scan_id = _upload(client_a, brainix_files(range(4, 12)))
        job_id = InferenceJob.objects.get(scan_id=scan_id).pk
        with transaction.atomic():
            SliceResult.objects.create(
                job_id=job_id, index=2, scan_slice=ScanSlice.objects.get(scan_id=scan_id, index=2),
                verdict="no_tumor", confidence=0.0, scores={}, tamper_score=0.0,
            )
            os.kill(use_worker.process.pid, signal.SIGCONT)
            job = _wait(job_id, use_worker, lambda j: j.status == "running" and j.slices_done >= 2, "the job to start")
            assert job.slices_done < job.slices_total, "the job finished before it could be interrupted"
            children = use_worker.pool_children()
            assert len(children) == 1
            os.kill(children[0], signal.SIGKILL)  # the pool process dies mid-job, as on an OOM kill
            transaction.set_rollback(True)  # the blocker goes; it never was a result
    finally:
        os.kill(use_worker.process.pid, signal.SIGCONT)

    # acks_late + reject_on_worker_lost: the message comes back; the job is taken over once its heartbeat is stale.
    job = _wait(job_id, use_worker, lambda j: j.is_finished, "the job to be run again")
    assert job.status == InferenceJob.Status.SUCCEEDED, job.error_message
    assert job.attempts == 2
    assert job.slices_done == job.slices_total == 8
    _assert_complete(job, scan_id, 8)
    log = use_worker.log_text()
    assert "WorkerLostError" in log or "SIGKILL" in log


def test_a_real_worker_sends_the_analysis_to_a_real_pacs(use_worker, client_a, settings, tmp_path):
    """Send to PACS through the API: the request is committed, the task goes through Redis to the worker, which
    C-STOREs the SEG, the report and the structured report as DICOM into Orthanc's DICOM server, in the study of the source files."""
    from reports.models import PacsTransfer
    from tests.reports.orthanc import get_json, post_instance, running_orthanc

    files = brainix_files([5, 6, 7])
    scan_id = _upload(client_a, files)
    job_id = client_a.get(reverse("api-scan-latest-job", args=[scan_id])).json()["id"]
    assert _wait(job_id, use_worker, lambda j: j.is_finished, "the job to finish").status == "succeeded"

    with running_orthanc(tmp_path, dicom=True) as pacs:
        settings.PACS_DESTINATION = pacs["destination"]
        settings.PACS_QUEUE = use_worker.queue  # the worker reads only its own queue
        for f in files:
            f.seek(0)
            source = post_instance(pacs["http"], f.read())
        response = client_a.post(reverse("api-scan-pacs-transfers", args=[scan_id]))
        assert response.status_code == 202, response.content
        transfer_id = response.json()["id"]
        deadline = time.monotonic() + JOB_TIMEOUT
        while (transfer := PacsTransfer.objects.get(pk=transfer_id)).status in ("queued", "sending"):
            if time.monotonic() > deadline or use_worker.process.poll() is not None:
                pytest.fail(f"The transfer stayed {transfer.status}:\n{use_worker.log_text()[-4000:]}")
            time.sleep(0.2)
        assert transfer.status == "sent", transfer.detail
        assert [i["what"] for i in transfer.instances] == ["seg", "report", "sr"]
        study = get_json(pacs["http"], f"/studies/{source['ParentStudy']}")
        modalities = sorted(get_json(pacs["http"], f"/series/{s}")["MainDicomTags"]["Modality"]
                            for s in study["Series"])
        assert modalities == ["DOC", "MR", "SEG", "SR"]
        listed = client_a.get(reverse("api-scan-pacs-transfers", args=[scan_id])).json()
        assert [(t["id"], t["status"]) for t in listed] == [(transfer_id, "sent")]


def test_a_series_a_real_pacs_pushes_to_the_receiver_process_is_analysed_by_the_worker(use_worker, doctor_a,
                                                                                        tmp_path):
    """The DICOM receiver as its own process (`manage.py dicom_receiver`, as `make receiver` runs it): Orthanc pushes
    a study (C-STORE), the receiver stores the series as a scan of the peer's account, the worker analyses it, and
    SIGTERM stops the receiver cleanly."""
    from scans.models import Scan
    from tests.reports.orthanc import free_port, post_instance, post_json, running_orthanc

    port, log = free_port(), tmp_path / "receiver.log"
    env = {**os.environ, "DATABASE_URL": _database_url(), "MEDIA_ROOT": str(use_worker.media),
           "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL, "INFERENCE_QUEUE": use_worker.queue,
           "DICOM_RECEIVER_PEERS": "ORTHANC@127.0.0.1=doctor_a", "DICOM_RECEIVER_PORT": str(port),
           "DICOM_RECEIVER_SPOOL": str(tmp_path / "spool"), "DICOM_RECEIVER_IDLE_SECONDS": "0.5",
           "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        receiver = subprocess.Popen([sys.executable, "manage.py", "dicom_receiver"], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while "Receiving DICOM as" not in log.read_text():
            if receiver.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"The receiver did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        with running_orthanc(tmp_path / "pacs", dicom=True,
                             modalities={"portal": ["TAMPERCHECK", "127.0.0.1", port]}) as pacs:
            for f in brainix_files([12, 13, 14, 15]):
                study = post_instance(pacs["http"], f.read())["ParentStudy"]
            started = time.monotonic()
            answer = post_json(pacs["http"], "/modalities/portal/store", {"Resources": [study], "Synchronous": True})
        assert answer["InstancesCount"] == 4 and answer.get("FailedInstancesCount", 0) == 0, answer
        deadline = time.monotonic() + JOB_TIMEOUT
        while not (scan := Scan.objects.filter(owner=doctor_a).first()):
            if receiver.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"No scan was stored:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        assert scan.n_slices == 4 and scan.metadata["origin"]["received"]["calling_ae"] == "ORTHANC"
        job = _wait(InferenceJob.objects.get(scan=scan).pk, use_worker, lambda j: j.is_finished, "the job to finish")
        assert job.status == InferenceJob.Status.SUCCEEDED, job.error_message
        _assert_complete(job, scan.pk, 4)
        print(f"\nPushed by Orthanc (4 slices): verdict {time.monotonic() - started:.1f} s after the push")
    finally:
        receiver.send_signal(signal.SIGTERM)
        try:
            code = receiver.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(receiver.pid, signal.SIGKILL)
            raise
    assert code == 0 and "Stopped receiving" in log.read_text(), log.read_text()[-2000:]
    assert not list((tmp_path / "spool").rglob("*.dcm"))
