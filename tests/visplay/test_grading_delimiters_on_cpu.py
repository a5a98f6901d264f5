"""The canonical key's LaTeX clean-up, pinned where a mutant showed it was loose: math delimiters are stripped only
as a matched pair that fits in the text, and a wrapper's braces are told apart from the braces inside it."""

import pytest

from verl_ext.visplay.grading import _strip_outer, _unwrap, canonical_key


@pytest.mark.parametrize(
    "text, stripped",
    [
        ("$5$", "5"),
        ("$$5$$", "5"),
        ("\\(5\\)", "5"),
        ("\\[x+1\\]", "x+1"),
        ("$$", ""),  # an empty math span: both delimiters, nothing inside
        ("$", "$"),  # one dollar is not a pair
        ("$$$", "$"),  # "$$" + "$" does not fit "$$...$$"; as "$...$" it leaves the middle one
        ("10\\)", "10\\)"),  # a closing delimiter alone is not a pair
        ("\\(10", "\\(10"),  # nor an opening one
    ],
)
def test_delimiters_are_stripped_as_matched_pairs_only(text, stripped):
    assert _strip_outer(text) == stripped


@pytest.mark.parametrize(
    "text, unwrapped",
    [
        ("\\text{{5}}", "{5}"),  # the inner group survives, the wrapper goes
        ("\\text{ {5} }", " {5} "),
        ("\\mathrm{a{b}c}", "a{b}c"),
        ("\\text{5", "\\text{5"),  # unbalanced: left as is
    ],
)
def test_wrappers_are_dropped_with_their_own_braces_only(text, unwrapped):
    assert _unwrap(text) == unwrapped


@pytest.mark.parametrize(
    "text, stripped",
    [
        ("5.", "5"),  # one trailing period goes
        ("5 .", "5"),  # with the space before it
        (".", "."),  # a lone period is the answer itself
        ("x\\.", "x\\."),  # an escaped period is not punctuation
        ("$5$.", "5"),  # rounds go on while something changes: the period, then the delimiters
        ("{$5$}", "5"),
    ],
)
def test_trailing_period_and_repeated_rounds(text, stripped):
    assert _strip_outer(text) == stripped


def test_a_wrapped_group_has_the_plain_key():
    assert canonical_key("\\text{{5}}") == canonical_key("5") == "5"


@pytest.mark.parametrize("text", ["$5", "5$", "$$5", "5 $"])
def test_stray_dollar_signs_are_dropped(text):
    assert canonical_key(text) == "5"


def test_full_normalisation_up_to_the_length_limit_inclusive():
    from verl_ext.visplay.grading import _MAX_CANONICAL_CHARS

    digits = "1" * (_MAX_CANONICAL_CHARS - 2)
    assert canonical_key(f"${digits}$") == digits  # exactly at the limit: every rule applies
    assert canonical_key(f"${digits}1$") == f"${digits}1$"  # one past it: whitespace and case only


def test_text_is_case_folded_between_latex_commands_which_keep_their_case():
    assert canonical_key("A\\Pi B\\Sigma C") == "a\\Pi b\\Sigma c"
    assert canonical_key("\\Pi X") == canonical_key("\\Pi x") != canonical_key("\\pi x")
