"""The grader's sympy-free verdicts at their edges: signs, zero and unit denominators, the exclusive 1e8 limit and
the exclusive 1e-5 gap (`grading._fast_verdict`, whose decided verdicts `test_grading_on_cpu.py` checks against
math_verify on random values)."""

from __future__ import annotations

import pytest

from verl_ext.visplay.grading import _RATIONAL_GAP, _RATIONAL_LIMIT, _fast_verdict


@pytest.mark.parametrize(
    "a, b, verdict",
    [
        ("-1/2", "1/2", False),
        ("-0.5", "0.5", False),
        ("\\frac{1}{2}", "-0.5", False),
        ("-1/2", "-0.5", True),
        ("-\\frac{3}{4}", "-0.75", True),
    ],
)
def test_the_sign_is_part_of_the_value(a, b, verdict):
    assert _fast_verdict(a, b) is verdict
    assert _fast_verdict(b, a) is verdict


def test_a_zero_denominator_is_left_to_the_grader_and_a_unit_one_is_decided():
    assert _fast_verdict("1/0", "1/2") is None  # no ZeroDivisionError: not a plain rational
    assert _fast_verdict("\\frac{3}{0}", "0.5") is None
    assert _fast_verdict("6/1", "7/1") is False
    assert _fast_verdict("6/1", "12/2") is True


def test_the_size_limit_is_exclusive():
    assert _RATIONAL_LIMIT == 10**8
    assert _fast_verdict("100000000/1", "200000000/2") is None  # exactly 1e8: too large to decide here
    assert _fast_verdict("199999999/2", "99999999.5") is True  # just below


def test_the_gap_is_exclusive():
    assert _RATIONAL_GAP * 10**5 == 1
    assert _fast_verdict("0.00001", "0/1") is None  # exactly 1e-5 apart: math_verify's rounding decides
    assert _fast_verdict("0.000011", "0/1") is False
