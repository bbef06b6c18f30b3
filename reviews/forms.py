from django import forms

from inference.models import VERDICT_CHOICES
from reviews.models import NOTE_MAX_CHARS


class ReviewForm(forms.Form):
    """A radiologist's review, for the scan page and the API (reviews.services.review_record checks the rest)."""

    job = forms.IntegerField(min_value=1, widget=forms.HiddenInput,
                             error_messages={"required": "Say which analysis (job id) you reviewed."})
    verdict = forms.ChoiceField(choices=VERDICT_CHOICES, widget=forms.RadioSelect, label="Your verdict",
                                error_messages={"required": "Choose your verdict."})
    note = forms.CharField(required=False, max_length=NOTE_MAX_CHARS, strip=True, label="Note",
                           widget=forms.Textarea(attrs={"rows": 3, "maxlength": NOTE_MAX_CHARS}),
                           help_text="Needed when your verdict differs from the detector's: say why.")
