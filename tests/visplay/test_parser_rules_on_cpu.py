"""The parsing rules the module docstring of `verl_ext.visplay.parsing` states, one test (or case) per rule."""

from __future__ import annotations

import pytest

from verl_ext.visplay import parsing
from verl_ext.visplay.parsing import QUESTION_TYPES, extract_boxed, parse_question

GOOD = "<type>numerical</type><question>How many?</question><answer>3</answer>"


def block(qtype="numerical", question="Q?", answer="7", between1="", between2="") -> str:
    return f"<type>{qtype}</type>{between1}<question>{question}</question>{between2}<answer>{answer}</answer>"


def test_the_rules_are_documented_where_the_parsers_live():
    doc = parsing.__doc__
    for phrase in ("The last block decides alone", "an earlier, well-formed", "text other than whitespace between",
                   "is not a box", "truncated response"):  # fmt: skip
        assert phrase in doc


# -- parse_question ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "malformed",
    [
        block(between1="junk"),  # text between </type> and <question>
        block(between2="so the answer is"),  # text between </question> and <answer>
        block(qtype="essay"),  # unknown type
        block(question="  \n "),  # empty question
        block(answer="\t"),  # empty answer
    ],
    ids=["text-after-type", "text-before-answer", "unknown-type", "empty-question", "empty-answer"],
)
def test_a_malformed_last_block_is_unparsable_even_after_a_good_one(malformed):
    assert parse_question(malformed) is None
    assert parse_question(GOOD + "\n" + malformed) is None  # the earlier good block is never used instead
    assert parse_question(malformed + "\n" + GOOD).question == "How many?"  # a good last block is


@pytest.mark.parametrize("space", [" ", "\n", "\t \r\n"])
def test_whitespace_between_tags_is_allowed(space):
    record = parse_question(block(between1=space, between2=space))
    assert (record.type, record.question, record.answer) == ("numerical", "Q?", "7")


@pytest.mark.parametrize(
    "trailing",
    [
        "<type>numerical</type><question>cut off",
        "<type>regression</type><question>Q2?</question><answer>",
        "</answer><type>",
        "<answer>9</answer>",
    ],
)
def test_a_trailing_incomplete_block_is_ignored(trailing):
    assert parse_question(GOOD + trailing).answer == "3"


def test_text_around_the_block_is_ignored():
    record = parse_question("Let me think. <b>bold</b> " + GOOD + " That is my question.")
    assert (record.type, record.question, record.answer) == ("numerical", "How many?", "3")


@pytest.mark.parametrize("tag_style", ["<TYPE>{}</Type>", "< type >{}</ type >", "<\ttype\n>{}<  /type>"])
def test_tag_case_and_inner_whitespace_are_free(tag_style):
    text = tag_style.format("numerical") + "<question>Q?</question><answer>7</answer>"
    assert parse_question(text).type == "numerical"


@pytest.mark.parametrize(
    "written, canonical",
    [("Multiple_Choice", "multiple choice"), ("multiple-choice", "multiple choice"),
     ("  multiple \n  choice ", "multiple choice"), ("NUMERICAL", "numerical"), ("Regression", "regression")],
)  # fmt: skip
def test_type_spellings_map_to_the_known_types(written, canonical):
    assert parse_question(block(qtype=written)).type == canonical
    assert canonical in QUESTION_TYPES


def test_question_and_answer_are_only_stripped():
    record = parse_question(block(question="  What  is\n2+2?  ", answer=" \\frac{1}{2} units "))
    assert (record.question, record.answer) == ("What  is\n2+2?", "\\frac{1}{2} units")


def test_tags_out_of_order_are_no_block():
    assert parse_question("<question>Q?</question><type>numerical</type><answer>1</answer>") is None
    assert parse_question("<type>numerical</type><answer>1</answer><question>Q?</question>") is None


# -- extract_boxed ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{1} then \\boxed 5", "1"),  # a brace-less last command is not a box: the earlier box
        ("\\boxed{1} then \\boxedx{2}", "1"),  # another command name
        ("\\fbox{1} then \\boxed", "1"),  # a bare command at the very end
        ("\\boxed{1} \\fbox 2 \\boxed 3", "1"),  # several brace-less commands, of both kinds
        ("\\boxed \n\t{4}", "4"),  # whitespace between the command and its brace
        ("\\boxed{\\boxed{5}}", "5"),  # nested: the last box opened in the text
    ],
)
def test_brace_less_commands_fall_back_to_the_earlier_box(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize("text", ["\\boxed{1} then \\boxed{2", "\\fbox{1} \\boxed{ {2}", "\\boxed{1}\\boxed{\\}"])
def test_an_unclosed_last_box_means_no_answer(text):
    assert extract_boxed(text) is None


def test_escapes_do_not_count_as_braces():
    assert extract_boxed("\\boxed{\\{a\\}}") == "\\{a\\}"
    assert extract_boxed("\\boxed{a\\\\}") == "a\\\\"  # \\ is a line break, so the } after it closes the box
