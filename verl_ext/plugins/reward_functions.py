"""Reward functions for `reward.custom_reward_function.path/name` (EasyR1 style: a dict of named sub-scores).

`reasoner_compute_score` scores a reasoner rollout against the pseudo-label; verl logs every key it returns.
`questioner_routing_marker` only exists because verl 0.9.1 needs *a* custom function configured in the
questioner stage (see its docstring); it is never called.
"""

from __future__ import annotations

from typing import Any

from verl_ext.visplay import reasoner_score

# EasyR1's contract: "sequential" = one call per sample (verl's reward loop calls us per sample anyway).
REWARD_TYPE = "sequential"


def reasoner_compute_score(
    data_source: str | None = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: dict | None = None,
    format_weight: float = 0.1,
    **kwargs,
) -> dict[str, float]:
    """0.9 * [answer equivalent to the pseudo-label y*] + 0.1 * [format valid] (format_weight = 0.1).

    Returns {"score", "overall", "accuracy", "format"}: verl's NaiveRewardManager reads "score" as the reward and
    keeps every key as reward_extra_info. A missing pseudo-label scores accuracy 0 (never a crash).
    """
    label = "" if ground_truth is None else str(ground_truth)
    scores = reasoner_score(
        solution_str if isinstance(solution_str, str) else "", label, format_weight=float(format_weight)
    )
    result = {key: float(scores[key]) for key in ("overall", "accuracy", "format")}
    return {"score": result["overall"], **result}


def questioner_routing_marker(*args, **kwargs):
    """Never called. verl 0.9.1's RewardLoopWorker.compute_score (reward_loop.py:145-155) sends samples to the
    discriminative reward-model path when reward.reward_model.enable=True and no custom reward function path is
    set; naming this function keeps verl on the reward manager's `run_single`, where the questioner reward
    (QuestionerRewardManager) is computed."""
    raise RuntimeError(
        "questioner_routing_marker is a config marker, not a reward function: use reward.reward_manager "
        "QuestionerRewardManager (pkg://verl_ext.plugins.reward_manager) with it"
    )
