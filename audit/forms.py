from django import forms

from audit import actions


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150, label="User")
    action = forms.ChoiceField(required=False, label="Action")
    object_type = forms.CharField(required=False, max_length=100, label="Object type")
    object_id = forms.CharField(required=False, max_length=64, label="Object id")
    outcome = forms.ChoiceField(required=False, choices=[("", "Any")] + [(o, o.capitalize()) for o in actions.OUTCOMES])
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "Any")] + sorted(
            ((name, f"{label} ({name})") for name, label in actions.LABELS.items()), key=lambda c: c[0]
        )

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    def filters(self) -> dict:
        """The valid filters (an invalid form filters nothing, and shows its errors)."""
        if not self.is_valid():
            return {}
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}
