from django import template

from scans import dicom_text

register = template.Library()
register.filter("study_date", dicom_text.study_date)
register.filter("patient_age", dicom_text.patient_age)
register.filter("patient_sex", dicom_text.patient_sex)
