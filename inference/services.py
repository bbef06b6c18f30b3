"""Writes for detector jobs: enqueue, run (the worker's real work), retry, and the stale-job reaper.

Lifecycle of an `InferenceJob`:

    queued --(worker claims it: job_run)--> running --> succeeded
                                               |   \\--> failed (model not installed, unreadable scan, error)
                                               \\--> failed by jobs_reap_stale (worker died: no heartbeat)
    failed --(job_retry by the owner or an admin)--> queued
    succeeded, by weights other than the installed ones, or by them under another scan rule than the one now
        beside them --(job_reanalyse)--> a new job (queued); the earlier job, its results and any review of it stay

Idempotency and dead workers:

- The Celery task is acks_late + reject_on_worker_lost (settings), so a message whose worker died is delivered
  again. `job_run` claims the row under `SELECT ... FOR UPDATE`: a succeeded or failed job is left alone (a
  re-delivered message does nothing); a queued job, or a running job whose heartbeat is older than
  `INFERENCE_STALE_AFTER_SECONDS` (default 300), is claimed: its partial results are deleted and it runs again.
  A running job with a fresh heartbeat belongs to a live worker: `JobBusy` is raised and the task retries later.
- Every write of a running attempt is fenced by the attempt number: `attempts` grows by one per claim, and the
  worker writes only while the row still says (running, its attempt). An attempt that lost its claim stops.
- A job is never "running" forever: the worker beats the heartbeat after every batch, and `jobs_reap_stale`
  marks running jobs without a recent heartbeat as failed (retryable). The reaper runs periodically
  (`inference.tasks.reap_stale_jobs`, every minute under celery beat) and on every read of a job's status
  (`job_refresh_if_stale`), so the page and the API never show a dead job as running, even without beat.
"""
from __future__ import annotations

import io
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from audit import actions
from audit.services import audit_record
from inference.ml.labels import CATEGORY_IDS
from inference.models import InferenceJob, SliceInstance, SliceResult, stale_after

logger = logging.getLogger(__name__)

Status = InferenceJob.Status


class JobBusy(Exception):
    """The job is running on a live worker (fresh heartbeat); the caller should try again later."""


class JobNotRetryable(Exception):
    """Only a failed job can be retried."""


class ReanalysisRefused(Exception):
    """A new analysis would give nothing new (the installed model made the current one) or cannot start now."""


# --- Enqueue and retry --------------------------------------------------------------------------------------


# Sending a task: a few quick retries, then the job fails visibly instead of the upload request hanging.
SEND_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
SEND_FAILED_MESSAGE = (
    "The job could not be handed to the workers: the message broker did not answer ({error}). "
    "The scan is stored; retry the job when the broker is back."
)


def _dispatch(job: InferenceJob) -> None:
    """Send the task once the row is committed, so the worker always finds it."""
    from inference.tasks import run_inference_job

    def send():
        # INFERENCE_QUEUE (optional) routes jobs to dedicated (GPU) workers: `celery -A portal worker -Q <name>`.
        queue = getattr(settings, "INFERENCE_QUEUE", None)
        try:
            result = run_inference_job.apply_async(
                (job.pk,), retry=True, retry_policy=SEND_RETRY_POLICY, **({"queue": queue} if queue else {})
            )
        except Exception as exc:  # broker unreachable: the upload is stored; the job says so and can be retried
            logger.exception("Could not send inference job %s to the broker", job.pk)
            with transaction.atomic():
                queued = InferenceJob.objects.select_for_update().filter(pk=job.pk, status=Status.QUEUED).first()
                if queued is not None:
                    _finish_failed(queued, SEND_FAILED_MESSAGE.format(error=f"{type(exc).__name__}: {exc}"))
            return
        InferenceJob.objects.filter(pk=job.pk).update(celery_task_id=result.id or "")

    transaction.on_commit(send)


@transaction.atomic
def job_enqueue(*, scan, user=None) -> InferenceJob:
    """A new queued job for `scan`; the Celery task is sent when the transaction commits."""
    job = InferenceJob.objects.create(scan=scan, requested_by=user or scan.owner)
    _audit(actions.JOB_QUEUED, actor=job.requested_by, job=job)
    _dispatch(job)
    return job


@transaction.atomic
def job_retry(*, job: InferenceJob, user, request=None) -> InferenceJob:
    """Put a failed job back in the queue (same row; its attempt count keeps growing)."""
    job = InferenceJob.objects.select_for_update().get(pk=job.pk)
    if job.status != Status.FAILED:
        raise JobNotRetryable(f"Only a failed job can be retried; this one is {job.status}.")
    _clear_results(job)
    job.status = Status.QUEUED
    job.error_message = ""
    job.slices_done = 0
    job.started_at = job.finished_at = job.heartbeat_at = None
    job.requested_by = user
    job.save()
    _audit(actions.JOB_RETRIED, request=request, actor=user, job=job, details={"attempts": job.attempts})
    _dispatch(job)
    return job


def newest_job_for_update(scan) -> InferenceJob | None:
    """The scan's newest job, locked until the transaction ends (callers run in one): what a review or a new
    analysis is decided against."""
    return InferenceJob.objects.select_for_update().filter(scan=scan).order_by("-created_at", "-id").first()


RULE_KEYS = ("threshold", "min_slices", "slope")


def installed_scan_rule(card) -> dict:
    """The scan rule the worker applies with the installed model (``card``): {"threshold", "min_slices",
    "slope"}, or {} for the max rule (no rule beside the weights, one chosen for other weights, or one that cannot
    be used)."""
    from inference.ml.scan_rule import ScanRuleError, load_scan_rule

    if not card.available:
        return {}
    try:
        rule = load_scan_rule(card.weights_path, card.sha256)
    except ScanRuleError:
        return {}
    return {k: rule[k] for k in RULE_KEYS} if rule else {}


def _rule_of(job: InferenceJob) -> dict:
    from inference.ml.scan_rule import check_scan_rule

    return check_scan_rule(job.scan_rule) if job.scan_rule else {}  # {threshold, min_slices, slope}


def scan_rule_changed(job: InferenceJob | None, card) -> bool:
    """Whether `job` (succeeded, by the installed weights) turned its slices into a scan verdict by another rule
    than the one now installed beside those weights."""
    return bool(job is not None and card.available and job.model_sha256 == card.sha256
                and _rule_of(job) != installed_scan_rule(card))


def reanalysis_model(job: InferenceJob | None):
    """The installed model (reports.selectors.ModelCard) when `job`, a scan's newest job, succeeded with other
    weights, or with these weights under another scan rule, so that analysing the scan again could give another
    verdict; None otherwise."""
    from reports.selectors import model_card_current

    if job is None or job.status != Status.SUCCEEDED:
        return None
    card = model_card_current()
    if not card.available:
        return None
    return card if card.sha256 != job.model_sha256 or scan_rule_changed(job, card) else None


@transaction.atomic
def job_reanalyse(*, scan, user, request=None) -> InferenceJob:
    """Queue a new job for `scan` with the installed model, when its newest job succeeded with other weights (a
    model was installed since) or under another scan rule (one was chosen since). The earlier job keeps its results
    and reviews; pages and reports move to the new one when it succeeds. Raises ReanalysisRefused, and queues nothing, otherwise."""
    from reports.selectors import model_card_current

    latest = newest_job_for_update(scan)
    if latest is not None and latest.status in (Status.QUEUED, Status.RUNNING):
        raise ReanalysisRefused(f"An analysis of this scan is already {latest.status} (job #{latest.pk}).")
    if latest is not None and latest.status == Status.FAILED:
        raise ReanalysisRefused(f"The newest analysis of this scan (job #{latest.pk}) failed: retry it instead.")
    card = model_card_current()
    if not card.available:
        raise ReanalysisRefused(card.problem)
    if latest is not None and latest.model_sha256 == card.sha256 and not scan_rule_changed(latest, card):
        raise ReanalysisRefused(f"This scan was analysed by the installed model ({card.name} {card.version}, job "
                                f"#{latest.pk}); analysing it again would give the same result.")
    job = InferenceJob.objects.create(scan=scan, requested_by=user)
    _audit(actions.JOB_QUEUED, request=request, actor=user, job=job, details={
        "reanalysis_of": latest.pk if latest else None,
        "previous_model": f"{latest.model_name} {latest.model_version}" if latest else "",
        "previous_model_sha256": latest.model_sha256 if latest else "",
        "model": f"{card.name} {card.version}", "model_sha256": card.sha256,
        **({"previous_scan_rule": _rule_of(latest), "scan_rule": installed_scan_rule(card)}
           if latest is not None and latest.model_sha256 == card.sha256 else {}),
    })
    _dispatch(job)
    return job


# --- Stale jobs ------------------------------------------------------------------------------------------------

STALE_MESSAGE = (
    "The worker running this job stopped without finishing it (no heartbeat since {beat}): it was probably "
    "restarted or ran out of memory. No verdict was stored. Retry the job."
)


def _fail_stale(queryset, now) -> int:
    failed = 0
    for job in queryset.select_for_update(skip_locked=True):
        if not job.is_stale(now):
            continue
        beat = job.heartbeat_at or job.started_at or job.created_at
        _finish_failed(job, STALE_MESSAGE.format(beat=beat.strftime("%Y-%m-%d %H:%M:%S UTC")), now=now)
        failed += 1
    return failed


@transaction.atomic
def jobs_reap_stale(*, now=None) -> int:
    """Mark every running job whose heartbeat is older than the limit as failed (retryable). Returns the count."""
    now = now or timezone.now()
    return _fail_stale(InferenceJob.objects.filter(status=Status.RUNNING, heartbeat_at__lt=now - stale_after()), now)


def job_refresh_if_stale(*, job: InferenceJob) -> InferenceJob:
    """On-read recovery: a running job with an old heartbeat is failed before anyone sees it."""
    if job.is_stale():
        with transaction.atomic():
            _fail_stale(InferenceJob.objects.filter(pk=job.pk, status=Status.RUNNING), timezone.now())
        job.refresh_from_db()
    return job


# --- Running a job (the worker) -------------------------------------------------------------------------------

_predictor_cache: dict[tuple, object] = {}
_predictor_lock = threading.Lock()
_jobs_at_once = lambda: 1  # noqa: E731  how many jobs this process's worker runs at once (worker_sharing)
_running = None  # the jobs this worker is running now, shared by its pool's processes (worker_sharing)


def worker_sharing(*, at_once, running=None) -> None:
    """Tell this process how its worker shares the CPU among jobs: `at_once()`, how many jobs it runs at once (read
    when needed: a Celery worker knows its pool size only after it starts), and `running`, a counter in memory
    shared by its pool's processes (a multiprocessing.Value made before they fork). portal.celery hands both over."""
    global _jobs_at_once, _running
    _jobs_at_once, _running = at_once, running


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (a container's, a taskset's)
    except AttributeError:
        return os.cpu_count() or 1


def detector_threads() -> int:
    """The CPU threads the detector uses now in this process: DETECTOR_THREADS, or else the cores shared among the
    jobs the worker is running now (at most as many as it runs at once), so that a lone job has every core and two
    jobs on two cores one each. Measured on 2 cores (benchmarks/results-portal.md): two jobs at once with two
    threads each analysed 28 % fewer scans an hour than one job with two; sharing this way, 17-48 % more, with a
    lone scan as fast as under one job at a time."""
    if settings.DETECTOR_THREADS > 0:
        return settings.DETECTOR_THREADS
    try:
        at_once = max(1, int(_jobs_at_once()))
    except (TypeError, ValueError):  # a pool size Celery has not resolved
        at_once = 1
    running = _running.value if _running is not None else 1
    return max(1, _cores() // max(1, min(running, at_once)))


def _fit_threads() -> int:
    import torch

    threads = detector_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@contextmanager
def _counted_as_running():
    """The job counts among the worker's running jobs while the block runs (an exception included). A pool process
    killed mid-job leaves its count behind until the worker restarts; as no more jobs than the pool size are ever
    counted, the cost is at worst a lone job held to its fixed share of the cores."""
    if _running is None:
        yield
        return
    with _running.get_lock():
        _running.value += 1
    try:
        yield
    finally:
        with _running.get_lock():
            _running.value = max(0, _running.value - 1)


def predictor_get():
    """The Predictor for the configured weights and device, loaded once per worker process.

    Reloaded when DETECTOR_WEIGHTS points elsewhere or the file changes (a new model installed), or its scan
    rule beside it changes. Raises inference.ml.predictor.ModelNotInstalled when no weights are installed.
    """
    started = time.perf_counter()
    from inference.ml.predictor import Predictor  # torch: seconds on the first call in a process

    from inference.ml.scan_rule import scan_rule_path

    weights = Path(settings.DETECTOR_WEIGHTS)
    try:
        stat = weights.stat()
        rule = scan_rule_path(weights)
        rule_stat = rule.stat() if rule.is_file() else None
        key = (str(weights), settings.DETECTOR_DEVICE, stat.st_mtime_ns, stat.st_size,
               rule_stat and (rule_stat.st_mtime_ns, rule_stat.st_size))
    except OSError:
        key = None  # let Predictor.load raise its own message
    with _predictor_lock:
        if key is not None and key in _predictor_cache:
            return _predictor_cache[key], 0.0
        threads = _fit_threads()
        predictor = Predictor.load(weights, device=settings.DETECTOR_DEVICE, batch_size=settings.DETECTOR_BATCH_SIZE)
        seconds = time.perf_counter() - started
        logger.info("Detector %s %s loaded on %s in %.1f s; %d CPU thread(s)", predictor.name, predictor.version,
                    predictor.device, seconds, threads)
        _predictor_cache.clear()
        if key is not None:
            _predictor_cache[key] = predictor
        return predictor, seconds


@dataclass
class _Claim:
    job: InferenceJob
    attempt: int


def _claim(job_id: int) -> _Claim | None:
    """Take the job for this worker, or None when there is nothing to do (see module docstring)."""
    now = timezone.now()
    with transaction.atomic():
        job = InferenceJob.objects.select_for_update().select_related("scan").filter(pk=job_id).first()
        if job is None:
            logger.warning("Inference job %s does not exist (deleted with its scan?); nothing to do.", job_id)
            return None
        if job.status in (Status.SUCCEEDED, Status.FAILED):
            logger.info("Inference job %s is already %s; a re-delivered task does nothing.", job_id, job.status)
            return None
        if job.status == Status.RUNNING and not job.is_stale(now):
            raise JobBusy(f"Job {job_id} is running on another worker (heartbeat {job.heartbeat_at}).")
        if job.status == Status.RUNNING:
            logger.warning("Inference job %s was abandoned by a dead worker; running it again.", job_id)
        _clear_results(job)
        job.status = Status.RUNNING
        job.attempts += 1
        job.started_at = job.heartbeat_at = now
        job.finished_at = None
        job.slices_done = job.slices_total = 0
        job.error_message = ""
        job.verdict = ""
        job.confidence = job.tamper_score = None
        job.scores = {}
        job.scan_rule = {}
        job.seconds_per_slice = job.seconds_total = job.model_load_seconds = None
        job.save()
    _audit(actions.JOB_STARTED, job=job, details={"attempt": job.attempts})
    return _Claim(job=job, attempt=job.attempts)


def _fenced(claim: _Claim):
    """The job's row, only while this attempt still owns it."""
    return InferenceJob.objects.filter(pk=claim.job.pk, status=Status.RUNNING, attempts=claim.attempt)


class _LostClaim(Exception):
    pass


def _clear_results(job: InferenceJob) -> None:
    results = list(SliceResult.objects.filter(job=job).only("pk", "mask"))
    paths = [r.mask.name for r in results if r.mask]
    SliceResult.objects.filter(job=job).delete()
    if paths:
        storage = SliceResult._meta.get_field("mask").storage

        def delete_files():
            for name in paths:
                try:
                    storage.delete(name)
                except Exception:  # a missing file is no reason to fail the job
                    logger.warning("Could not delete old mask %s", name, exc_info=True)

        transaction.on_commit(delete_files)


def label_map(shape: tuple[int, int], instances) -> np.ndarray:
    """A uint8 label map (0 background, 1 real_tumor, 2 fake_added, 3 fake_removed); higher scores win overlaps."""
    out = np.zeros(shape, dtype=np.uint8)
    for inst in sorted(instances, key=lambda i: i.score):
        out[np.asarray(inst.mask, dtype=bool)] = CATEGORY_IDS[inst.label]
    return out


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array, mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def mask_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a boolean mask, JSON-ready."""
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _store_slice(job: InferenceJob, index: int, scan_slice_id, pred, shape) -> SliceResult:
    result = SliceResult(
        job=job,
        index=index,
        scan_slice_id=scan_slice_id,
        verdict=pred.verdict,
        confidence=float(pred.scores[pred.verdict]),
        scores={k: float(v) for k, v in pred.scores.items()},
        tamper_score=float(pred.tamper_score),
    )
    if pred.instances:
        result.mask.save(f"slice-{index:04d}.png", ContentFile(_png_bytes(label_map(shape, pred.instances))), save=False)
    result.save()
    SliceInstance.objects.bulk_create(
        [
            SliceInstance(
                slice_result=result,
                label=inst.label,
                score=float(inst.score),
                box=[float(c) for c in inst.box],
                mask_rle=mask_rle(np.asarray(inst.mask, dtype=bool)),
                area=int(np.count_nonzero(inst.mask)),
            )
            for inst in pred.instances
        ]
    )
    return result


def _finish_failed(job: InferenceJob, message: str, *, now=None) -> None:
    now = now or timezone.now()
    job.status = Status.FAILED
    job.error_message = message
    job.finished_at = now
    if job.started_at:
        job.seconds_total = (now - job.started_at).total_seconds()
    job.save(update_fields=["status", "error_message", "finished_at", "seconds_total"])
    _audit(actions.JOB_FAILED, job=job, outcome=actions.FAILURE, details={"error": message, "attempt": job.attempts})


def job_run(*, job_id: int) -> InferenceJob | None:
    """Run the detector over every slice of the job's scan and store the results (the worker's real work).

    Raises JobBusy when a live worker holds the job. Never raises for a failure of the job itself: the job is
    marked failed with a message a user can act on (e.g. ModelNotInstalled's), and no result is invented.
    """
    claim = _claim(job_id)
    if claim is None:
        return InferenceJob.objects.filter(pk=job_id).first()
    job = claim.job
    try:
        with _counted_as_running():
            _run_claimed(claim)
    except _LostClaim:
        logger.warning("Inference job %s attempt %s lost its claim; stopping.", job.pk, claim.attempt)
    except Exception as exc:  # the job fails with the reason; the worker lives on
        message = _user_message(exc)
        if not isinstance(exc, _expected_errors()):
            logger.exception("Inference job %s failed", job.pk)
        with transaction.atomic():
            current = _fenced(claim).select_for_update().first()
            if current is not None:
                _finish_failed(current, message)
    return InferenceJob.objects.filter(pk=job_id).first()


def _expected_errors() -> tuple[type[Exception], ...]:
    from inference.ml.imaging import ImagingError
    from inference.ml.predictor import ModelNotInstalled

    return (ModelNotInstalled, ImagingError)


def _user_message(exc: Exception) -> str:
    if isinstance(exc, _expected_errors()):
        return str(exc)
    return f"The detector failed on this scan ({type(exc).__name__}: {exc}). The error was logged; retry the job."


def _run_claimed(claim: _Claim) -> None:
    job = claim.job
    predictor, load_seconds = predictor_get()
    slices = scan_slices(job.scan)
    total = len(slices)
    updated = _fenced(claim).update(
        slices_total=total,
        model_name=predictor.name,
        model_version=predictor.version,
        model_sha256=predictor.sha256,
        device=str(predictor.device),
        model_load_seconds=load_seconds,
        heartbeat_at=timezone.now(),
    )
    if not updated:
        raise _LostClaim
    batch_size = max(1, int(settings.DETECTOR_BATCH_SIZE))
    summaries = []
    model_seconds = 0.0
    for start in range(0, total, batch_size):
        rows = slices[start : start + batch_size]
        batch = [slice_pixels(row) for row in rows]  # a batch at a time: long series never sit in memory whole
        _fit_threads()  # the cores this job may use now: all of them alone, a share beside other jobs
        t0 = time.perf_counter()
        preds = predictor.predict_batch(batch)
        model_seconds += time.perf_counter() - t0
        with transaction.atomic():
            if not _fenced(claim).select_for_update().exists():
                raise _LostClaim
            for offset, pred in enumerate(preds):
                _store_slice(job, rows[offset].index, rows[offset].pk, pred, batch[offset].shape)
            _fenced(claim).update(slices_done=start + len(preds), heartbeat_at=timezone.now())
        # Keep what volume_verdict needs, not the masks.
        summaries.extend(_without_masks(p) for p in preds)

    scan_pred = predictor.volume_verdict(summaries)  # under the model's scan rule, if it has one
    now = timezone.now()
    with transaction.atomic():
        current = _fenced(claim).select_for_update().first()
        if current is None:
            raise _LostClaim
        current.status = Status.SUCCEEDED
        current.finished_at = now
        current.heartbeat_at = now
        current.verdict = scan_pred.verdict
        current.scores = {k: float(v) for k, v in scan_pred.scores.items()}
        current.confidence = float(scan_pred.scores[scan_pred.verdict])
        current.tamper_score = float(scan_pred.tamper_score)
        current.scan_rule = dict(predictor.scan_rule or {})
        current.seconds_per_slice = model_seconds / total if total else None
        current.seconds_total = (now - current.started_at).total_seconds()
        current.save()
    logger.info(
        "Inference job %s: %d slices in %.1f s (model %.3f s per slice, load %.2f s, %s): %s",
        current.pk, total, current.seconds_total, current.seconds_per_slice or 0.0, load_seconds, current.device,
        current.verdict,
    )
    _audit(
        actions.JOB_SUCCEEDED,
        job=current,
        details={
            "verdict": current.verdict,
            "confidence": current.confidence,
            "slices": total,
            "model": f"{current.model_name} {current.model_version}",
            "model_sha256": current.model_sha256,
            "seconds_total": current.seconds_total,
        },
    )


def _without_masks(pred):
    import dataclasses

    return dataclasses.replace(pred, instances=[])


def scan_slices(scan) -> list:
    """The scan's stored slices in display order (rows only; pixels are read batch by batch, `slice_pixels`)."""
    from inference.ml.imaging import ImagingError

    stored = list(scan.slices.order_by("index").only("pk", "index", "image"))
    if not stored or len(stored) != scan.n_slices or [s.index for s in stored] != list(range(scan.n_slices)):
        raise ImagingError(
            f"The scan has {len(stored)} stored slices of {scan.n_slices}; it cannot be analysed. Upload it again."
        )
    return stored


def slice_pixels(scan_slice) -> np.ndarray:
    """One slice as the model reads it: the stored 8-bit image, (h, w) uint8.

    That image is the project's windowing rule applied over the whole volume at upload
    (inference.ml.imaging.to_uint8), so the detector sees exactly what the viewer shows by default.
    """
    from PIL import Image

    from inference.ml.imaging import ImagingError

    try:
        with scan_slice.image.open("rb") as fh, Image.open(fh) as img:
            return np.array(img.convert("L"))
    except OSError as exc:  # missing or damaged in storage
        raise ImagingError(
            f"Slice {scan_slice.index + 1} of the scan cannot be read from storage ({exc}). Upload the scan again."
        ) from exc


# --- Audit ----------------------------------------------------------------------------------------------------


def audit_mask_downloaded(*, request, job: InferenceJob, details: dict | None = None) -> None:
    _audit(actions.MASK_DOWNLOADED, request=request, actor=request.user, job=job, details=details)


def audit_results_viewed(*, request, job: InferenceJob) -> None:
    _audit(actions.RESULT_VIEWED, request=request, actor=request.user, job=job)


def _audit(action: str, *, job: InferenceJob, request=None, actor=None, outcome: str = actions.SUCCESS, details=None):
    """Record the act in the hash-chained audit log. Worker-side events have no request and no actor."""
    audit_record(
        action=action,
        request=request,
        actor=actor,
        obj=job,
        outcome=outcome,
        details={"scan_id": job.scan_id, "job_id": job.pk, **(details or {})},
    )
