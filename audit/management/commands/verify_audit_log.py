from django.core.management.base import BaseCommand, CommandError

from audit.selectors import audit_chain_verify


class Command(BaseCommand):
    help = "Check the audit log's hash chain; exits non-zero at the first broken link."

    def handle(self, *args, **options):
        check = audit_chain_verify()
        if not check.ok:
            raise CommandError(
                f"audit log BROKEN after {check.checked} good event(s): {check.problem}"
            )
        self.stdout.write(
            self.style.SUCCESS(f"audit log intact: {check.checked} event(s), head #{check.head_seq} {check.head_hash}")
        )
