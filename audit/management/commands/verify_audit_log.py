from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify


class Command(BaseCommand):
    help = ("Check the audit log's hash chain; exits 1 at the first broken link. Prints the head (seq and hash): "
            "record it outside the database and pass it back with --expect to prove nothing was cut or rewritten.")

    def add_arguments(self, parser):
        parser.add_argument("--expect", action="append", default=[], metavar="SEQ:HASH",
                            help="a head printed by an earlier run; the log must still hold that event unchanged "
                                 "(repeatable)")

    def handle(self, *args, **options):
        anchors = []
        for value in options["expect"]:
            seq, _, digest = value.partition(":")
            if not seq.isdigit() or len(digest) != 64:
                raise CommandError(f"--expect takes SEQ:HASH (a 64-hex SHA-256), not {value!r}")
            anchors.append((int(seq), digest.lower()))

        check = audit_chain_verify()
        if not check.ok:
            raise CommandError(f"audit log BROKEN after {check.checked} good event(s): {check.problem}")
        for seq, digest in anchors:
            stored = AuditEvent.objects.filter(seq=seq).values_list("hash", flat=True).first()
            if stored is None:
                raise CommandError(f"audit log BROKEN: event #{seq}, recorded earlier, is gone (the log ends at "
                                   f"#{check.head_seq})")
            if stored != digest:
                raise CommandError(f"audit log BROKEN: event #{seq} no longer has the hash recorded earlier: the "
                                   "log was rewritten from there on")
        self.stdout.write(self.style.SUCCESS(
            f"audit log intact: {check.checked} event(s), head {check.head_seq}:{check.head_hash}"
            + (f"; {len(anchors)} recorded head(s) confirmed" if anchors else "")))
