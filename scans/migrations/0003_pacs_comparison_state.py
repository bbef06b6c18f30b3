"""The comparison with the PACS's copy of a series, as kept before 2026-12-07, gets what is now kept with it:
`matches` in metadata["pacs_comparison"] (no slice altered or missing in the PACS's copy), which the scan list, its
CSV and the dashboard filter on (scans.selectors.pacs_copy_differs), and `pacs_checked_at` (when it was made), which
the periodic recheck schedules by (scans.services.pacs_recheck_due)."""
from datetime import datetime

from django.db import migrations, models


def fill(apps, schema_editor):
    Scan = apps.get_model("scans", "Scan")
    for scan in Scan.objects.filter(metadata__has_key="pacs_comparison").iterator():
        comparison = scan.metadata.get("pacs_comparison")
        if not isinstance(comparison, dict):
            continue
        comparison.setdefault(
            "matches", not comparison.get("altered_slices") and not comparison.get("missing_slices"))
        try:
            scan.pacs_checked_at = scan.pacs_checked_at or datetime.fromisoformat(comparison["at"])
        except (KeyError, TypeError, ValueError):
            pass
        scan.save(update_fields=["metadata", "pacs_checked_at"])


class Migration(migrations.Migration):
    dependencies = [("scans", "0002_dicominstance")]

    operations = [
        migrations.AddField(
            model_name="scan",
            name="pacs_checked_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
