import math

import pytest

from verl_ext.visplay import questioner_reward, reasoner_score
from verl_ext.visplay.rewards import reasoner_score_batch


def paper_formula(p, penalty, lam=1.0):
    return max(0.0, 1.0 - 2.0 * abs(p - 0.5) - lam * penalty)


def reference_formula(p, penalty, lam=1.0):
    return min(p, 1.0 - p) - lam * penalty


# ---------------------------------------------------------------------------------------------------------------
# questioner_reward
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(11))
@pytest.mark.parametrize("penalty", [0.0, 0.1, 0.25, 1.0])
def test_questioner_reward_matches_formulas_on_m10_grid(k, penalty):
    p = k / 10
    assert questioner_reward(p, penalty, True) == pytest.approx(paper_formula(p, penalty))
    assert questioner_reward(p, penalty, True, mode="reference") == pytest.approx(reference_formula(p, penalty))


def test_questioner_reward_landmarks():
    assert questioner_reward(0.5, 0.0, True) == 1.0
    assert questioner_reward(0.0, 0.0, True) == 0.0
    assert questioner_reward(1.0, 0.0, True) == 0.0
    assert questioner_reward(0.5, 0.0, True, mode="reference") == 0.5
    assert questioner_reward(0.9, 0.3, True) == 0.0  # paper form clips at 0
    assert questioner_reward(0.9, 0.3, True, mode="reference") == pytest.approx(-0.2)  # reference does not


def test_questioner_reward_invalid_format():
    assert questioner_reward(0.5, 0.2, False) == 0.0
    assert questioner_reward(0.5, 0.2, False, mode="reference") == pytest.approx(-1.2)
    assert questioner_reward(0.5, 0.2, False, mode="reference", lam=0.5) == pytest.approx(-1.1)


def test_questioner_reward_lambda():
    assert questioner_reward(0.5, 0.2, True, lam=0.5) == pytest.approx(0.9)
    assert questioner_reward(0.5, 0.2, True, lam=0.0) == 1.0
    assert questioner_reward(0.4, 0.2, True, mode="reference", lam=2.0) == pytest.approx(0.0)


@pytest.mark.parametrize("p, clamped", [(-0.1, 0.0), (1.0000000001, 1.0), (7.0, 1.0), (-math.inf, None)])
def test_questioner_reward_clamps_confidence(p, clamped):
    if clamped is None:  # infinite: not a usable confidence
        assert questioner_reward(p, 0.0, True) == 0.0
        assert questioner_reward(p, 0.0, True, mode="reference") == -1.0
    else:
        assert questioner_reward(p, 0.0, True) == paper_formula(clamped, 0.0)
        assert questioner_reward(p, 0.0, True, mode="reference") == reference_formula(clamped, 0.0)


@pytest.mark.parametrize("bad", [math.nan, None, "0.5", [0.5], True])
def test_questioner_reward_unusable_confidence_is_invalid(bad):
    assert questioner_reward(bad, 0.1, True) == 0.0
    assert questioner_reward(bad, 0.1, True, mode="reference") == pytest.approx(-1.1)


@pytest.mark.parametrize("bad", [math.nan, None, math.inf, "x"])
def test_questioner_reward_unusable_penalty_is_invalid(bad):
    assert questioner_reward(0.5, bad, True) == 0.0
    assert questioner_reward(0.5, bad, True, mode="reference") == -1.0


def test_questioner_reward_numpy_like_numbers():
    class Float32:  # stands in for numpy scalars: anything float() accepts
        def __float__(self):
            return 0.5

    assert questioner_reward(Float32(), 0.0, 1) == 1.0


@pytest.mark.parametrize("mode", ["Paper", "ref", "", None])
def test_questioner_reward_rejects_unknown_mode(mode):
    with pytest.raises(ValueError, match=repr(mode).replace("(", r"\(")):
        questioner_reward(0.5, 0.0, True, mode=mode)


@pytest.mark.parametrize("lam", [-1.0, math.nan, math.inf, "1"])
def test_questioner_reward_rejects_bad_lambda(lam):
    with pytest.raises(ValueError, match="lam"):
        questioner_reward(0.5, 0.0, True, lam=lam)


def test_questioner_reward_returns_float():
    for mode in ("paper", "reference"):
        for valid in (True, False):
            assert type(questioner_reward(0.3, 0.1, valid, mode=mode)) is float


# ---------------------------------------------------------------------------------------------------------------
# reasoner_score
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, label, accuracy, fmt",
    [
        ("so \\boxed{12}", "12", 1.0, 1.0),
        ("so \\boxed{12.0}", "12", 1.0, 1.0),
        ("so \\boxed{\\frac{1}{2}}", "0.5", 1.0, 1.0),
        ("so \\boxed{(A)}", "\\text{A}", 1.0, 1.0),
        ("so \\boxed{13}", "12", 0.0, 1.0),
        ("so \\boxed{}", "12", 0.0, 0.0),
        ("the answer is 12", "12", 0.0, 0.0),  # right answer, but not boxed
        ("\\boxed{12", "12", 0.0, 0.0),
        ("\\boxed{12}", None, 0.0, 1.0),
        ("\\boxed{12}", "", 0.0, 1.0),
        ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", 1.0, 1.0),
    ],
)
def test_reasoner_score(response, label, accuracy, fmt):
    score = reasoner_score(response, label)
    assert score == {"overall": 0.9 * accuracy + 0.1 * fmt, "accuracy": accuracy, "format": fmt}


@pytest.mark.parametrize("response", [None, 12, b"\\boxed{12}", ["\\boxed{12}"]])
def test_reasoner_score_non_str_is_zero(response):
    assert reasoner_score(response, "12") == {"overall": 0.0, "accuracy": 0.0, "format": 0.0}


def test_reasoner_score_format_weight():
    assert reasoner_score("\\boxed{1}", "2", format_weight=0.5)["overall"] == 0.5
    assert reasoner_score("\\boxed{1}", "1", format_weight=0.0)["overall"] == 1.0
    with pytest.raises(ValueError, match="format_weight"):
        reasoner_score("\\boxed{1}", "1", format_weight=1.5)


def test_reasoner_score_runaway_answer_is_wrong_not_stuck():
    score = reasoner_score("\\boxed{9^{387420489}+1}", "9^{9^{9}}+1", timeout=1.0)
    assert score == {"overall": 0.1, "accuracy": 0.0, "format": 1.0}


def test_reasoner_score_batch_matches_single():
    responses = ["\\boxed{12}", "\\boxed{0.5}", None, "no box", "\\boxed{B}", "\\boxed{x=3}"]
    labels = ["12.0", "\\frac{1}{2}", "1", "1", "A", "3"]
    assert reasoner_score_batch(responses, labels) == [
        reasoner_score(r, y) for r, y in zip(responses, labels, strict=True)
    ]
    with pytest.raises(ValueError, match="pseudo-labels"):
        reasoner_score_batch(responses, labels[:-1])
