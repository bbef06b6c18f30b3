"""Every page a doctor or an admin uses, checked in headless Chromium with axe-core (the axe.min.js that the
axe-playwright-python package ships; nothing is downloaded) against WCAG 2.1 A and AA: no violations at all, in
the states that matter (a finished analysis with its overlay and review history, form errors, an empty list)."""
import pytest
from axe_playwright_python.sync_playwright import Axe
from django.db import connections
from django.urls import reverse

from reviews.services import review_record
from tests.reports.conftest import disk, store_analysis, upload_dicom  # noqa: F401  (upload_dicom: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
        "resultTypes": ["violations"]}


@pytest.fixture(autouse=True)
def _close_connections_made_under_the_browser_loop(page):
    yield
    connections.close_all()


def _violations(page) -> list[str]:
    results = Axe().run(page, options=WCAG).response
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes'][:3]]} {v['help']}"
            for v in results["violations"]]


def test_the_pages_meet_wcag_2_1_aa(page, login_as, doctor_a, admin_user, upload_dicom, settings, tmp_path):
    scan = upload_dicom(doctor_a)
    shape = (scan.height, scan.width)
    analysed = store_analysis(scan, verdicts={0: "no_tumor", 1: "fake_added", 2: "real_tumor"}, regions={
        1: [("fake_added", 0.91, disk(shape, (shape[0] // 3, shape[1] // 2), 14))],
        2: [("real_tumor", 0.8, disk(shape, (shape[0] // 2, shape[1] // 3), 10))]}, scan_verdict="fake_added")
    review_record(scan=scan, job_id=analysed.job.pk, verdict="fake_added", reviewer=doctor_a)
    review_record(scan=scan, job_id=analysed.job.pk, verdict="no_tumor", note="Flow artefact.", reviewer=admin_user)
    upload_dicom(doctor_a, indices=(4,))  # a scan still waiting for its analysis
    from audit import actions
    from audit.services import audit_record

    audit_record(action=actions.DICOM_RECEIVED, actor=doctor_a)  # the dashboard's DICOM network table has a row
    # The scan page's copy warnings: another stored copy with one altered slice, and a comparison with the PACS.
    from scans.services import scan_upload
    from tests.scans.test_copies import _files, _paint

    scan_upload(user=doctor_a, files=_files(change=_paint))
    settings.PACS_DESTINATION = "ORTHANC@pacs.example.org:4242"
    scan.metadata = {**scan.metadata, "pacs_comparison": {
        "destination": settings.PACS_DESTINATION, "at": "2026-12-07T06:28:00+00:00", "by": "doctor_a", "instances": 3,
        "same": 2, "altered_slices": [1], "missing_slices": [], "extra_in_pacs": 0, "seconds": 0.6}}
    scan.save(update_fields=["metadata"])

    page.goto(reverse("accounts:login"))
    found = {"log-in": _violations(page)}
    login_as(admin_user)
    for name, url in [
        ("scan list", reverse("scans:list")),
        ("scan list, invalid filter", reverse("scans:list") + "?review=maybe&date_from=x"),
        ("scan list, nothing matches", reverse("scans:list") + "?q=no-such-scan"),
        ("upload", reverse("scans:upload")),
        ("dashboard", reverse("reports:dashboard")),
        ("model", reverse("reports:model")),
        ("audit log", reverse("audit:list")),
        ("access history", reverse("audit:scan_history", args=[scan.pk])),
        ("users", reverse("accounts:user_list")),
        ("new user", reverse("accounts:user_create")),
        ("edit user", reverse("accounts:user_edit", args=[doctor_a.pk])),
        ("password change", reverse("accounts:password_change")),
        ("my account", reverse("accounts:me")),
        ("two-factor set-up", reverse("accounts:two_factor")),
    ]:
        page.goto(url)
        found[name] = _violations(page)

    page.goto(reverse("scans:detail", args=[scan.pk]))
    page.wait_for_selector("[data-slice-result]:not(.hidden)")  # viewer.js has drawn the results
    page.locator("[data-review-history] summary").click()
    page.locator("[data-review-again] summary").click()
    assert page.locator("[data-copy-warning]").count() == 1 and page.locator("[data-pacs-comparison-warning]").count() == 1
    assert page.locator("[data-compare-pacs] button").is_visible()
    found["scan page"] = _violations(page)
    page.check("[data-review-form] input[name=verdict][value=real_tumor]")
    page.click("[data-review-form] button[type=submit]")  # overruling without a note: refused
    assert "say why in the note" in page.locator("#review").inner_text()
    found["scan page, review refused"] = _violations(page)


    # DICOM headers that show editing: the warning above the result, the marked slice and its note, the findings
    import io

    import pydicom

    from inference.ml.provenance import check_series

    from reports.models import PacsTransfer

    settings.PACS_DESTINATION = "ORTHANC@pacs.example.org:4242"  # the "Send to PACS" button and its history
    PacsTransfer.objects.create(scan=scan, job=analysed.job, requested_by=admin_user, status="failed",
                                destination=settings.PACS_DESTINATION,
                                detail="Could not connect to the PACS: Connection refused (after at most 30 s).")
    datasets = [pydicom.dcmread(io.BytesIO(f.file.open("rb").read())) for f in scan.files.all()]
    datasets[1].file_meta.ImplementationVersionName = "EDITOR 1.0"
    scan.metadata["header_checks"] = check_series(datasets)
    scan.save(update_fields=["metadata"])
    page.goto(reverse("scans:detail", args=[scan.pk]))
    page.wait_for_selector("[data-summary-header] button")
    page.locator("[data-summary-header] button").first.click()
    page.locator("[data-header-checks] summary").click()
    assert page.locator("[data-send-to-pacs]").is_visible() and page.locator("[data-pacs-transfers]").is_visible()
    found["scan page, header warnings, PACS"] = _violations(page)
    page.locator("[data-menu] summary").click()  # the DICOM files menu, open
    found["scan page, DICOM files menu"] = _violations(page)

    # Import from the PACS: a real Orthanc holding the scan's series, searched; then a PACS that is not there.
    from tests.reports.orthanc import free_port, post_instance, running_orthanc

    with running_orthanc(tmp_path, dicom=True) as pacs:
        for f in scan.files.all():
            post_instance(pacs["http"], f.file.open("rb").read())
        settings.PACS_DESTINATION = pacs["destination"]
        page.goto(reverse("scans:pacs_import") + f"?patient_id={datasets[0].PatientID}")
        assert page.locator("[data-series]").count() == 1
        found["PACS import, results"] = _violations(page)
    settings.PACS_DESTINATION = f"ORTHANC@127.0.0.1:{free_port()}"
    page.goto(reverse("scans:pacs_import") + "?accession_number=123")
    assert page.locator("[data-search-error]").is_visible()
    found["PACS import, PACS down"] = _violations(page)

    assert {name: v for name, v in found.items() if v} == {}
