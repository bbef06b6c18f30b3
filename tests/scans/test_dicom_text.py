import pytest

from scans.dicom_text import patient_age, patient_sex, series_text, study_date


@pytest.mark.parametrize("value, text", [
    ("20061201", "2006-12-01"), (" 19991231 ", "1999-12-31"),
    ("20061301", "20061301"),  # no 13th month: shown as given, not guessed
    ("2006-12-01", "2006-12-01"), ("", ""), (20061201, "2006-12-01"),
])
def test_study_date(value, text):
    assert study_date(value) == text


@pytest.mark.parametrize("value, text", [
    ("045Y", "45 years"), ("001Y", "1 year"), ("006M", "6 months"), ("003W", "3 weeks"), ("010D", "10 days"),
    ("045y", "45 years"), ("45", "45"), ("forty", "forty"),
])
def test_patient_age(value, text):
    assert patient_age(value) == text


@pytest.mark.parametrize("value, text", [
    ("M", "Male"), ("f", "Female"), ("O", "Other"), ("0000", "0000 (not a DICOM sex code)"), ("", ""),
])
def test_patient_sex(value, text):
    assert patient_sex(value) == text


def test_series_text():
    assert series_text({"series_description": "sT2W/FLAIR", "modality": "MR", "study_date": "20061201"}) == (
        "sT2W/FLAIR, MR, study date 2006-12-01")
    assert series_text({"modality": "MR"}) == "MR"
    assert series_text({"format": "png"}) == ""
