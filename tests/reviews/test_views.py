"""The review panel of the scan page, the review column and filter of the scan list, and the review in the PDF
report and the results CSV."""
import csv
import io
import re

import pytest
from django.urls import reverse

from inference.models import InferenceJob
from reviews.models import Review
from reviews.services import review_record
from tests.reports.conftest import report_pdf_text

pytestmark = pytest.mark.django_db


def _post(client, scan, job, verdict, note=""):
    return client.post(reverse("reviews:create", args=[scan.pk]), {"job": job.pk, "verdict": verdict, "note": note})


def _panel(response) -> str:
    html = response.content.decode()
    return html[html.index('id="review"'):html.index("</section>", html.index('id="review"'))]


def test_the_scan_page_offers_the_review_with_the_detector_verdict_chosen(client_a, analysed):
    panel = _panel(client_a.get(reverse("scans:detail", args=[analysed.scan.pk])))
    assert "Not reviewed yet." in panel
    assert re.search(r'<input type="radio" name="verdict" value="fake_added"[^>]*checked', panel)
    assert f'name="job" value="{analysed.job.pk}"' in panel
    assert "the detector said\n        <span data-review-detector-verdict>Fake added</span>" in panel


def test_confirming_on_the_page_shows_the_review(client_a, analysed):
    response = _post(client_a, analysed.scan, analysed.job, "fake_added")
    assert response.status_code == 302 and response["Location"].endswith(f"/scans/{analysed.scan.pk}/#review")
    page = client_a.get(response["Location"])
    assert "Review recorded: confirmed, Fake added." in page.content.decode()
    panel = _panel(page)
    assert re.search(r"data-review-decision>Confirmed</span>\s*<span class=\"badge badge-fake_added\" "
                     r"data-review-verdict>Fake added</span>\s*by doctor_a", panel)
    assert "Review again" in panel and "Not reviewed yet." not in panel


def test_overruling_without_a_note_keeps_what_was_chosen_and_says_why(client_a, analysed):
    response = _post(client_a, analysed.scan, analysed.job, "no_tumor")
    assert response.status_code == 400
    panel = _panel(response)
    assert "say why in the note" in panel
    assert re.search(r'<input type="radio" name="verdict" value="no_tumor"[^>]*checked', panel)
    assert Review.objects.count() == 0

    response = _post(client_a, analysed.scan, analysed.job, "no_tumor", "Flow artefact <b>not</b> a lesion.")
    assert response.status_code == 302
    panel = _panel(client_a.get(reverse("scans:detail", args=[analysed.scan.pk])))
    assert "data-review-decision>Overruled" in panel and "(the detector said Fake added)" in panel
    assert "Flow artefact &lt;b&gt;not&lt;/b&gt; a lesion." in panel  # escaped


def test_a_review_of_a_replaced_analysis_is_a_conflict_and_the_note_is_kept(client_a, analysed, doctor_a):
    InferenceJob.objects.create(scan=analysed.scan, requested_by=doctor_a)
    response = _post(client_a, analysed.scan, analysed.job, "no_tumor", "my careful note")
    assert response.status_code == 409
    body = response.content.decode()
    assert "Reload the scan page" in body and "my careful note</textarea>" in body
    assert Review.objects.count() == 0


def test_a_scan_still_being_analysed_has_no_open_form(client_a, doctor_a, upload_dicom):
    scan = upload_dicom(doctor_a)
    panel = _panel(client_a.get(reverse("scans:detail", args=[scan.pk])))
    assert "A review can be recorded once the analysis has finished." in panel
    assert re.search(r'class="form hidden" data-review-form', panel)


def test_another_doctor_cannot_review_or_see_the_form(client_b, client, analysed):
    assert _post(client_b, analysed.scan, analysed.job, "fake_added").status_code == 404
    response = _post(client, analysed.scan, analysed.job, "fake_added")  # not logged in
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client_b.get(reverse("reviews:create", args=[analysed.scan.pk])).status_code in (302, 405)
    assert Review.objects.count() == 0


def test_an_admin_reviews_and_the_history_keeps_the_first(client_admin, analysed, doctor_a, admin_user):
    review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict="fake_added", reviewer=doctor_a)
    assert _post(client_admin, analysed.scan, analysed.job, "real_tumor", "Enhancing rim.").status_code == 302
    panel = _panel(client_admin.get(reverse("scans:detail", args=[analysed.scan.pk])))
    assert "by admin_1" in panel and "Earlier reviews (1)" in panel and "doctor_a: Confirmed, Fake added" in panel


def test_the_scan_list_shows_and_filters_by_review(client_a, analysed, doctor_a, upload_dicom):
    pending = upload_dicom(doctor_a, indices=(4, 5))
    listing = lambda **q: client_a.get(reverse("scans:list"), q)  # noqa: E731
    names = lambda r: re.findall(r'href="/scans/(\d+)/"', r.content.decode())  # noqa: E731

    assert names(listing(review="awaiting")) == [str(analysed.scan.pk)]
    assert "awaiting" in listing().content.decode()
    assert "1 analysed scan awaits a radiologist's review</a>" in listing().content.decode()
    assert "data-awaiting-review" not in listing(review="awaiting").content.decode()
    review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict="no_tumor", note="artefact", reviewer=doctor_a)
    assert names(listing(review="awaiting")) == []
    assert "data-awaiting-review" not in listing().content.decode()
    assert names(listing(review="overruled")) == [str(analysed.scan.pk)]
    assert names(listing(review="confirmed")) == []
    html = listing().content.decode()
    assert "Overruled</span><div class=\"small\">read as No tumor</div>" in html
    assert set(names(listing())) == {str(analysed.scan.pk), str(pending.pk)}
    bad = listing(review="maybe")
    assert "Select a valid choice" in bad.content.decode()


def test_every_page_counts_the_scans_awaiting_review_beside_scans(client_a, client_b, analysed, doctor_a,
                                                                     upload_dicom):
    upload_dicom(doctor_a, indices=(4, 5))  # still queued: nothing to review yet
    html = client_a.get(reverse("accounts:me")).content.decode()
    link = f'<a class="nav-count" href="{reverse("scans:list")}?review=awaiting" data-nav-awaiting '
    assert re.search(re.escape(link) + r'[^>]*>1<span class="visually-hidden"> awaiting review</span></a>', html), html
    assert "data-nav-awaiting" not in client_b.get(reverse("accounts:me")).content.decode()  # not doctor_b's
    review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict="fake_added", reviewer=doctor_a)
    assert "data-nav-awaiting" not in client_a.get(reverse("accounts:me")).content.decode()


def test_the_pdf_and_the_results_csv_carry_the_review(client_a, analysed, doctor_a):
    def pdf_text():
        return report_pdf_text(client_a, analysed.scan.pk)

    assert "Radiologist's review: None recorded when this report was generated" in pdf_text()
    review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict="no_tumor", reviewer=doctor_a,
                  note="Flow artefact on slice 2.")
    text = pdf_text()
    assert re.search(r"Radiologist's review: Overruled by doctor_a on \d{4}-\d\d-\d\d \d\d:\d\d UTC: read as No "
                     r"tumor \(the detector said Fake added\)\. Note: Flow artefact on slice 2\.", text), text

    rows = list(csv.DictReader(io.StringIO(client_a.get(reverse("reports:results_csv")).content.decode())))
    assert len(rows) == 1
    row = rows[0]
    assert (row["verdict"], row["review_verdict"], row["review_agrees"], row["reviewed_by"], row["review_note"]) == (
        "fake_added", "no_tumor", "no", "doctor_a", "Flow artefact on slice 2.")
    rows = list(csv.DictReader(io.StringIO(
        client_a.get(reverse("reports:results_csv"), {"review": "confirmed"}).content.decode())))
    assert rows == []


def test_once_reviewed_the_form_is_folded_away_unless_a_new_review_was_refused(client_a, analysed, doctor_a):
    review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict="fake_added", reviewer=doctor_a)
    panel = _panel(client_a.get(reverse("scans:detail", args=[analysed.scan.pk])))
    assert "<details data-review-again><summary>Review again</summary>" in panel
    panel = _panel(_post(client_a, analysed.scan, analysed.job, "real_tumor"))
    assert "<details data-review-again open><summary>Review again</summary>" in panel
    assert "say why in the note" in panel


def test_the_dashboard_sums_up_the_reviews(client_a, client_b, analysed, doctor_a, doctor_b, upload_dicom):
    from reports.selectors import dashboard_for
    from tests.reports.conftest import store_analysis

    second = store_analysis(upload_dicom(doctor_a, indices=(4, 5)), verdicts={0: "no_tumor", 1: "no_tumor"},
                            regions={}, scan_verdict="no_tumor")
    upload_dicom(doctor_a, indices=(6,))  # still queued: not counted as analysed
    board = dashboard_for(user=doctor_a)
    assert (board.reviews.analysed, board.reviews.reviewed, board.reviews.awaiting) == (2, 0, 2)
    assert "2 await review" in client_a.get(reverse("reports:dashboard")).content.decode()

    review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict="fake_added", reviewer=doctor_a)
    review_record(scan=second.scan, job_id=second.job.pk, verdict="real_tumor", note="small lesion", reviewer=doctor_a)
    review_record(scan=second.scan, job_id=second.job.pk, verdict="no_tumor", reviewer=doctor_a)  # supersedes
    review_record(scan=second.scan, job_id=second.job.pk, verdict="real_tumor", note="on reflection",
                  reviewer=doctor_a)
    reviews = dashboard_for(user=doctor_a).reviews
    assert (reviews.analysed, reviews.reviewed, reviews.confirmed, reviews.overruled) == (2, 2, 1, 1)
    assert reviews.agreement == 0.5
    assert reviews.pairs == {("fake_added", "fake_added"): 1, ("no_tumor", "real_tumor"): 1}
    html = client_a.get(reverse("reports:dashboard")).content.decode()
    assert re.search(r"Of 2 analysed scans, 2 reviewed:\s+radiologists <strong>confirmed the detector's verdict "
                     r"on 1</strong> \(50%\)\s+and overruled it on 1\. None awaits review\.", html)
    # Another doctor sees none of it.
    assert dashboard_for(user=doctor_b).reviews.analysed == 0
    assert 'id="reviews"' not in client_b.get(reverse("reports:dashboard")).content.decode()


def test_a_note_cannot_run_as_a_spreadsheet_formula(client_a, analysed, doctor_a):
    review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict="no_tumor", reviewer=doctor_a,
                  note='=HYPERLINK("http://x.example","see prior")')
    row = next(csv.DictReader(io.StringIO(client_a.get(reverse("reports:results_csv")).content.decode())))
    assert row["review_note"] == '\'=HYPERLINK("http://x.example","see prior")'


def test_the_model_page_shows_how_the_installed_model_fared_with_radiologists(
        settings, client_b, analysed, doctor_a, doctor_b, upload_dicom, tmp_path):
    from inference.ml.model import save_random_bundle
    from inference.ml.predictor import file_sha256
    from reports.selectors import model_review_summary
    from tests.reports.conftest import store_analysis

    weights = save_random_bundle(tmp_path / "installed.pt", backbone="tiny", seed=0)
    settings.DETECTOR_WEIGHTS = str(weights)
    sha = file_sha256(weights)
    page = lambda: client_b.get(reverse("reports:model")).content.decode()  # noqa: E731
    assert "This model has not analysed a scan on this portal yet." in page()

    # analyses by the installed weights (another doctor's scans count too: counts only), and one by other weights
    mine = store_analysis(upload_dicom(doctor_b, indices=(4,)), verdicts={0: "no_tumor"}, regions={},
                          scan_verdict="no_tumor", model=("m", "1", sha))
    theirs = store_analysis(upload_dicom(doctor_a, indices=(5,)), verdicts={0: "real_tumor"}, regions={},
                            scan_verdict="real_tumor", model=("m", "1", sha))
    review_record(scan=analysed.scan, job_id=analysed.job.pk, verdict="fake_added", reviewer=doctor_a)  # other model
    review_record(scan=mine.scan, job_id=mine.job.pk, verdict="fake_removed", note="erased lesion", reviewer=doctor_b)
    review_record(scan=mine.scan, job_id=mine.job.pk, verdict="no_tumor", reviewer=doctor_b)  # the newest counts
    review_record(scan=theirs.scan, job_id=theirs.job.pk, verdict="fake_added", note="pasted", reviewer=doctor_a)
    summary = model_review_summary(sha)
    assert (summary.analysed, summary.reviewed, summary.confirmed) == (2, 2, 1)
    assert summary.pairs == {("no_tumor", "no_tumor"): 1, ("real_tumor", "fake_added"): 1}
    html = page()
    assert re.search(r"This model has made\s+2 analyses here; 2 were reviewed by a radiologist, who\s+<strong>confirmed "
                     r"the verdict 1 time</strong> \(50%\) and overruled it\s+1 time\.", html)
    assert "Radiologist: Fake added" in html and "doctor_a" not in html
