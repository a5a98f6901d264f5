"""Edges of the pure core that mutation testing found unpinned: the lazy exports, the band filter's tolerance edge,
the reference reward's clamp, a grader that returns the wrong number of verdicts, the column check."""

from __future__ import annotations

import importlib

import pytest

import verl_ext.visplay as visplay
from verl_ext.visplay.filtering import BAND_TOLERANCE, filter_reason
from verl_ext.visplay.records import PSEUDO_LABEL_COLUMNS, missing_columns
from verl_ext.visplay.rewards import questioner_reward, reasoner_score_batch


@pytest.mark.parametrize("name", visplay.__all__)
def test_each_lazy_export_is_its_modules_object(name):
    module = importlib.import_module(f"verl_ext.visplay.{visplay._EXPORTS[name]}")
    assert visplay.__getattr__(name) is getattr(module, name)  # resolved now, inside the test
    assert getattr(visplay, name) is getattr(module, name)


def test_unknown_names_are_attribute_errors_and_dir_lists_the_exports():
    with pytest.raises(AttributeError, match="module 'verl_ext.visplay' has no attribute 'nope'"):
        visplay.__getattr__("nope")
    assert not hasattr(visplay, "parse_questions")
    assert dir(visplay) == sorted(visplay._EXPORTS) == visplay.__all__


def rec(p):
    return {"question": "q?", "pseudo_label": "1", "confidence": p}


def test_band_edges_are_inclusive_up_to_the_tolerance():
    low, high = 0.3, 0.8
    assert filter_reason(rec(high + BAND_TOLERANCE), low, high) == "kept"
    assert filter_reason(rec(low - BAND_TOLERANCE), low, high) == "kept"
    assert filter_reason(rec(high + 2 * BAND_TOLERANCE), low, high) == "too_easy"
    assert filter_reason(rec(low - 2 * BAND_TOLERANCE), low, high) == "too_hard"


@pytest.mark.parametrize("p, value", [(1.5, 0.0), (-0.5, 0.0), (1.0 + 1e-12, 0.0), (0.75, 0.25)])
def test_reference_reward_clamps_the_confidence_into_the_unit_interval(p, value):
    assert questioner_reward(p, 0.0, True, mode="reference") == pytest.approx(value)
    assert questioner_reward(p, 0.5, True, mode="reference", lam=2.0) == pytest.approx(value - 1.0)


class ShortGrader:
    def equivalent_batch(self, pairs, timeout=None):
        return [True] * (len(pairs) - 1)


def test_a_grader_that_drops_verdicts_is_an_error_not_a_wrong_score():
    with pytest.raises(ValueError):
        reasoner_score_batch(["\\boxed{1}", "\\boxed{2}"], ["1", "2"], grader=ShortGrader())


def test_missing_columns_names_what_is_absent_in_schema_order():
    assert missing_columns(["id", "image"], PSEUDO_LABEL_COLUMNS[:3]) == ["source_image_id"]
    assert missing_columns(iter(PSEUDO_LABEL_COLUMNS), PSEUDO_LABEL_COLUMNS) == []
    assert missing_columns([], ("b", "a")) == ["b", "a"]


def test_every_listed_equivalent_mutant_names_real_code_and_a_reason():
    import re
    from pathlib import Path

    text = (Path(__file__).parent / "EQUIVALENT_MUTANTS.md").read_text()
    entries = re.findall(r"^- `([^`]+__mutmut_\d+)`: (.+)$", text, flags=re.MULTILINE)
    assert entries
    for name, reason in entries:
        module_path, _, mangled = name.rpartition(".")
        module = importlib.import_module(module_path)
        function = re.fullmatch(r"x(?:ǁ(\w+)ǁ|_)(\w+?)__mutmut_\d+", mangled)
        assert function, name
        owner = getattr(module, function.group(1)) if function.group(1) else module
        assert hasattr(owner, function.group(2)), name
        assert len(reason.split()) >= 5, name


def test_distinct_integers_and_letters_never_reach_the_grader():
    from verl_ext.visplay.voting import majority_vote

    class Refuses:
        def equivalent_keys_batch(self, pairs, timeout=None):
            raise AssertionError(f"the grader was asked about {pairs}")

    numbers = majority_vote(["\\boxed{1}", "\\boxed{2}", "\\boxed{0.5}", "\\boxed{1/2}"], grader=Refuses())
    assert [size for _, size in numbers.counts] == [1, 1, 2]  # 0.5 = 1/2 decided without the grader too
    letters = majority_vote(["\\boxed{(A)}", "\\boxed{B}", "\\boxed{a}", "\\boxed{3}"], grader=Refuses())
    assert [size for _, size in letters.counts] == [2, 1, 1]


def test_the_last_box_is_found_past_several_brace_less_commands():
    from verl_ext.visplay.parsing import extract_boxed

    assert extract_boxed("\\boxed{1} \\boxed{2} \\boxed 3") == "2"  # the previous command, not the first one
    assert extract_boxed("\\fbox{1} \\boxed{2} \\fbox 3 \\boxed 4") == "2"
    assert extract_boxed("\\boxed 0 \\boxed{1} \\fbox{2} \\boxed 3") == "2"


def test_a_negative_threshold_is_refused_with_its_reason():
    from verl_ext.visplay.diversity import cluster_labels, repetition_penalty

    for call in (lambda: repetition_penalty(["a b", "a c"], threshold=-0.1), lambda: cluster_labels(["a"], -1)):
        with pytest.raises(ValueError, match="threshold must be a distance >= 0, got -"):
            call()


def test_the_verdict_cache_holds_cache_size_pairs():
    from verl_ext.visplay.grading import MathGrader

    grader = MathGrader(cache_size=2)
    for pair in [("a", "b"), ("c", "d"), ("e", "f")]:
        grader._remember(pair, True)
    assert list(grader._cache) == [("c", "d"), ("e", "f")]  # full at cache_size, the oldest out first


def test_a_record_marked_too_long_stays_too_long():
    from verl_ext.visplay.filtering import band_filter

    marked = {"question": "q?", "pseudo_label": None, "confidence": None, "filter_reason": "too_long"}
    assert filter_reason(marked) == "too_long"
    assert filter_reason({**marked, "filter_reason": "kept"}) == "no_answer"  # only that mark is kept
    result = band_filter([marked, rec(0.5)])
    assert result.reasons == ["too_long", "kept"] and result.counts["too_long"] == 1
