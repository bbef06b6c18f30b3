from django import template

from inference.models import percent, scores_text
from scans import dicom_text

register = template.Library()
register.filter("study_date", dicom_text.study_date)
register.filter("patient_age", dicom_text.patient_age)
register.filter("patient_sex", dicom_text.patient_sex)
register.filter("scores_text", scores_text)
register.filter("percent", percent)
