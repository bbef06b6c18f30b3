"""The audit log: append-only, each row chained to the previous one by SHA-256.

Rows are written only by `audit.services.audit_record`. The model refuses to change or delete a
row; in PostgreSQL, triggers (migration 0002) refuse UPDATE, DELETE and TRUNCATE as well, so a
direct SQL edit needs a superuser who first disables them, and `manage.py verify_audit_log`
then finds the broken link.
"""
import json

from django.conf import settings
from django.db import models

from audit import actions


class AppendOnlyError(RuntimeError):
    """Raised on any attempt to change or delete an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events cannot be updated")

    def delete(self):
        raise AppendOnlyError("audit events cannot be deleted")

    def bulk_update(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be updated")

    def bulk_create(self, *args, **kwargs):
        # Rows must be chained one by one under the chain lock (audit_record).
        raise AppendOnlyError("audit events are written one at a time by audit.services.audit_record")

    def update_or_create(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be updated")


class AuditEvent(models.Model):
    OUTCOME_CHOICES = [(o, o.capitalize()) for o in actions.OUTCOMES]

    seq = models.BigIntegerField(unique=True, help_text="Position in the hash chain, from 1, without gaps.")
    created_at = models.DateTimeField(db_index=True)
    # No database foreign key: deleting a user must not touch (or be blocked by) the log; the
    # username and role are kept as they were at the time of the act.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    actor_role = models.CharField(max_length=16, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=100, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_label = models.CharField(max_length=255, blank=True)
    ip_address = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    outcome = models.CharField(max_length=16, choices=OUTCOME_CHOICES, default=actions.SUCCESS)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        indexes = [models.Index(fields=["object_type", "object_id", "-seq"], name="audit_object_idx")]

    def __str__(self):
        return f"#{self.seq} {self.action} by {self.actor_display} ({self.outcome})"

    @property
    def actor_display(self) -> str:
        """Who acted: the user; "system" for what the portal did by itself (a worker, a scheduled task, a
        management command: no user and no web request); "anonymous" for a web request with no logged-in user."""
        if self.actor_username:
            return self.actor_username
        return "anonymous" if (self.request_id or self.ip_address) else "system"

    @property
    def details_json(self) -> str:
        return json.dumps(self.details, sort_keys=True, ensure_ascii=False) if self.details else ""

    @property
    def action_label(self) -> str:
        return actions.LABELS.get(self.action, self.action)

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be changed once written")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be deleted")


class AuditChainHead(models.Model):
    """One row (pk=1): the newest link. Locked (SELECT ... FOR UPDATE) while a row is appended, so
    concurrent writers queue instead of forking the chain; also lets verification notice rows cut
    off the end of the log."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
