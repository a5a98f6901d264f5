"""The questioner's reward manager for verl 0.9.1's reward loop: parse, ask the frozen reasoner, vote.

Per rollout it parses `<type><question><answer>`, sends the question with its image to the frozen reasoner for m
samples, and records the majority vote's confidence p. The batch-level repetition penalty cannot be computed
one sample at a time, so the returned score is the reward without it; `verl_ext.plugins.trainer` recomputes the final
reward over the whole step from the `vp_*` fields returned here.
Selected with reward.reward_manager.source=importlib, .module.path=pkg://verl_ext.plugins.reward_manager,
.name=QuestionerRewardManager (importlib, because verl builds the manager inside fresh Ray workers).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from verl_ext.plugins.reasoner_client import ReasonerClient
from verl_ext.prompts import FROZEN_REASONER_PROMPTS, frozen_reasoner_messages
from verl_ext.visplay import majority_vote, parse_question, questioner_reward

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "WARN"))

REWARD_MODES = ("paper", "reference")

# Every sample returns exactly these keys (verl stacks them per key across the batch), with fixed types.
EXTRA_INFO_DEFAULTS: dict[str, Any] = {
    "vp_valid": 0.0,  # 1.0 when the rollout parsed as <type><question><answer>
    "vp_question": "",
    "vp_type": "",
    "vp_questioner_answer": "",
    "vp_confidence": 0.0,  # p = |largest answer group| / m; 0 when invalid or the reasoner failed
    "vp_pseudo_label": "",  # the reasoner's majority answer y*
    "vp_uncertainty": 0.0,  # questioner_reward(p, 0, valid): the reward before the repetition penalty
    "vp_num_requested": 0,  # m
    "vp_num_samples": 0,  # completions that really came back
    "vp_num_missing": 0,  # m - received (nonzero only on a failed request: a vote never has fewer than m answers)
    "vp_num_unparsed": 0,  # answers with no \boxed{}
    "vp_attempts": 0,  # HTTP requests made for this question
    "vp_timeouts": 0,
    "vp_reasoner_failed": 0.0,  # 1.0 when the reasoner could not answer after all retries
    "vp_reasoner_error": "",
    "vp_image_missing": 0.0,  # 1.0 when no image was found in raw_prompt (the question is sent text-only)
    "vp_empty_response": 0.0,  # 1.0 when the rollout decoded to whitespace only
}
EXTRA_INFO_KEYS = tuple(EXTRA_INFO_DEFAULTS)


@dataclass(frozen=True)
class QuestionerRewardSettings:
    mode: str = "paper"
    lam: float = 1.0
    reasoner_prompt: str | None = None
    prompt_style: str = "step_by_step"  # how the frozen reasoner is asked: answer_only | step_by_step

    @classmethod
    def from_config(cls, config) -> QuestionerRewardSettings:
        visplay = config.get("visplay") or {}
        reward = visplay.get("reward") or {}
        settings = cls(
            mode=str(reward.get("mode", "paper")),
            lam=float(reward.get("lam", 1.0)),
            reasoner_prompt=visplay.get("reasoner_prompt", None),
            prompt_style=str((visplay.get("reasoner") or {}).get("prompt_style", "step_by_step")),
        )
        if settings.mode not in REWARD_MODES:
            raise ValueError(f"visplay.reward.mode must be one of {REWARD_MODES}, got {settings.mode!r}")
        if settings.prompt_style not in FROZEN_REASONER_PROMPTS:
            raise ValueError(
                f"visplay.reasoner.prompt_style must be one of {FROZEN_REASONER_PROMPTS}, "
                f"got {settings.prompt_style!r}"
            )
        return settings


def find_image(raw_prompt) -> Any:
    """The first image of a chat (`{"type": "image", "image": ...}` as verl's datasets build it), or None."""
    if raw_prompt is None:
        return None
    for message in list(raw_prompt):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for item in content:
            if isinstance(item, dict) and item.get("type") == "image":
                for key in ("image", "bytes", "path", "image_url"):
                    value = item.get(key)
                    if isinstance(value, dict):  # OpenAI style {"url": ...}
                        value = value.get("url")
                    if value is not None:
                        return value
    return None


async def score_question(
    response_text: str, image: Any, client: ReasonerClient, settings: QuestionerRewardSettings
) -> dict[str, Any]:
    """The reward manager's per-rollout work, free of verl types (the offline code and tests call it too)."""
    info = dict(EXTRA_INFO_DEFAULTS)
    info["vp_num_requested"] = client.num_samples
    info["vp_empty_response"] = float(not (response_text or "").strip())
    record = parse_question(response_text)
    if record is None:
        # rule: an unparsable rollout gets the invalid-format reward; the reasoner is not asked
        info["vp_uncertainty"] = questioner_reward(0.0, 0.0, False, mode=settings.mode, lam=settings.lam)
        return info
    info.update(vp_valid=1.0, vp_question=record.question, vp_type=record.type, vp_questioner_answer=record.answer)
    if image is None:
        info["vp_image_missing"] = 1.0
        logger.warning("questioner rollout has no image in raw_prompt; asking the reasoner text-only")
    system, prompt = frozen_reasoner_messages(
        record.question, record.type, settings.prompt_style, settings.reasoner_prompt
    )
    result = await client.sample(prompt, image, system=system)
    info.update(
        vp_num_samples=len(result.texts),
        vp_num_missing=result.missing,
        vp_attempts=result.attempts,
        vp_timeouts=result.timeouts,
    )
    if not result.ok:
        # rule: no confidence can be claimed; the trainer hook fails the step (or, within
        # visplay.reasoner.max_failed_fraction, scores it 0) instead of training on a made-up reward
        info.update(vp_reasoner_failed=1.0, vp_reasoner_error=result.error[:500])
        return info
    responses = list(result.texts)  # a valid result holds exactly m texts: p keeps denominator m
    # the math grader round-trips to a worker process: keep it off the event loop that serves other rollouts
    vote = await asyncio.get_running_loop().run_in_executor(None, majority_vote, responses)
    info.update(
        vp_confidence=float(vote.confidence),
        vp_pseudo_label="" if vote.answer is None else str(vote.answer),
        vp_num_unparsed=int(vote.num_unparsed),
    )
    info["vp_uncertainty"] = questioner_reward(info["vp_confidence"], 0.0, True, mode=settings.mode, lam=settings.lam)
    return info


@register("visplay_questioner")
class QuestionerRewardManager(RewardManagerBase):
    """Reward manager of the questioner stage. The frozen reasoner is reached through verl's reward-model router
    (`reward_router_address`, when reward.reward_model.enable=True) or visplay.reasoner.base_url."""

    def __init__(self, config, tokenizer, compute_score, reward_router_address=None, reward_model_tokenizer=None, **_):
        super().__init__(config, tokenizer, compute_score)
        reward_cfg = config.reward
        if reward_cfg.reward_model.enable and reward_cfg.custom_reward_function.get("path") is None:
            # verl 0.9.1's RewardLoopWorker.compute_score sends every sample to the discriminative-RM /classify
            # path when a reward model is enabled and no custom function is set, never reaching this manager.
            raise ValueError(
                "QuestionerRewardManager with reward.reward_model.enable=True needs "
                "reward.custom_reward_function.path set (e.g. pkg://verl_ext.plugins.reward_functions, name "
                "questioner_routing_marker); otherwise verl scores samples on its /classify path and "
                "bypasses this manager"
            )
        visplay = config.get("visplay") or {}
        reasoner_cfg = visplay.get("reasoner") or {}
        self.settings = QuestionerRewardSettings.from_config(config)
        self.reward_router_address = reward_router_address
        self.client = ReasonerClient.from_config(reasoner_cfg, router_address=reward_router_address)
        logger.info(
            "questioner reward: reasoner at %s, m=%d, mode=%s",
            self.client.base_url,
            self.client.num_samples,
            self.settings.mode,
        )

    async def run_single(self, data: DataProto) -> dict:
        data = data[-1:]  # multi-output agent loops: the final output carries the question
        item = data[0]
        response_ids = item.batch["responses"]
        valid_length = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
        valid_ids = response_ids[:valid_length]
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(None, lambda: self.tokenizer.decode(valid_ids, skip_special_tokens=True))
        image = find_image(item.non_tensor_batch.get("raw_prompt"))
        info = await score_question(text, image, self.client, self.settings)
        return {"reward_score": float(info["vp_uncertainty"]), "reward_extra_info": info}
