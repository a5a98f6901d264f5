"""`visplay/reward/before_penalty_mean`: what the batch repetition penalty took away, logged every questioner step
(tests/verl_cpu compares it with verl's `critic/score/mean` to see the penalty reach `rm_scores`)."""

import pytest

from verl_ext.plugins.trainer import PenaltySettings, compute_questioner_rewards
from verl_ext.visplay import questioner_reward


def _info(question: str, p: float, failed: bool = False) -> dict:
    return {
        "vp_valid": 1.0,
        "vp_question": question,
        "vp_confidence": p,
        "vp_type": "numerical",
        "vp_reasoner_failed": float(failed),
        "vp_uncertainty": questioner_reward(p, 0.0, True),
    }


def test_duplicated_questions_lower_the_mean_below_the_unpenalised_one():
    distinct = [_info(f"How many {shape}s are in the image?", 0.5) for shape in ("circle", "square", "star", "cube")]
    duplicated = [_info("How many circles are in the image?", 0.5) for _ in range(4)]
    for infos in (distinct, duplicated):
        out = compute_questioner_rewards(infos, PenaltySettings())
        assert out.metrics["visplay/reward/before_penalty_mean"] == pytest.approx(1.0)
        assert out.metrics["visplay/reward/mean"] < out.metrics["visplay/reward/before_penalty_mean"]
    penalised = compute_questioner_rewards(duplicated, PenaltySettings()).metrics["visplay/reward/mean"]
    assert penalised < compute_questioner_rewards(distinct, PenaltySettings()).metrics["visplay/reward/mean"]


def test_failed_reasoner_calls_count_zero_before_the_penalty_too():
    infos = [_info("a question?", 0.5), _info("another question?", 0.5, failed=True)]
    out = compute_questioner_rewards(infos, PenaltySettings(max_failed_fraction=1.0))
    assert out.metrics["visplay/reward/before_penalty_mean"] == pytest.approx(0.5)
