from django import forms

from inference.ml.sequence import DECLARABLE, LABELS
from inference.models import VERDICT_CHOICES
from scans.ingest import ACCEPTED_HELP
from scans.selectors import (
    COPIES_ALTERED,
    COPIES_PACS_DIFFERS,
    HEADERS_CLEAN,
    HEADERS_UNCHECKED,
    HEADERS_WARNINGS,
    REVIEW_AWAITING,
    REVIEW_CONFIRMED,
    REVIEW_OVERRULED,
    VERDICT_PENDING,
)

VERDICT_FILTER_CHOICES = [("", "Any verdict"), *VERDICT_CHOICES, (VERDICT_PENDING, "No verdict yet")]
REVIEW_FILTER_CHOICES = [("", "Any review"), (REVIEW_AWAITING, "Awaiting review"),
                         (REVIEW_CONFIRMED, "Confirmed by a radiologist"), (REVIEW_OVERRULED, "Overruled by a radiologist")]
HEADERS_FILTER_CHOICES = [("", "Any"), (HEADERS_WARNINGS, "Signs of editing"), (HEADERS_CLEAN, "No sign of editing"),
                          (HEADERS_UNCHECKED, "Not checked yet")]
COPIES_FILTER_CHOICES = [("", "Any"), (COPIES_ALTERED, "A copy with other pixels"),
                         (COPIES_PACS_DIFFERS, "The PACS's copy differs")]


class ScanFilterForm(forms.Form):
    """Filters of the scan list, for the page, the API and the results CSV (GET parameters)."""

    q = forms.CharField(
        required=False, max_length=100, label="Search", strip=True,
        help_text="Part of the file name, series description or protocol name, the start of the SHA-256 (6 hex "
        "digits or more), or the scan number (#12); an admin also finds scans by their owner's user name.",
    )
    verdict = forms.ChoiceField(choices=VERDICT_FILTER_CHOICES, required=False)
    review = forms.ChoiceField(
        choices=REVIEW_FILTER_CHOICES, required=False,
        help_text="The radiologist's review of the latest analysis: awaiting (analysed, not reviewed), confirmed "
        "or overruled (its newest review).",
    )
    headers = forms.ChoiceField(
        choices=HEADERS_FILTER_CHOICES, required=False, label="DICOM headers",
        help_text="The DICOM header checks made at upload: signs that files were edited, replaced or mixed in; no "
        "such sign; or a DICOM scan uploaded before the checks existed.",
    )
    copies = forms.ChoiceField(
        choices=COPIES_FILTER_CHOICES, required=False, label="Other copies",
        help_text="Scans of which another stored copy (the same DICOM instances, by UID) has other pixels: one of "
        "the two copies was altered; or whose latest comparison with the PACS found images altered or missing in "
        "the PACS's copy.",
    )
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented pattern); the upload service validates them."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, (list, tuple)):
            return [super(MultipleFileField, self).clean(d, initial) for d in data if d] or None
        return [super().clean(data, initial)] if data else None


SEQUENCE_CHOICES = [("", "Read it from the file"), *((key, LABELS[key]) for key in DECLARABLE)]


class ScanUploadForm(forms.Form):
    files = MultipleFileField(
        required=False,  # "no file" is answered by the upload service, with the same message as the API
        label="Scan files",
        help_text=f"{ACCEPTED_HELP}. Several DICOM files of one series form one scan.",
    )
    sequence = forms.ChoiceField(
        choices=SEQUENCE_CHOICES, required=False, label="MRI sequence",
        help_text="The detector was trained on FLAIR and T1 post-contrast. A DICOM series says which it is; a PNG, "
        "JPEG, TIFF or NIfTI usually does not, so state it here.",
    )


UID = r"[0-9]+(\.[0-9]+)*"


class PacsSearchForm(forms.Form):
    """The PACS search of the import page (GET parameters): at least one key; DICOM wildcards (* ?) allowed."""

    patient_id = forms.CharField(required=False, max_length=64, label="Patient ID", strip=True)
    accession_number = forms.CharField(required=False, max_length=16, label="Accession number", strip=True)
    study_date = forms.DateField(required=False, label="Study date (from)",
                                 widget=forms.DateInput(attrs={"type": "date"}))
    study_date_to = forms.DateField(required=False, label="to", widget=forms.DateInput(attrs={"type": "date"}),
                                    help_text="Empty: the one day given as the study date.")

    def clean(self):
        data = super().clean()
        keys = ("patient_id", "accession_number", "study_date", "study_date_to")
        if not any(str(data.get(k) or "").strip("*? ") for k in keys):
            raise forms.ValidationError("Give a patient ID, an accession number or a study date: a search needs at "
                                        "least one.")
        if data.get("study_date") and data.get("study_date_to") and data["study_date"] > data["study_date_to"]:
            self.add_error("study_date_to", "The end date is before the start date.")
        for key in ("patient_id", "accession_number"):
            if "\\" in (data.get(key) or ""):
                self.add_error(key, "A backslash cannot be searched for (DICOM reads it as a list separator).")
        return data

    def keys(self) -> dict:
        """The C-FIND keys: DICOM strings (a date as YYYYMMDD, a range as YYYYMMDD-YYYYMMDD, open at either end)."""
        data = self.cleaned_data
        start, end = (data[k].strftime("%Y%m%d") if data.get(k) else "" for k in ("study_date", "study_date_to"))
        return {"patient_id": data.get("patient_id") or "", "accession_number": data.get("accession_number") or "",
                "study_date": f"{start}-{end}" if end else start}


class PacsImportForm(forms.Form):
    """One series to import (the import page's button, and the API)."""

    study_uid = forms.RegexField(regex=UID, max_length=64, label="Study Instance UID")
    series_uid = forms.RegexField(regex=UID, max_length=64, label="Series Instance UID")
    sequence = forms.ChoiceField(choices=SEQUENCE_CHOICES, required=False, label="MRI sequence")
