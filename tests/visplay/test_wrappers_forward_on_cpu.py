"""The core's wrappers pass on every argument they accept (timeout, grader, format weight), and the boundary values
their docstrings name behave as documented. A recording grader stands in for math_verify, and the process-wide grader
is replaced by one that fails the test if anything falls back to it."""

from __future__ import annotations

import math

import pytest

from verl_ext.visplay import grading, rewards, voting
from verl_ext.visplay.grading import MathGrader
from verl_ext.visplay.rewards import questioner_reward, reasoner_score, reasoner_score_batch
from verl_ext.visplay.voting import majority_vote, majority_vote_batch


class RecordingGrader:
    """Answers every comparison with `verdict` (a bool, or a function of the pair) and records the timeout of each
    call; never starts a process."""

    def __init__(self, verdict=True):
        self.verdict = verdict if callable(verdict) else (lambda _pair: verdict)
        self.timeouts: list = []
        self.pairs: list = []

    def equivalent_keys_batch(self, key_pairs, timeout=None):
        self.timeouts.append(timeout)
        self.pairs += list(key_pairs)
        return [self.verdict(pair) for pair in key_pairs]

    def equivalent_batch(self, pairs, timeout=None):
        return self.equivalent_keys_batch(pairs, timeout)


def by_value(pair) -> bool:
    """x + 1 written either way is one answer; anything else is compared as text."""
    return {pair[0].replace(" ", ""), pair[1].replace(" ", "")} <= {"x+1", "1+x"} or pair[0] == pair[1]


@pytest.fixture
def no_default_grader(monkeypatch):
    """Any use of the process-wide grader fails the test."""

    def refuse():
        raise AssertionError("the process-wide grader was used although a grader was passed")

    monkeypatch.setattr(grading, "get_grader", refuse)
    monkeypatch.setattr(voting, "get_grader", refuse)
    monkeypatch.setattr(rewards, "get_grader", refuse)


# Two answers only the grader can compare (no canonical-key or fast verdict): the grader's word decides the groups.
NEEDS_GRADER = ["\\boxed{x+1}", "\\boxed{1+x}", "\\boxed{x+1}"]


@pytest.mark.usefixtures("no_default_grader")
@pytest.mark.parametrize("verdict, confidence", [(True, 1.0), (False, 2 / 3)])
def test_majority_vote_forwards_timeout_and_grader(verdict, confidence):
    grader = RecordingGrader(verdict)
    vote = majority_vote(NEEDS_GRADER, timeout=7.25, grader=grader)
    assert grader.timeouts == [7.25] and grader.pairs == [("x+1", "1+x")]
    assert vote.confidence == pytest.approx(confidence)
    assert vote.answer == "x+1"


@pytest.mark.usefixtures("no_default_grader")
def test_majority_vote_batch_forwards_timeout_and_grader():
    grader = RecordingGrader(True)
    votes = majority_vote_batch([NEEDS_GRADER, ["\\boxed{a+b}", "\\boxed{b+a}"]], timeout=3.5, grader=grader)
    assert set(grader.timeouts) == {3.5}
    assert [v.confidence for v in votes] == [1.0, 1.0]
    assert sorted(grader.pairs) == [("a+b", "b+a"), ("x+1", "1+x")]


@pytest.mark.usefixtures("no_default_grader")
def test_no_timeout_means_the_graders_own():
    grader = RecordingGrader()
    majority_vote(NEEDS_GRADER, grader=grader)
    reasoner_score("\\boxed{x+1}", "1+x", grader=grader)
    assert grader.timeouts == [None, None]


@pytest.mark.usefixtures("no_default_grader")
@pytest.mark.parametrize("verdict", [True, False])
def test_reasoner_score_forwards_weight_timeout_and_grader(verdict):
    grader = RecordingGrader(verdict)
    score = reasoner_score("so \\boxed{1+x}", "x+1", format_weight=0.25, timeout=2.5, grader=grader)
    assert grader.timeouts == [2.5] and grader.pairs == [("x+1", "1+x")]  # (label, answer): the label first
    assert score == {"overall": 1.0 if verdict else 0.25, "accuracy": float(verdict), "format": 1.0}


@pytest.mark.usefixtures("no_default_grader")
def test_reasoner_score_batch_forwards_weight_timeout_and_grader():
    grader = RecordingGrader(False)
    scores = reasoner_score_batch(["\\boxed{y}", "no box", "\\boxed{z}"], ["x", "x", None], 0.4, 1.5, grader)
    assert grader.timeouts == [1.5] and grader.pairs == [("x", "y")]  # nothing to grade without a box or a label
    assert [s["overall"] for s in scores] == [pytest.approx(0.4), 0.0, pytest.approx(0.4)]


@pytest.mark.usefixtures("no_default_grader")
@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_format_weight_boundaries_are_accepted(weight):
    grader = RecordingGrader(by_value)
    right, wrong, unboxed = reasoner_score_batch(["\\boxed{1+x}", "\\boxed{7}", "7"], ["x+1", "3", "7"], weight, None,
                                                 grader)  # fmt: skip
    # w = 1: only the format counts; w = 0: only the answer
    assert right["overall"] == 1.0
    assert wrong["overall"] == weight
    assert unboxed["overall"] == 0.0


@pytest.mark.parametrize("weight", [-1e-9, 1.0 + 1e-9, math.nan, math.inf, -math.inf, None, "0.5", True])
def test_format_weight_outside_unit_interval_is_refused(weight):
    with pytest.raises(ValueError, match="format_weight must be in \\[0, 1\\]"):
        reasoner_score("\\boxed{1}", "1", format_weight=weight, grader=RecordingGrader())


def test_reasoner_score_default_weight_is_a_tenth():
    assert rewards.DEFAULT_FORMAT_WEIGHT == 0.1
    assert reasoner_score("\\boxed{7}", "3", grader=RecordingGrader(by_value))["overall"] == pytest.approx(0.1)


def test_reasoner_score_batch_needs_aligned_lists():
    with pytest.raises(ValueError, match="2 responses but 1 pseudo-labels"):
        reasoner_score_batch(["a", "b"], ["x"], grader=RecordingGrader())


@pytest.mark.parametrize("lam", [0, 0.0])
def test_questioner_reward_lambda_zero_is_allowed(lam):
    assert questioner_reward(0.5, 0.9, True, mode="paper", lam=lam) == 1.0
    assert questioner_reward(0.5, 0.9, False, mode="reference", lam=lam) == -1.0


@pytest.mark.parametrize("value", ["\\boxed{1}\\boxed{1}", b"\\boxed{1}", 42, None])
def test_majority_vote_of_a_non_list_is_empty(value):
    vote = majority_vote(value, grader=RecordingGrader())
    assert (vote.answer, vote.confidence, vote.counts, vote.num_responses, vote.num_unparsed) == (None, 0.0, (), 0, 0)


def test_majority_vote_counts_unparsed_in_the_denominator():
    vote = majority_vote(["\\boxed{3}", "none", None, "\\boxed{}", "\\boxed{3}"], grader=RecordingGrader())
    assert (vote.num_responses, vote.num_unparsed, vote.confidence) == (5, 3, 0.4)


class TimeoutRecorder(MathGrader):
    """A real MathGrader whose worker round-trip is replaced: records the timeout every request would carry."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list[float] = []

    def _run(self, pairs, timeout):
        self.seen.append(timeout)
        return [(True, "done")] * len(pairs)


def test_grader_methods_forward_their_timeout():
    grader = TimeoutRecorder(timeout=4.0)
    assert grader.equivalent("x+1", "1+x", timeout=0.75) is True
    assert grader.equivalent_batch([("a+b", "b+a")], 0.5) == [True]
    assert grader.equivalent_keys_batch([("c+d", "d+c")], 0.25) == [True]
    grader.equivalent("e+f", "f+e")  # none given: the grader's own
    assert grader.seen == [0.75, 0.5, 0.25, 4.0]


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf])
def test_grader_refuses_a_timeout_that_is_not_a_positive_number(timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        TimeoutRecorder().equivalent("x+1", "1+x", timeout=timeout)


def test_module_functions_forward_to_the_process_wide_grader(monkeypatch):
    recorder = TimeoutRecorder(timeout=9.0)
    monkeypatch.setattr(grading, "_default_grader", recorder)
    assert grading.answers_equivalent("x+1", "1+x", timeout=1.25) is True
    assert grading.answers_equivalent_batch([("x+2", "2+x")], timeout=2.25) == [True]
    assert grading.answers_equivalent("x+3", "3+x") is True
    assert recorder.seen == [1.25, 2.25, 9.0]
    stats = grading.grader_stats()
    assert stats == recorder.stats and stats is not recorder.stats  # a copy
    assert grading.get_grader() is recorder


def test_reset_gives_a_new_graders_state():
    grader = TimeoutRecorder()
    grader.equivalent("x+1", "1+x")
    grader._strike(("a", "b"))
    grader._startup_failures, grader._retry_after = 3, 1e12
    assert grader.stats["pairs"] == 1 and grader._cache
    grader.reset()
    assert grader.stats == MathGrader().stats and not grader._cache and not grader._strikes
    assert (grader._startup_failures, grader._retry_after) == (0, 0.0)
    grader.equivalent("x+1", "1+x")
    assert grader.seen == [5.0, 5.0]  # the verdict was not cached any more


def test_reset_grader_resets_the_process_wide_one(monkeypatch):
    recorder = TimeoutRecorder()
    monkeypatch.setattr(grading, "_default_grader", recorder)
    grading.answers_equivalent("x+1", "1+x")
    grading.reset_grader()
    assert grading.grader_stats()["pairs"] == 0
    monkeypatch.setattr(grading, "_default_grader", None)
    grading.reset_grader()  # none yet: nothing to do, none created
    assert grading._default_grader is None


class MiscountingGrader(RecordingGrader):
    """Returns one verdict fewer (or more) than it was asked for."""

    def __init__(self, extra: int):
        super().__init__(True)
        self.extra = extra

    def equivalent_keys_batch(self, key_pairs, timeout=None):
        if len(self.timeouts) >= 20:  # a vote that swallowed a short answer would ask the same pair forever
            raise AssertionError("the same comparisons were asked 20 times")
        verdicts = super().equivalent_keys_batch(key_pairs, timeout)
        return verdicts[: len(verdicts) + self.extra] if self.extra < 0 else verdicts + [True] * self.extra


@pytest.mark.usefixtures("no_default_grader")
@pytest.mark.parametrize("extra", [-1, 1])
def test_majority_vote_batch_refuses_a_grader_that_miscounts_its_verdicts(extra):
    # two questions waiting in the same round: a verdict list one short (or long) is an error, never a silent
    # truncation that leaves a question's comparison unanswered (or gives it another question's verdict)
    with pytest.raises(ValueError, match="zip"):
        majority_vote_batch([NEEDS_GRADER, ["\\boxed{a+b}", "\\boxed{b+a}"]], grader=MiscountingGrader(extra))
