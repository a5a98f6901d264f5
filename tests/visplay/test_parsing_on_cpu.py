import time

import pytest

from verl_ext.visplay import QuestionRecord, extract_boxed, parse_question

# ---------------------------------------------------------------------------------------------------------------
# parse_question
# ---------------------------------------------------------------------------------------------------------------

# A hang guard, not a speed target (that is benchmarks/): a backtracking (quadratic) parser needs hours on 1 MB, a
# linear one well under a second, so the guard is loose enough that no machine load can trip it.
HANG_GUARD_S = 30.0


def test_parse_question_basic():
    text = "<type>numerical</type><question>How many cats?</question><answer>3</answer>"
    assert parse_question(text) == QuestionRecord(type="numerical", question="How many cats?", answer="3")


def test_parse_question_whitespace_and_case():
    text = (
        "Sure! Here is my question.\n"
        "<type>\n  Multiple   Choice \n</type>\n\n"
        "<question>\n  Which color is the car?\n(A) red (B) blue\n</question>\n"
        "<answer>  B  </answer>\n"
    )
    record = parse_question(text)
    assert record == QuestionRecord("multiple choice", "Which color is the car?\n(A) red (B) blue", "B")


def test_parse_question_tag_spacing_and_case():
    text = "< Type >REGRESSION</ type ><QUESTION>How tall?</QUESTION><Answer>1.8 m</Answer>"
    assert parse_question(text) == QuestionRecord("regression", "How tall?", "1.8 m")


@pytest.mark.parametrize("qtype", ["multiple-choice", "Multiple_Choice", "MULTIPLE CHOICE"])
def test_parse_question_type_spellings(qtype):
    text = f"<type>{qtype}</type><question>Q?</question><answer>A</answer>"
    assert parse_question(text).type == "multiple choice"


def test_parse_question_last_complete_block_wins():
    first = "<type>numerical</type><question>first?</question><answer>1</answer>"
    second = "<type>regression</type><question>second?</question><answer>2.5</answer>"
    truncated = "<type>numerical</type><question>third?</question><answer>3"
    assert parse_question(first + "\n" + second).question == "second?"
    # An incomplete trailing block does not hide the last complete one.
    assert parse_question(first + second + truncated).question == "second?"


@pytest.mark.parametrize(
    "text",
    [
        "<type>essay</type><question>Q?</question><answer>A</answer>",  # unknown type
        "<type>numerical</type><question>   </question><answer>3</answer>",  # empty question
        "<type>numerical</type><question>Q?</question><answer>\n</answer>",  # empty answer
        "<type>numerical</type>junk<question>Q?</question><answer>3</answer>",  # text between tags
        "<type>numerical</type><question>Q?</question>",  # no answer
        "<question>Q?</question><answer>3</answer>",  # no type
        "no tags at all",
        "",
    ],
)
def test_parse_question_rejects(text):
    assert parse_question(text) is None


def test_parse_question_last_block_invalid_is_none():
    good = "<type>numerical</type><question>ok?</question><answer>1</answer>"
    bad = "<type>essay</type><question>bad?</question><answer>2</answer>"
    assert parse_question(good + bad) is None  # the last complete block is the answer, even if it is invalid


@pytest.mark.parametrize("value", [None, 3, b"<type>numerical</type>", ["x"], {"a": 1}])
def test_parse_question_non_str(value):
    assert parse_question(value) is None


def test_parse_question_unicode():
    text = "<type>numerical</type><question>Wie viele Äpfel 🍎?</question><answer>５</answer>"
    assert parse_question(text) == QuestionRecord("numerical", "Wie viele Äpfel 🍎?", "５")


@pytest.mark.parametrize(
    "text",
    [
        "<type>" * 200_000,  # many openers without closers: a lazy regex would be quadratic
        "<type>numerical</type><question>" + "x" * 1_000_000,
        "<type>numerical</type><question>" + "<answer>" * 100_000 + "</question>",
    ],
    ids=["openers", "unclosed-question", "many-answer-tags"],
)
def test_parse_question_linear_on_1mb(text):
    start = time.perf_counter()
    assert parse_question(text) is None
    assert time.perf_counter() - start < HANG_GUARD_S


def test_parse_question_1mb_valid():
    text = "x" * 1_000_000 + "<type>numerical</type><question>" + "q" * 1000 + "</question><answer>7</answer>"
    start = time.perf_counter()
    assert parse_question(text).answer == "7"
    assert time.perf_counter() - start < HANG_GUARD_S


# ---------------------------------------------------------------------------------------------------------------
# extract_boxed
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is \\boxed{12}.", "12"),
        ("\\boxed{ 12 }", "12"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\text{(A)} red}", "\\text{(A)} red"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed {7}", "7"),
        ("\\boxed\n{7}", "7"),
        ("\\fbox{C}", "C"),
        ("\\boxed{1} and \\fbox{2}", "2"),
        ("\\fbox{1} and \\boxed{2}", "2"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces do not count
        ("\\boxed{a \\\\ b}", "a \\\\ b"),  # \\ is a LaTeX line break, not an escaped brace
        ("\\boxed{x^{2^{3}}}", "x^{2^{3}}"),
        ("\\boxed{}", ""),
        ("$\\boxed{-3}$", "-3"),
        ("\\boxed{12} and later a mention of \\boxed without braces", "12"),
        ("\\boxed{\u00bd} 🎉", "\u00bd"),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no box here",
        "",
        "\\boxed{12",  # truncated
        "\\boxed{1} then \\boxed{2",  # the last box is unbalanced: no final answer
        "\\boxed{\\}",  # only an escaped brace inside
        "\\boxedx{1}",
        "\\boxed 5",
    ],
)
def test_extract_boxed_none(text):
    assert extract_boxed(text) is None


@pytest.mark.parametrize("value", [None, 12, b"\\boxed{1}", ["\\boxed{1}"]])
def test_extract_boxed_non_str(value):
    assert extract_boxed(value) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{" * 200_000, None),
        ("\\boxed" * 200_000, None),
        ("\\fbox" + "\\boxed x" * 120_000, None),  # two commands interleaved: cursors must not rescan
        ("\\boxed{" + "{" * 500_000 + "}" * 500_000 + "}", "{" * 500_000 + "}" * 500_000),
        ("x" * 1_000_000 + "\\boxed{42}", "42"),
        ("\\boxed{42}" + " " * 1_000_000, "42"),
        ("\\boxed" + " " * 1_000_000 + "{9}", "9"),
    ],
    ids=["open-braces", "bare-commands", "interleaved", "deep-nesting", "box-at-end", "box-at-start", "spaces"],
)
def test_extract_boxed_linear_on_1mb(text, expected):
    start = time.perf_counter()
    assert extract_boxed(text) == expected
    assert time.perf_counter() - start < HANG_GUARD_S
