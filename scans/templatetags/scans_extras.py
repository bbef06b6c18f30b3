from django import template

from inference.models import percent, scan_rule_text, scores_text, tamper_odds_text
from scans import dicom_text

register = template.Library()
register.filter("study_date", dicom_text.study_date)
register.filter("patient_age", dicom_text.patient_age)
register.filter("patient_sex", dicom_text.patient_sex)
register.filter("scores_text", scores_text)
register.filter("scan_rule_text", scan_rule_text)
register.filter("percent", percent)
register.filter("tamper_odds_text", tamper_odds_text)


@register.simple_tag
def header_checks_text(scan) -> str:
    return dicom_text.header_checks_text(scan.kind, scan.metadata or {})


register.simple_tag(lambda: dicom_text.HEADER_LIMITS, name="header_limits")


@register.simple_tag
def origin_label(scan) -> str:
    return dicom_text.origin_text(scan.metadata)[0]


@register.simple_tag
def origin_text(scan) -> str:
    return dicom_text.origin_text(scan.metadata)[1]
