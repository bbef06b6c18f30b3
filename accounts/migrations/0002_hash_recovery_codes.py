"""Recovery codes stored before session 43 were plain text (8 characters) in django-otp's StaticToken: keep them
usable, stored from now on as the digest accounts.two_factor.recovery_digest makes (16 hex characters)."""
import hashlib

from django.db import migrations

RECOVERY_NAME = "recovery codes"


def digest(user_id, code):  # a frozen copy of accounts.two_factor.recovery_digest
    normalised = code.replace("-", "").replace(" ", "").lower()
    return hashlib.sha256(f"mri-tamper-recovery:{user_id}:{normalised}".encode()).hexdigest()[:16]


def hash_plain_codes(apps, schema_editor):
    StaticToken = apps.get_model("otp_static", "StaticToken")
    for token in StaticToken.objects.filter(device__name=RECOVERY_NAME).select_related("device"):
        if len(token.token) == 8:  # a digest has 16 characters
            token.token = digest(token.device.user_id, token.token)
            token.save(update_fields=["token"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("otp_static", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(hash_plain_codes, migrations.RunPython.noop)]
