"""In headless Chromium: a doctor logs in, uploads a DICOM series, watches the job and sees the result page work
(verdicts, the mask overlay drawn from the RLEs, the slice slider, window/level on the 16-bit source).

The job is run by the real service (`inference.services.job_run`) in the test process, standing in for the worker
(the end-to-end test in tests/e2e runs a real worker process); the page only sees what the API serves.
"""
import re

import numpy as np
import pytest
from django.db import connections
from django.urls import reverse
from PIL import Image

from inference import services
from inference.models import VERDICT_LABELS, InferenceJob
from tests.inference.conftest import (  # noqa: F401  (fixtures)
    BRAINIX_FLAIR,
    _fast_password_hashing,
    detector_with_regions,
    regions_bundle,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

@pytest.fixture(autouse=True)
def _close_connections_made_under_the_browser_loop(page):
    """ORM calls made while Playwright's loop runs get their own connection; close it before the database goes."""
    yield
    connections.close_all()


def _percent(text: str) -> float:
    """'confidence 87.5%' -> 87.5"""
    return float(re.search(r"([0-9.]+)%", text).group(1))


def _overlay_pixels(page) -> int:
    return page.evaluate(
        """() => {
            const c = document.querySelector('[data-overlay]');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n;
        }"""
    )


def test_doctor_uploads_a_series_and_sees_the_result(page, login_as, live_server, doctor_a, detector_with_regions,
                                                     settings, tmp_path):
    import json
    import shutil

    from inference.ml.predictor import file_sha256
    from inference.ml.scan_rule import scan_rule_path

    # the weights with a scan rule beside them (the shipped model has one), so the scan verdict is a probability
    weights = shutil.copy(detector_with_regions, tmp_path / "detector.pt")
    scan_rule_path(weights).write_text(json.dumps({"model_sha256": file_sha256(weights),
                                                   "rule": {"threshold": 0.7, "min_slices": 1}}))
    settings.DETECTOR_WEIGHTS = str(weights)
    from reports.selectors import model_card_current, verdict_guide_text, verdict_guides
    from reports.services import evaluation_run_record
    from tests.reports.conftest import metrics_from_confusion, series_metrics_doc

    # and a series evaluation of these weights and rule: under a verdict of tampering the page says how often
    # processed authentic series were flagged
    (tmp_path / "evaluation" / "series").mkdir(parents=True)
    (tmp_path / "evaluation" / "series" / "series_metrics.json").write_text(json.dumps(
        series_metrics_doc(file_sha256(weights), {"threshold": 0.7, "min_slices": 1, "slope": 1.0})))

    # a measured evaluation of the installed weights: the slice panel says what each verdict has meant in it
    matrix = np.array([[5, 1, 0, 1], [1, 6, 0, 0], [0, 1, 4, 0], [1, 0, 0, 2]])
    evaluation_run_record(metrics=metrics_from_confusion(matrix, version="9.9.9",
                                                         sha=file_sha256(detector_with_regions)),
                          dataset_dir="d", out_dir="o", split="test")
    guides = {v: verdict_guide_text(g) for v, g in verdict_guides(model_card_current()).items()}
    login_as(doctor_a)
    page.goto(reverse("scans:upload"))
    files = sorted(BRAINIX_FLAIR.iterdir())[8:12]
    page.set_input_files("#upload-form input[type=file]", [str(f) for f in files])
    page.click("#upload-submit")
    page.wait_for_url(lambda url: "/scans/" in url and "/upload" not in url, timeout=30_000)

    job = InferenceJob.objects.get(scan__owner=doctor_a)
    status = page.locator("[data-job-status]")
    assert status.inner_text() in ("Queued", "Running")
    caveat = page.locator("[data-scan-processed-caveat]")
    assert caveat.count() == 1 and not caveat.is_visible()  # rendered for the job to come, shown by its verdict

    services.job_run(job_id=job.pk)  # what the worker does
    job.refresh_from_db()
    assert job.status == InferenceJob.Status.SUCCEEDED, job.error_message

    # The page polls the job API and switches to the result without a reload.
    page.wait_for_selector("[data-job-verdict]:not(.hidden)", timeout=15_000)
    assert status.inner_text() == "Succeeded" and "badge-done" in status.get_attribute("class")
    assert page.locator("[data-scan-verdict]").inner_text() == VERDICT_LABELS[job.verdict]
    assert _percent(page.locator("[data-scan-confidence]").inner_text()) == pytest.approx(job.confidence * 100, abs=0.051)
    # viewer.js writes the scores line as the server does on a reload (inference.models.scores_text)
    from inference.models import scan_rule_text, scores_text

    assert page.locator("[data-scan-scores]").inner_text() == scores_text(job.scores)
    assert page.locator("[data-scan-rule]").inner_text() == scan_rule_text(job.scan_rule)  # and how it was reached
    from inference.models import tamper_odds_text

    assert job.scan_rule["threshold"] == 0.7  # and what its probability becomes where tampering is rare
    assert page.locator("[data-scan-odds]").inner_text() == tamper_odds_text(job) != ""
    assert page.locator("[data-scan-odds-label]").is_visible()
    assert caveat.is_visible() == (job.verdict in ("fake_added", "fake_removed"))
    assert caveat.inner_text().startswith("Authentic scans are flagged too: of 18 authentic test and validation series")
    assert page.locator("#masks-download").is_visible()

    # Per-slice verdicts: the strip has one cell per slice; the slice panel shows the current slice's result.
    page.wait_for_selector("[data-slice-result]:not(.hidden)")
    assert page.locator("[data-slice-strip] button").count() == 4

    # The summary under the strip: each verdict's slice count, and for findings the slices, each a button.
    verdicts = list(job.slice_results.order_by("index").values_list("verdict", flat=True))
    summary = page.locator("[data-slice-summary]")
    assert summary.is_visible()
    for verdict in set(verdicts):
        row = summary.locator(f"[data-summary-verdict={verdict}]")
        n = verdicts.count(verdict)
        assert row.inner_text().startswith(f"{VERDICT_LABELS[verdict]} {n} slice{'s' if n > 1 else ''}")
    assert summary.locator("li").count() == len(set(verdicts))
    finding = next((v for v in ("fake_added", "fake_removed", "real_tumor") if v in verdicts), None)
    assert finding, verdicts  # the regions bundle finds something on these slices
    summary.locator(f"[data-summary-verdict={finding}] button").first.click()
    assert page.locator("[data-slice-label]").inner_text() == str(verdicts.index(finding) + 1)
    page.locator("[data-slice-slider]").fill("2")
    middle = job.slice_results.get(index=2)
    assert _percent(page.locator("[data-slice-confidence]").inner_text()) == pytest.approx(
        middle.confidence * 100, abs=0.051
    )
    guide = page.locator("[data-slice-verdict-guide]").inner_text()
    assert guide == "Reading this verdict: " + guides[middle.verdict]

    # The overlay is drawn from the instance RLEs: exactly the mask's pixels.
    assert page.locator("[data-overlay-controls]").is_visible()
    assert "Fake: tumor added" in page.locator("[data-overlay-controls]").inner_text()
    drawn = _overlay_pixels(page)
    with middle.mask.open("rb") as fh:
        assert drawn == int(np.count_nonzero(np.asarray(Image.open(fh))))
    page.uncheck("[data-overlay-toggle]")
    assert _overlay_pixels(page) == 0
    page.check("[data-overlay-toggle]")

    # The slider moves through the slices.
    page.locator("[data-slice-slider]").fill("0")
    assert page.locator("[data-slice-label]").inner_text() == "1"
    assert page.locator("[data-slice-img]").get_attribute("src").endswith("/slices/0.png")

    # Window/level on the 16-bit source: the slice is redrawn from the native values.
    page.locator("[data-window-width]").fill("100")
    page.wait_for_selector("[data-slice-canvas]:not(.hidden)")
    page.wait_for_function(
        """() => { const c = document.querySelector('[data-slice-canvas]');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   for (let i = 0; i < d.length; i += 4) if (d[i] > 0 && d[i] < 255) return true; return false; }"""
    )
    assert page.locator("[data-window-status]").inner_text() == ""

    # The mask download link of a slice with a region works for its owner.
    link = page.locator("[data-slice-mask-download]")
    assert link.is_visible()
    response = page.request.get(live_server.url + link.get_attribute("href"))
    assert response.status == 200 and response.headers["content-type"] == "image/png"

    # The radiologist's review: the form opened when the job finished (no reload), the detector's verdict chosen.
    form = page.locator("[data-review-form]")
    assert form.is_visible()
    assert page.locator(f'[data-review-form] input[name=verdict][value={job.verdict}]').is_checked()
    assert page.locator("[data-review-detector-verdict]").inner_text() == VERDICT_LABELS[job.verdict]
    assert page.locator("[data-review-waiting]").inner_text().startswith("Not reviewed yet.")
    other = next(v for v in ("no_tumor", "real_tumor") if v != job.verdict)
    page.check(f"[data-review-form] input[name=verdict][value={other}]")
    page.click("[data-review-form] button[type=submit]")
    # Overruling the detector without a note: refused, and the page keeps the choice.
    assert "say why in the note" in page.locator("#review").inner_text()
    assert page.locator(f"[data-review-form] input[name=verdict][value={other}]").is_checked()
    page.fill("[data-review-form] textarea[name=note]", "Flow artefact; the prior study shows the same.")
    page.click("[data-review-form] button[type=submit]")
    page.wait_for_url(lambda url: url.endswith("#review"))
    assert page.locator("[data-review-decision]").inner_text() == "Overruled"
    assert page.locator("[data-review-verdict]").inner_text() == VERDICT_LABELS[other]
    assert page.locator("[data-review-note]").inner_text() == "Flow artefact; the prior study shows the same."
