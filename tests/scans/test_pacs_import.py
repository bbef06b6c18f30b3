"""Import from the PACS: search a real Orthanc (DICOM C-FIND) by patient ID, accession number or date, retrieve one
series (C-GET) and store it as a scan through the upload's own path; audited without the searched values; a PACS
that is down, a series over the limits and bad input are refused with the reason and leave nothing behind."""
import re

import pydicom
import pytest
from django.urls import reverse

from audit import actions
from audit.models import AuditEvent
from inference.models import InferenceJob
from reports.pacs import PacsSeries, parse_destination, retrieve_series
from scans.models import Scan
from tests.reports.conftest import brainix_paths, report_pdf_text, store_analysis
from tests.reports.orthanc import free_port, post_instance, running_orthanc

SOURCE_INDICES = (9, 10, 11)


@pytest.fixture
def pacs(tmp_path, settings):
    """A real Orthanc holding three slices of the BRAINIX FLAIR series, as the portal's PACS."""
    with running_orthanc(tmp_path, dicom=True) as server:
        for path in brainix_paths(SOURCE_INDICES):
            post_instance(server["http"], path.read_bytes())
        settings.PACS_DESTINATION = server["destination"]
        yield server


def _source():
    return pydicom.dcmread(brainix_paths(SOURCE_INDICES)[0], stop_before_pixels=True)


def _search(client, **params):
    return client.get(reverse("scans:pacs_import"), params)


def test_a_search_lists_the_studies_and_their_series_and_audits_no_identifier(client_a, pacs):
    source = _source()
    page = _search(client_a, patient_id=source.PatientID)
    html = page.content.decode()
    assert page.status_code == 200 and html.count("data-study") == 1 and html.count("data-series") == 1
    assert "2006-12-01" in html and "sT2W/FLAIR" in html and 'name="series_uid"' in html
    assert f'value="{source.SeriesInstanceUID}"' in html
    event = AuditEvent.objects.get(action=actions.PACS_QUERIED)
    assert event.details["keys"] == ["patient_id"] and (event.details["studies"], event.details["series"]) == (1, 1)
    assert source.PatientID not in str(event.details)

    by_date = _search(client_a, study_date="2006-12-01").content.decode()
    assert by_date.count("data-study") == 1
    assert _search(client_a, study_date="2006-11-01", study_date_to="2006-12-31").content.decode().count(
        "data-study") == 1
    assert _search(client_a, study_date_to="2006-11-30").content.decode().count("data-study") == 0  # up to a day
    assert "The end date is before the start date." in _search(
        client_a, study_date="2006-12-02", study_date_to="2006-12-01").content.decode()
    none = _search(client_a, patient_id="nobody-here").content.decode()
    assert "No study matches this search." in none and "data-study" not in none
    wildcard = _search(client_a, patient_id=source.PatientID[:3] + "*").content.decode()
    assert wildcard.count("data-study") == 1


def test_importing_a_series_makes_a_scan_through_the_upload_path(client_a, doctor_a, pacs):
    source = _source()
    response = client_a.post(f"{reverse('scans:pacs_import')}?patient_id={source.PatientID}",
                             {"study_uid": source.StudyInstanceUID, "series_uid": source.SeriesInstanceUID})
    scan = Scan.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("scans:detail", args=[scan.pk])
    assert (scan.owner, scan.kind, scan.n_slices) == (doctor_a, "dicom", 3)
    assert scan.original_name == "sT2W-FLAIR-s401-0010.dcm (+2 more)"
    assert InferenceJob.objects.filter(scan=scan).count() == 1  # the detector runs, as after an upload
    assert scan.metadata["header_checks"]["status"] == "consistent"
    assert scan.metadata["origin"] == {"pacs": pacs["destination"]}
    page = client_a.get(reverse("scans:detail", args=[scan.pk])).content.decode()
    assert re.search(r"<dt>Imported</dt><dd data-origin>[^<]* by doctor_a from the PACS " + re.escape(
        pacs["destination"]), page)
    # The file meta is the portal's own (DICOM networking carries none): the page does not name a program for it.
    assert ("consistent (3 files, one program: this portal, on receipt from the PACS: which program saved the files "
            "before cannot be seen)") in page
    store_analysis(scan, verdicts={0: "no_tumor", 1: "no_tumor", 2: "no_tumor"}, regions={}, scan_verdict="no_tumor")
    text = report_pdf_text(client_a, scan.pk)
    assert "Imported by" in text and f"from the PACS {pacs['destination']}" in text, text
    # The pixels are the PACS's: the stored originals hold the same data sets as the files sent to it.
    stored = {pydicom.dcmread(f.file.open("rb")).SOPInstanceUID: pydicom.dcmread(f.file.open("rb")).PixelData
              for f in scan.files.all()}
    assert stored == {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).PixelData
                      for p in brainix_paths(SOURCE_INDICES)}
    event = AuditEvent.objects.get(action=actions.PACS_RETRIEVED)
    assert (event.details["scan_id"], event.details["instances"], event.details["created"]) == (scan.pk, 3, True)
    assert AuditEvent.objects.filter(action=actions.SCAN_UPLOADED).count() == 1

    again = client_a.post(reverse("scans:pacs_import"), {"study_uid": source.StudyInstanceUID,
                                                         "series_uid": source.SeriesInstanceUID}, follow=True)
    assert Scan.objects.count() == 1 and again.redirect_chain[-1][0] == reverse("scans:detail", args=[scan.pk])
    assert "You uploaded this exact file before" in again.content.decode()


def test_a_pacs_that_is_down_or_a_series_over_the_limits_stores_nothing(client_a, pacs, settings):
    source = _source()
    ids = {"study_uid": source.StudyInstanceUID, "series_uid": source.SeriesInstanceUID}
    settings.UPLOAD_MAX_FILES = 2
    refused = client_a.post(reverse("scans:pacs_import"), ids)
    assert refused.status_code == 502
    assert "more than 2 instances" in refused.content.decode() and "nothing was imported" in refused.content.decode()
    assert not Scan.objects.exists()

    settings.PACS_DESTINATION = f"ORTHANC@127.0.0.1:{free_port()}"  # nobody listens there
    down = _search(client_a, patient_id="x")
    assert down.status_code == 502 and "Could not connect to the PACS" in down.content.decode()
    assert client_a.post(reverse("scans:pacs_import"), ids).status_code == 502
    assert not Scan.objects.exists()
    failures = AuditEvent.objects.filter(action=actions.PACS_RETRIEVE_FAILED)
    assert failures.count() == 2 and {e.outcome for e in failures} == {"failure"}


def test_bad_input_is_refused_with_the_reason(client_a, pacs):
    empty = _search(client_a, patient_id="**").content.decode()
    assert "a search needs at least one" in empty and "data-study" not in empty
    bad = client_a.post(reverse("scans:pacs_import"), {"study_uid": "1.2.3", "series_uid": "not-a-uid"})
    assert bad.status_code == 400 and "Series Instance UID" in bad.content.decode()
    assert not AuditEvent.objects.filter(action__startswith="pacs.r").exists()


def test_without_a_pacs_the_page_says_so_and_the_upload_page_does_not_offer_it(client_a, settings):
    settings.PACS_DESTINATION = ""
    assert "No PACS is configured" in client_a.get(reverse("scans:pacs_import")).content.decode()
    assert "data-pacs-import-link" not in client_a.get(reverse("scans:upload")).content.decode()
    refused = client_a.post(reverse("scans:pacs_import"), {"study_uid": "1.2.3", "series_uid": "1.2.4"})
    assert refused.status_code == 409 and "No PACS is configured" in refused.content.decode()
    settings.PACS_DESTINATION = "ORTHANC@pacs.example.org:4242"
    assert "data-pacs-import-link" in client_a.get(reverse("scans:upload")).content.decode()


def test_anonymous_users_are_sent_to_log_in(client):
    assert client.get(reverse("scans:pacs_import")).status_code == 302


def test_series_without_images_are_not_offered():
    assert not PacsSeries("1.2", "1.2.3", "SEG", "1401", "Tamper check", 1).is_image
    assert PacsSeries("1.2", "1.2.3", "MR", "401", "FLAIR", 22).is_image


def test_retrieve_refuses_a_series_the_pacs_does_not_hold(tmp_path):
    with running_orthanc(tmp_path, dicom=True) as server:
        with pytest.raises(Exception, match="nothing was imported"):
            retrieve_series(parse_destination(server["destination"]), study_uid="1.2.3", series_uid="1.2.3.4",
                            timeout=10)


def test_the_api_searches_and_imports(client_a, pacs, settings):
    source = _source()
    found = client_a.get(reverse("api-pacs-studies"), {"accession_number": str(source.AccessionNumber)})
    assert found.status_code == 200, found.content
    (study,) = found.json()["studies"]
    assert (study["date"], study["study_uid"], found.json()["more"]) == ("2006-12-01", source.StudyInstanceUID, False)
    (series,) = study["series"]
    assert (series["modality"], series["number"], series["instances"], series["is_image"]) == ("MR", "401", 3, True)

    made = client_a.post(reverse("api-scan-pacs-import"), {"study_uid": series["study_uid"],
                                                            "series_uid": series["series_uid"], "sequence": "flair"},
                         content_type="application/json")
    assert made.status_code == 201, made.content
    assert made.json()["created"] is True and made.json()["scan"]["n_slices"] == 3
    again = client_a.post(reverse("api-scan-pacs-import"), {"study_uid": series["study_uid"],
                                                             "series_uid": series["series_uid"]},
                          content_type="application/json")
    assert again.status_code == 200 and again.json()["scan"]["id"] == made.json()["scan"]["id"]

    bad = client_a.get(reverse("api-pacs-studies"))
    assert bad.status_code == 400 and "a search needs at least one" in str(bad.json()["detail"])
    assert client_a.post(reverse("api-scan-pacs-import"), {"study_uid": "x"},
                         content_type="application/json").status_code == 400
    settings.PACS_DESTINATION = f"ORTHANC@127.0.0.1:{free_port()}"
    down = client_a.get(reverse("api-pacs-studies"), {"patient_id": "x"})
    assert down.status_code == 502 and "Could not connect to the PACS" in down.json()["error"]
    settings.PACS_DESTINATION = ""
    assert client_a.get(reverse("api-pacs-studies"), {"patient_id": "x"}).status_code == 409
