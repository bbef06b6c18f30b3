"""A tamper probability restated at a realistic share of tampered scans (inference.ml.scan_rule), on hand-worked
cases."""
import math

import pytest

from inference.ml.scan_rule import at_prevalence, check_prevalence, flagged_tampered, one_in


def test_bayes_rule_moves_the_odds_by_the_prior_odds():
    # q = 0.9 at even odds is odds 9; at 1 in 100 the prior odds are 1/99, so the odds become 9/99 = 1/11
    assert at_prevalence(0.9, 0.01) == pytest.approx(1 / 12)
    assert at_prevalence(0.9, 0.5) == pytest.approx(0.9)  # the share it was fitted at: unchanged
    assert at_prevalence(0.5, 0.001) == pytest.approx(0.001)  # no evidence either way: the prior
    assert at_prevalence(1.0, 0.001) == 1.0 and at_prevalence(0.0, 0.3) == 0.0  # certainty stays certainty
    # another base: q = 0.5 fitted where 1 in 5 scans were tampered is odds 1 against a prior of 1/4 ...
    assert at_prevalence(0.5, 0.5, base=0.2) == pytest.approx(0.8)  # ... four times the prior odds: 4 to 1
    # rarer tampering, lower probability, for every q in between
    qs = [0.01, 0.3, 0.77, 0.999]
    for q in qs:
        assert at_prevalence(q, 0.001) < at_prevalence(q, 0.01) < at_prevalence(q, 0.1) < q


def test_the_share_of_flagged_scans_that_are_tampered():
    # catches 82 % of tampered scans, flags 4 % of authentic ones; 1 in 100 tampered:
    # 0.0082 true flags against 0.0396 false ones
    assert flagged_tampered(0.82, 0.04, 0.01) == pytest.approx(0.0082 / (0.0082 + 0.0396))
    assert flagged_tampered(0.82, 0.0, 0.01) == 1.0  # no false alarms: every flag is right
    assert flagged_tampered(0.0, 0.0, 0.01) is None  # it flags nothing


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "often", None, math.nan, "nan"])
def test_a_share_outside_zero_and_one_is_refused_with_what_was_given(bad):
    with pytest.raises(ValueError, match="strictly between 0 and 1|a number between 0 and 1") as err:
        check_prevalence(bad)
    assert repr(bad) in str(err.value)
    with pytest.raises(ValueError):
        at_prevalence(0.5, bad)


def test_shares_in_a_doctors_words():
    assert check_prevalence("0.01") == 0.01
    assert one_in(0.01) == "1 in 100" and one_in(0.001) == "1 in 1,000" and one_in(0.1) == "1 in 10"
    assert one_in(0.005) == "1 in 200"
    assert one_in(0.3) == "30 in 100" and one_in(0.0015) == "1.5 in 1,000"
