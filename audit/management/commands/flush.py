"""Django's `flush`, allowed to empty the audit log.

The audit table's PostgreSQL trigger refuses TRUNCATE; a whole-database flush (`manage.py flush`,
and the test runner between transactional tests) marks its own transaction so the trigger lets that
one TRUNCATE through, and the trigger honours the mark only in a Django test database (`test_*`).
UPDATE and DELETE stay refused everywhere."""
from django.core.management.commands.flush import Command as DjangoFlushCommand
from django.db import DEFAULT_DB_ALIAS, connections, transaction


class Command(DjangoFlushCommand):
    def handle(self, **options):
        alias = options.get("database") or DEFAULT_DB_ALIAS
        connection = connections[alias]
        if connection.vendor != "postgresql":
            return super().handle(**options)
        with transaction.atomic(using=alias):
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('audit.allow_flush', 'on', true)")
            return super().handle(**options)
