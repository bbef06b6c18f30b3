from django import template

from reports.charts import pretty

register = template.Library()


@register.filter
def verdict_label(name) -> str:
    """"real_tumor" -> "Real tumor" (the words of the scan pages); other names ("pending") capitalised."""
    text = pretty(str(name))
    return text[:1].upper() + text[1:]


@register.filter
def fine_percent(value) -> str:
    """A share that may be tiny as a percentage ("17.7%", "0.21%"): inference.models.fine_percent."""
    from inference.models import fine_percent as text

    return text(value)
