from django.apps import AppConfig

REAP_STALE_JOBS_EVERY_SECONDS = 60.0


class InferenceConfig(AppConfig):
    name = "inference"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # `celery -A portal beat` runs the stale-job reaper every minute (the page and the API also reap on read).
        from celery import current_app

        current_app.conf.beat_schedule = {
            **(current_app.conf.beat_schedule or {}),
            "inference-reap-stale-jobs": {"task": "inference.reap_stale_jobs", "schedule": REAP_STALE_JOBS_EVERY_SECONDS},
        }
