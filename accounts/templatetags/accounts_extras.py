from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def duration_words(value) -> str:
    """timedelta(hours=1, minutes=30) -> "1 hour 30 minutes"; "" for anything else."""
    if not isinstance(value, timedelta):
        return ""
    if value.total_seconds() < 60:
        return "less than a minute"
    minutes = round(value.total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)
