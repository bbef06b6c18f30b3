"""Celery tasks: thin wrappers over inference.services (the job row is the truth; see its docstring).

acks_late and reject_on_worker_lost come from settings (CELERY_TASK_ACKS_LATE, CELERY_TASK_REJECT_ON_WORKER_LOST),
so a message whose worker died is delivered again and `job_run` decides what to do with it.
"""
from celery import shared_task
from celery.signals import worker_init
from django.conf import settings

from inference import services


def _busy_countdown() -> int:
    # Retry just after the heartbeat would count as stale: by then the other worker has either beaten it
    # (still alive: try again later) or not (dead: this one takes the job over).
    return int(getattr(settings, "INFERENCE_STALE_AFTER_SECONDS", 300)) + 1


@shared_task(bind=True, name="inference.run_inference_job", max_retries=20)
def run_inference_job(self, job_id: int) -> None:
    try:
        services.job_run(job_id=job_id)
    except services.JobBusy as exc:
        raise self.retry(exc=exc, countdown=_busy_countdown())


@shared_task(name="inference.reap_stale_jobs")
def reap_stale_jobs() -> int:
    """Fail running jobs whose worker stopped beating (every minute under celery beat: settings.CELERY_BEAT_SCHEDULE)."""
    return services.jobs_reap_stale()


@worker_init.connect
def _import_the_detector_before_forking(**kwargs):
    """Import torch and the detector code once in the worker's main process, so every pool process (forked from it)
    starts with them loaded and the first job does not pay seconds of imports. Nothing runs on a device here:
    CUDA is initialised only in the pool processes, when a job loads the Predictor."""
    import inference.ml.predictor  # noqa: F401
