from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """E-mail alerts on the events that are evidence of tampering (alerts.rules), to ALERT_EMAILS."""

    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_save

        from alerts.services import on_audit_event
        from audit.models import AuditEvent

        post_save.connect(on_audit_event, sender=AuditEvent, dispatch_uid="alerts.on_audit_event")
