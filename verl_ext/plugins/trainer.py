"""verl 0.9.1 V1 sync trainer with VisPlay's batch-level questioner reward (`trainer.v1.trainer_mode=visplay_sync`).

The reward loop scores one rollout at a time, but the repetition penalty is defined over all rollouts of a step.
Before GRPO computes advantages, this trainer reads every real (non-padding) rollout's `vp_*` reward info from the
TransferQueue, clusters the questions, and rewrites `rm_scores` with questioner_reward(p, pen, valid, mode, lambda).
It also logs VisPlay's metrics (both stages). Registration runs on import; `verl_ext.plugins.main_visplay` imports this
module inside the TaskRunner actor, where verl looks the trainer up.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import transfer_queue as tq
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu

from verl_ext.plugins.reasoner_client import ReasonerEndpointError
from verl_ext.visplay import questioner_reward, repetition_penalty

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

TRAINER_NAME = "visplay_sync"
METRIC_PREFIX = "visplay"
QUESTION_TYPES = ("multiple choice", "numerical", "regression")
# The reward-manager fields this trainer reads (see verl_ext.plugins.reward_manager.EXTRA_INFO_DEFAULTS).
REQUIRED_FIELDS = ("vp_valid", "vp_question", "vp_confidence", "vp_type", "vp_reasoner_failed")
OPTIONAL_FIELDS = (
    "vp_reasoner_error",
    "vp_uncertainty",
    "vp_num_requested",
    "vp_num_samples",
    "vp_num_missing",
    "vp_num_unparsed",
    "vp_attempts",
    "vp_timeouts",
    "vp_image_missing",
    "vp_empty_response",
)


@dataclass(frozen=True)
class PenaltySettings:
    mode: str = "paper"
    lam: float = 1.0  # lambda
    threshold: float = 0.5  # BLEU-distance cut of the clustering
    max_failed_fraction: float = 0.0

    @classmethod
    def from_config(cls, config) -> PenaltySettings:
        visplay = config.get("visplay") or {}
        reward = visplay.get("reward") or {}
        reasoner = visplay.get("reasoner") or {}
        return cls(
            mode=str(reward.get("mode", "paper")),
            lam=float(reward.get("lam", 1.0)),
            threshold=float(reward.get("bleu_threshold", 0.5)),
            max_failed_fraction=float(reasoner.get("max_failed_fraction", 0.0)),
        )


@dataclass
class QuestionerRewards:
    rewards: list[float]
    penalties: list[float]
    metrics: dict[str, float] = field(default_factory=dict)


def _flag(value: Any) -> bool:
    try:
        return bool(float(value))
    except (TypeError, ValueError):
        return bool(value)


def _number(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(number) else number


def compute_questioner_rewards(infos: Sequence[dict], settings: PenaltySettings) -> QuestionerRewards:
    """Final questioner rewards of one step's real rollouts from their reward-manager infos.

    B = len(infos). Questions of invalid rollouts enter the clustering as "" (as the reference code does), so
    every real rollout counts in B. A rollout whose reasoner request failed gets 0; if more than
    `max_failed_fraction` of the step failed, the step fails with the first error.
    """
    count = len(infos)
    if count == 0:
        return QuestionerRewards([], [], {})
    valid = [_flag(info.get("vp_valid", 0.0)) for info in infos]
    failed = [_flag(info.get("vp_reasoner_failed", 0.0)) for info in infos]
    num_failed = sum(failed)
    if num_failed and num_failed / count > settings.max_failed_fraction:
        first = next(str(info.get("vp_reasoner_error", "")) for info, f in zip(infos, failed, strict=True) if f)
        raise ReasonerEndpointError(
            f"the frozen reasoner failed on {num_failed} of {count} questions this step (allowed fraction "
            f"visplay.reasoner.max_failed_fraction={settings.max_failed_fraction}); first error: {first}"
        )
    confidence = [_number(info.get("vp_confidence", 0.0)) for info in infos]
    questions = [str(info.get("vp_question") or "") if v else "" for info, v in zip(infos, valid, strict=True)]
    penalties = [float(p) for p in repetition_penalty(questions, threshold=settings.threshold)]
    rewards = [
        0.0 if f else float(questioner_reward(p, pen, v, mode=settings.mode, lam=settings.lam))
        for p, pen, v, f in zip(confidence, penalties, valid, failed, strict=True)
    ]
    return QuestionerRewards(rewards, penalties, _metrics(infos, valid, failed, confidence, penalties, rewards))


def _metrics(infos, valid, failed, confidence, penalties, rewards) -> dict[str, float]:
    count = len(infos)
    answered = [v and not f for v, f in zip(valid, failed, strict=True)]
    m = METRIC_PREFIX
    metrics = {
        f"{m}/valid_rate": sum(valid) / count,
        f"{m}/unparsable_share": 1.0 - sum(valid) / count,
        f"{m}/reward/mean": float(np.mean(rewards)),
        f"{m}/reward/min": float(np.min(rewards)),
        f"{m}/reward/max": float(np.max(rewards)),
        # the same rewards without the repetition penalty (failed reasoner calls still 0): what the penalty took away
        f"{m}/reward/before_penalty_mean": float(
            np.mean([0.0 if f else _number(i.get("vp_uncertainty")) for i, f in zip(infos, failed, strict=True)])
        ),
        f"{m}/reasoner/failed": float(sum(failed)),
        f"{m}/empty_response_share": float(np.mean([_flag(i.get("vp_empty_response", 0.0)) for i in infos])),
        f"{m}/image_missing": float(sum(_flag(i.get("vp_image_missing", 0.0)) for i in infos)),
        f"{m}/reasoner/timeouts": float(sum(_number(i.get("vp_timeouts")) for i in infos)),
        f"{m}/reasoner/missing_samples": float(sum(_number(i.get("vp_num_missing")) for i in infos)),
    }
    if any(valid):
        valid_penalties = [p for p, v in zip(penalties, valid, strict=True) if v]
        metrics[f"{m}/penalty/mean"] = float(np.mean(valid_penalties))
        metrics[f"{m}/penalty/max"] = float(np.max(valid_penalties))
        types = [str(i.get("vp_type") or "") for i, v in zip(infos, valid, strict=True) if v]
        for qtype in QUESTION_TYPES:
            metrics[f"{m}/type/{qtype.replace(' ', '_')}"] = types.count(qtype) / len(types)
    if any(answered):
        conf = [c for c, a in zip(confidence, answered, strict=True) if a]
        metrics[f"{m}/confidence/mean"] = float(np.mean(conf))
        metrics[f"{m}/confidence/min"] = float(np.min(conf))
        metrics[f"{m}/confidence/max"] = float(np.max(conf))
        # questions the reasoner always answers the same way (p = 1): too easy, no training signal
        metrics[f"{m}/confidence/one_share"] = float(np.mean([c >= 1.0 for c in conf]))
        requested = sum(_number(i.get("vp_num_requested")) for i, a in zip(infos, answered, strict=True) if a)
        unparsed = sum(_number(i.get("vp_num_unparsed")) for i, a in zip(infos, answered, strict=True) if a)
        if requested > 0:
            metrics[f"{m}/reasoner/unparsed_answer_share"] = unparsed / requested
        metrics[f"{m}/reasoner/attempts_mean"] = float(
            np.mean([_number(i.get("vp_attempts")) for i, a in zip(infos, answered, strict=True) if a])
        )
    return metrics


def _as_list(value: Any) -> list:
    """A TransferQueue field as a Python list, whatever container the backend returns."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):
        return list(value.tolist())
    return list(value)


def _unwrap(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    data = getattr(value, "data", None)  # tensordict NonTensorData
    if data is not None and type(value).__name__ == "NonTensorData":
        return data
    return value


def read_reward_extra_info(keys: list[str], partition_id: str, layout: str, field_names: Sequence[str]) -> list[dict]:
    """Per-sample reward_extra_info dicts from the TransferQueue, for both of verl 0.9.1's layouts:
    "extra_fields": reward computed inside the agent loop (no reward model, or one in its own pool):
        each sample's `extra_fields["reward_extra_info"]` (agent_loop.py, AgentLoopWorker._compute_score);
    "fields": reward computed by the trainer with a colocated reward model: one field per key
        (trainer_base.py, PPOTrainer._compute_reward_colocate)."""
    if layout == "extra_fields":
        data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["extra_fields"])
        infos = []
        for extra in _as_list(data["extra_fields"]):
            extra = _unwrap(extra)
            info = extra.get("reward_extra_info") if isinstance(extra, dict) else None
            infos.append(dict(info) if isinstance(info, dict) else {})
        return infos
    if layout == "fields":
        try:
            data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=list(field_names))
        except Exception as exc:
            raise RuntimeError(
                f"could not read the reward fields {list(field_names)} from the TransferQueue; is "
                "reward.reward_manager QuestionerRewardManager (pkg://verl_ext.plugins.reward_manager)?"
            ) from exc
        columns = {name: [_unwrap(v) for v in _as_list(data[name])] for name in field_names}
        return [{name: columns[name][i] for name in field_names} for i in range(len(keys))]
    raise ValueError(f"unknown reward info layout {layout!r}")


def rewrite_rm_scores(keys: list[str], partition_id: str, final: dict[int, float]) -> None:
    """Set each listed sample's token-level score to `final[i]` on its last response token (zeros elsewhere),
    the position verl's reward loop writes a sequence score to; other samples are written back unchanged."""
    data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["rm_scores"])
    rows = list(data["rm_scores"].unbind())
    for index, value in final.items():
        row = torch.zeros_like(rows[index])
        if row.numel():
            row[-1] = value
        rows[index] = row
    nested = torch.nested.as_nested_tensor([r.contiguous() for r in rows], layout=torch.jagged)
    tq.kv_batch_put(keys=keys, partition_id=partition_id, fields=tu.get_tensordict({"rm_scores": nested}))


@register_trainer(TRAINER_NAME)
class VisPlayTrainer(PPOTrainerSync):
    """verl's sync trainer plus the questioner's batch-level repetition penalty and VisPlay metrics."""

    # verl's base class branches on `trainer_mode == "sync"` (replay buffer, refill, resume, dataloader): this
    # trainer IS the sync trainer, registered under its own name, so it reports "sync" to those checks.
    @property
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        self.registered_mode = value

    def _reward_info_layout(self) -> str:
        manager = getattr(self, "reward_loop_manager", None)
        if manager is not None:
            return "fields" if manager.reward_loop_worker_handles is None else "extra_fields"
        reward_model = self.config.reward.reward_model
        return "fields" if reward_model.enable and not reward_model.enable_resource_pool else "extra_fields"

    def _compute_advantage(self, batch, metrics: dict):
        stage = (self.config.get("visplay") or {}).get("stage", None)
        if stage == "questioner":
            self.apply_questioner_rewards(batch, metrics)
        else:
            self.log_reward_extra_info(batch, metrics)
        return super()._compute_advantage(batch, metrics)

    def apply_questioner_rewards(self, batch, metrics: dict) -> QuestionerRewards:
        real = [i for i, tag in enumerate(batch.tags) if not tag.get("is_padding", False)]
        if not real:
            return QuestionerRewards([], [], {})
        real_keys = [batch.keys[i] for i in real]
        layout = self._reward_info_layout()
        fields = REQUIRED_FIELDS + OPTIONAL_FIELDS if layout == "fields" else ()
        infos = read_reward_extra_info(real_keys, batch.partition_id, layout, fields)
        missing = [name for name in REQUIRED_FIELDS if name not in infos[0]]
        if missing:
            raise RuntimeError(
                f"visplay.stage=questioner but the reward info lacks {missing}: set reward.reward_manager to "
                "QuestionerRewardManager (source=importlib, module.path=pkg://verl_ext.plugins.reward_manager)"
            )
        outcome = compute_questioner_rewards(infos, PenaltySettings.from_config(self.config))
        rewrite_rm_scores(batch.keys, batch.partition_id, {i: r for i, r in zip(real, outcome.rewards, strict=True)})
        metrics.update(outcome.metrics)
        return outcome

    def log_reward_extra_info(self, batch, metrics: dict) -> None:
        """Mean of every numeric reward_extra_info key (e.g. the reasoner's accuracy and format) over real
        rollouts: verl 0.9.1 logs these only during validation."""
        if self._reward_info_layout() != "extra_fields":
            return
        real_keys = [k for k, tag in zip(batch.keys, batch.tags, strict=True) if not tag.get("is_padding", False)]
        if not real_keys:
            return
        infos = read_reward_extra_info(real_keys, batch.partition_id, "extra_fields", ())
        for key in sorted({k for info in infos for k in info}):
            values = [_unwrap(info.get(key)) for info in infos]
            numbers = [float(v) for v in values if isinstance(v, int | float | bool) and not isinstance(v, str)]
            if len(numbers) == len(values):
                metrics[f"{METRIC_PREFIX}/reward_extra/{key}/mean"] = float(np.mean(numbers))
