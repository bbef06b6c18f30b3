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
    """The detector's CPU threads are the cores shared among the jobs this worker runs at once
    (inference.services.detector_threads). The pool size is read when the detector loads, in the pool's process:
    by then Celery has resolved it (`--concurrency auto` included)."""
    from inference.services import jobs_at_once_from

    jobs_at_once_from(lambda: getattr(sender, "concurrency", 1))
