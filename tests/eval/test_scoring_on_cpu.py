"""Rule scoring: final-answer extraction, option letters, yes/no, math equivalence through the core's grader, and
MM-Vet's <AND>/<OR> gold answers with partial credit."""

import pytest

from verl_ext.eval.benchmarks import EvalItem
from verl_ext.eval.scoring import extract_final_answer, score_response, score_text, to_letter, to_yesno

CHOICES = {"A": "4", "B": "5", "C": "6", "D": "7"}


def item(answer, answer_type, choices=None):
    return EvalItem("t", "1", "q", answer, answer_type, [b"x"], choices)


@pytest.mark.parametrize(
    "response, expected",
    [
        ("<think>hmm</think> so \\boxed{42}", ("42", "boxed")),
        ("\\boxed{1} first, then \\boxed{\\frac{1}{2}}", ("\\frac{1}{2}", "boxed")),
        ("<think>the answer is 3</think> Final answer: 7.", ("7", "phrase")),
        ("I think the answer is B", ("B", "phrase")),
        ("<think>the answer is 3</think>", (None, "none")),
        ("\\boxed{unterminated", (None, "none")),
        (None, (None, "none")),
    ],
)
def test_extract_final_answer(response, expected):
    assert extract_final_answer(response) == expected


@pytest.mark.parametrize(
    "pred, letter",
    [
        ("B", "B"),
        ("(b)", "B"),
        ("B.", "B"),
        ("B. 5", "B"),
        ("(B) 6", "B"),  # an explicit letter wins over mismatching text
        ("B 5", "B"),
        ("option C", "C"),
        ("\\text{D}", "D"),
        ("5", "B"),  # the option's own text
        ("five", "B"),
        ("A cat", None),  # the article, not option A
        ("E", None),  # not an option
        ("42", None),
    ],
)
def test_option_letters(pred, letter):
    assert to_letter(pred, CHOICES) == letter


def test_choice_yesno_math_scores():
    mc = item("B", "choice", CHOICES)
    assert score_response(mc, "\\boxed{B}").score == 1.0
    assert score_response(mc, "\\boxed{5}").normalized == "B"
    assert score_response(mc, "\\boxed{5.0}").score == 1.0  # math-equivalent to the gold option's value
    assert score_response(mc, "\\boxed{C}").score == 0.0
    assert score_response(mc, "no box, no answer").source == "none"
    assert score_response(item("C", "choice"), "\\boxed{(c)}").score == 1.0  # options unknown: letters A-J

    yn = item("no", "yesno")
    assert score_response(yn, "\\boxed{No}").score == 1.0
    assert score_response(yn, "\\boxed{Yes, it is}").score == 0.0
    assert to_yesno("maybe") is None and to_yesno("True") == "yes"

    half = item("1/2", "math")
    for ok in ("\\boxed{0.5}", "\\boxed{\\frac{1}{2}}", "\\boxed{\\dfrac{1}{2}}", "\\boxed{$1/2$}"):
        assert score_response(half, ok).score == 1.0, ok
    assert score_response(half, "\\boxed{2}").score == 0.0
    assert score_response(item("30", "math"), "\\boxed{30.0}").score == 1.0


def test_text_answers_follow_mm_vet_conventions():
    assert score_text("two", "2<OR>two") == (1.0, "2")
    assert score_text("There are 2 apples.", "2") == (1.0, "2")
    assert score_text("12", "2")[0] == 0.0  # whole numbers only, no substring hits
    assert score_text("beige and 4", "beige<AND>4")[0] == 1.0
    assert score_text("beige", "beige<AND>4")[0] == 0.5  # partial credit over <AND> parts
    assert score_text("red", "beige<AND>4")[0] == 0.0
    assert score_text("0.5", "1/2")[0] == 1.0  # numbers are compared as math
    mmmu_open = item("24/7<OR>3.429", "text")
    assert score_response(mmmu_open, "\\boxed{3.429}").score == 1.0
