"""The Celery application. Workers: `celery -A portal worker -l info`."""
import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _share_the_cores(sender=None, **kwargs):
    """The detector's CPU threads are the cores shared among the jobs this worker is running
    (inference.services.detector_threads). Runs in the worker's main process before its pool forks: the counter of
    running jobs is made here so that every pool process shares it; the pool size is read later, in the pool's
    processes, once Celery has resolved it (`--concurrency auto` included)."""
    import multiprocessing

    from inference.services import worker_sharing

    worker_sharing(at_once=lambda: getattr(sender, "concurrency", 1), running=multiprocessing.Value("i", 0))
