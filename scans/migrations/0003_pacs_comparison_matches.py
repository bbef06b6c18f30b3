"""Comparisons with the PACS made before 2026-12-07 get `matches` (no slice altered or missing in the PACS's copy),
which the scan list, its CSV and the dashboard filter on (scans.selectors.pacs_copy_differs)."""
from django.db import migrations


def add_matches(apps, schema_editor):
    Scan = apps.get_model("scans", "Scan")
    for scan in Scan.objects.filter(metadata__has_key="pacs_comparison").iterator():
        comparison = scan.metadata.get("pacs_comparison")
        if not isinstance(comparison, dict) or "matches" in comparison:
            continue
        comparison["matches"] = not comparison.get("altered_slices") and not comparison.get("missing_slices")
        scan.save(update_fields=["metadata"])


class Migration(migrations.Migration):
    dependencies = [("scans", "0002_dicominstance")]

    operations = [migrations.RunPython(add_matches, migrations.RunPython.noop)]
