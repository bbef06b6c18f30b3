from datetime import timedelta

import pytest

from accounts.templatetags.accounts_extras import duration_words


@pytest.mark.parametrize(("value", "words"), [
    (timedelta(minutes=30), "30 minutes"),
    (timedelta(hours=1), "1 hour"),
    (timedelta(hours=1, minutes=1), "1 hour 1 minute"),
    (timedelta(hours=2, minutes=30), "2 hours 30 minutes"),
    (timedelta(seconds=20), "less than a minute"),
    (None, ""),
])
def test_duration_words(value, words):
    assert duration_words(value) == words
