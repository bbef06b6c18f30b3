from django import template

from reports.charts import pretty

register = template.Library()


@register.filter
def verdict_label(name) -> str:
    """"real_tumor" -> "Real tumor" (the words of the scan pages); other names ("pending") capitalised."""
    text = pretty(str(name))
    return text[:1].upper() + text[1:]
