import base64
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from reports.selectors import PENDING, dashboard_for


@pytest.fixture
def make_scan():
    from inference.models import InferenceJob
    from scans.models import Scan

    counter = iter(range(10_000))

    def make(owner, *, days_ago=0, status=None, verdict="", latency_s=None):
        n = next(counter)
        scan = Scan.objects.create(owner=owner, kind="image", original_name=f"s{n}.png", sha256=f"{n:064x}",
                                   size_bytes=10, n_slices=1, width=8, height=8, pixel_dtype="uint8")
        created = timezone.now() - timedelta(days=days_ago)
        Scan.objects.filter(pk=scan.pk).update(created_at=created)
        if status:
            job = InferenceJob.objects.create(scan=scan, status=status, verdict=verdict,
                                              confidence=0.9 if verdict else None)
            finished = created + timedelta(seconds=latency_s) if latency_s is not None else None
            InferenceJob.objects.filter(pk=job.pk).update(created_at=created, finished_at=finished)
        return scan

    return make


def test_a_doctor_sees_only_their_own_scans_by_verdict(doctor_a, doctor_b, make_scan):
    make_scan(doctor_a, days_ago=1, status="succeeded", verdict="fake_added", latency_s=5)
    make_scan(doctor_a, days_ago=1, status="succeeded", verdict="no_tumor", latency_s=5)
    make_scan(doctor_a, days_ago=3, status="queued")
    make_scan(doctor_a, days_ago=200, status="succeeded", verdict="real_tumor", latency_s=5)  # outside 30 days
    make_scan(doctor_b, days_ago=1, status="succeeded", verdict="fake_removed", latency_s=5)

    board = dashboard_for(user=doctor_a, range_name="30d")
    assert board.scans_total == 3
    assert board.verdict_totals == {"no_tumor": 1, "fake_added": 1, PENDING: 1}
    assert len(board.periods) == 30
    yesterday = board.periods.index((timezone.localdate() - timedelta(days=1)).strftime("%m-%d"))
    assert board.verdicts_over_time["fake_added"][yesterday] == 1
    assert board.jobs_over_time == {} and board.latency_overall == {}  # admin-only parts

    year = dashboard_for(user=doctor_a, range_name="365d")
    assert year.verdict_totals.get("real_tumor") == 1 and year.window.unit == "month"


def test_admin_sees_volumes_mix_latency_percentiles_and_failures(admin_user, doctor_a, doctor_b, make_scan):
    latencies = [2.0, 4.0, 5.0, 9.0, 30.0]
    for i, latency in enumerate(latencies):
        make_scan(doctor_a if i % 2 else doctor_b, days_ago=2, status="succeeded",
                  verdict="real_tumor" if i % 2 else "no_tumor", latency_s=latency)
    make_scan(doctor_a, days_ago=2, status="failed", latency_s=1)

    board = dashboard_for(user=admin_user, range_name="30d")
    assert board.scans_total == 6
    assert board.verdict_totals == {"real_tumor": 2, "no_tumor": 3, PENDING: 1}
    assert board.jobs_total == 6
    assert board.failure_rate == pytest.approx(1 / 6)
    assert board.latency_overall["p50"] == pytest.approx(np.percentile(latencies, 50))
    assert board.latency_overall["p95"] == pytest.approx(np.percentile(latencies, 95))
    day = board.periods.index(timezone.localtime(timezone.now() - timedelta(days=2)).strftime("%m-%d"))
    assert board.jobs_over_time["failed"][day] == 1
    assert board.latency_over_time["p95"][day] == pytest.approx(np.percentile(latencies, 95))


def test_dashboard_page_for_doctor_and_admin(client_a, client_admin, doctor_a, make_scan):
    make_scan(doctor_a, days_ago=0, status="succeeded", verdict="fake_removed", latency_s=3)
    doctor_html = client_a.get(reverse("reports:dashboard")).content.decode()
    assert "My scans" in doctor_html
    # The verdict in the doctor's words, as on the scan pages (card, table header, chart legend), not its key.
    assert '<span class="badge badge-fake_removed">Fake removed</span>' in doctor_html
    assert '<th class="num">Fake removed</th>' in doctor_html and '<th class="num">fake_removed</th>' not in doctor_html
    chart = base64.b64decode(doctor_html.split("data:image/svg+xml;base64,")[1].split('"')[0]).decode()
    assert "Fake removed" in chart and "fake removed" not in chart
    assert "Job latency" not in doctor_html
    assert doctor_html.count("data:image/svg+xml") == 1

    admin_page = client_admin.get(reverse("reports:dashboard"), {"range": "90d"})
    assert admin_page.status_code == 200
    html = admin_page.content.decode()
    assert "Portal dashboard" in html and "Job latency" in html
    assert html.count("data:image/svg+xml") == 4
    assert admin_page.context["board"].window.unit == "week"


def test_empty_dashboard(client_a):
    assert "No scans in this period yet." in client_a.get(reverse("reports:dashboard")).content.decode()


def test_the_dashboard_counts_scans_whose_dicom_headers_show_editing(client_a, doctor_a, doctor_b, admin_user,
                                                                     make_scan):
    from scans.models import Scan

    def flag(scan, status):
        Scan.objects.filter(pk=scan.pk).update(kind="dicom", metadata={"header_checks": {"status": status}})

    flag(make_scan(doctor_a, days_ago=1), "warnings")
    flag(make_scan(doctor_a, days_ago=2), "consistent")
    flag(make_scan(doctor_a, days_ago=200), "warnings")  # outside 30 days
    flag(make_scan(doctor_b, days_ago=1), "warnings")
    assert dashboard_for(user=doctor_a, range_name="30d").header_warnings == 1
    assert dashboard_for(user=doctor_a, range_name="365d").header_warnings == 2
    assert dashboard_for(user=admin_user, range_name="30d").header_warnings == 2
    page = client_a.get(reverse("reports:dashboard"), {"range": "30d"}).content.decode()
    assert f'<a href="{reverse("scans:list")}?headers=warnings">1</a>' in page
    assert "scan whose files were edited" in page


def test_admins_see_the_dicom_network_traffic_with_links_to_the_audit_log(client_a, client_admin, admin_user, doctor_a,
                                                                          settings):
    from audit import actions
    from audit.services import audit_record

    settings.PACS_DESTINATION, settings.DICOM_RECEIVER_PEERS = "ORTHANC@pacs:4242", "ORTHANC=doctor_a, MR1@10.0.0.5=x"
    quiet = client_admin.get(reverse("reports:dashboard")).content.decode()  # no scans, nothing sent: still shown
    assert "data-dicom-traffic" in quiet and "Nothing went over the DICOM network in this period." in quiet
    assert "takes series from ORTHANC (for doctor_a), MR1 at 10.0.0.5 (for x)" in quiet and "ORTHANC@pacs:4242" in quiet

    for action in (actions.DICOM_RECEIVED, actions.DICOM_RECEIVED, actions.DICOM_RECEIVE_FAILED, actions.PACS_SENT):
        audit_record(action=action, actor=doctor_a)
    board = dashboard_for(user=admin_user, range_name="30d")
    counts = {action: n for _, action, n in board.dicom.rows}
    assert (counts[actions.DICOM_RECEIVED], counts[actions.DICOM_RECEIVE_FAILED], counts[actions.PACS_SENT],
            counts[actions.PACS_RETRIEVED], board.dicom.waiting) == (2, 1, 1, 0, 0)
    later = dashboard_for(user=admin_user, range_name="30d", today=timezone.localdate() + timedelta(days=40))
    assert not later.dicom.any  # 40 days on, all of it is outside the window
    html = client_admin.get(reverse("reports:dashboard")).content.decode()
    link = f'{reverse("audit:list")}?action={actions.DICOM_RECEIVE_FAILED}&amp;date_from='
    assert link in html and f'<tr data-dicom-row="{actions.DICOM_RECEIVED}"><td>Series received over DICOM</td>' in html
    assert "data-dicom-traffic" not in client_a.get(reverse("reports:dashboard")).content.decode()  # admins only
    assert dashboard_for(user=doctor_a).dicom is None
