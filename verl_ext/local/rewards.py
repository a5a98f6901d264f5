"""TRL reward functions of the two roles, wrapping the core: the questioner's VisPlay reward and the reasoner's score.

TRL calls a reward function once per generation batch (one verl "step" of rollouts) with every completion of it, so
the repetition penalty is taken over exactly the batch the paper takes it over. Sub-scores go to TRL's metric log
through the `log_metric` hook (averaged per logging step), and stay readable on the object (`history`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from verl_ext.prompts import render_reasoner_prompt
from verl_ext.visplay import parse_question, questioner_reward, repetition_penalty
from verl_ext.visplay.rewards import reasoner_score_batch
from verl_ext.visplay.voting import majority_vote_batch

from .models import decode_image
from .sampling import SamplingParams, batch_seed, sample


def completion_text(completion: Any) -> str:
    """TRL passes a conversational completion as [{"role": "assistant", "content": str | [parts]}], else a str."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else ""
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content if isinstance(content, str) else ""
    return ""


@dataclass
class QuestionerScores:
    """Everything one batch's questioner reward was computed from, aligned with the completions."""

    rewards: list[float]
    valid: list[bool]
    questions: list[str]  # "" for an unparsable completion (it enters the clustering as "")
    confidence: list[float]  # p = |largest answer group| / m; 0.0 for an unparsable completion
    penalty: list[float]  # |cluster| / B over the whole batch
    pseudo_labels: list[str | None]
    reasoner_responses: list[list[str]]  # m per valid completion, [] otherwise
    metrics: dict[str, float] = field(default_factory=dict)


class QuestionerReward:
    """VisPlay's questioner reward; the frozen reasoner samples in-process (m answers per valid question, batched)."""

    __name__ = "visplay_questioner"

    def __init__(
        self,
        reasoner_model,
        processor,
        *,
        m: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 40,
        max_new_tokens: int = 4096,
        mode: str = "paper",
        lam: float = 1.0,
        cluster_threshold: float = 0.5,
        reasoner_prompt: str | None = None,
        seed: int = 0,
        batch_size: int = 16,
    ):
        self.reasoner_model = reasoner_model
        self.processor = processor
        self.params = SamplingParams(
            n=m, temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens
        )
        self.mode, self.lam, self.cluster_threshold = mode, lam, cluster_threshold
        self.reasoner_prompt = reasoner_prompt
        self.seed, self.batch_size = seed, batch_size
        self.calls = 0
        self.history: list[dict[str, float]] = []
        self.last: QuestionerScores | None = None

    def score(self, texts: Sequence[str], images: Sequence[Any], step: int | None = None) -> QuestionerScores:
        """Rewards of one batch of questioner outputs, each with the image it was asked about.

        The reasoner samples under a seed derived from `step` (the trainer's global step, so a resumed run samples
        as an uninterrupted one would), else from the number of calls so far."""
        records = [parse_question(t) for t in texts]
        valid_idx = [i for i, r in enumerate(records) if r is not None]
        prompts = [
            render_reasoner_prompt(records[i].question, self.reasoner_prompt, records[i].type) for i in valid_idx
        ]
        valid_images = [decode_image(images[i]) for i in valid_idx]
        seed = batch_seed(self.seed, self.calls if step is None else step)
        self.calls += 1
        answers = sample(
            self.reasoner_model,
            self.processor,
            prompts,
            valid_images,
            self.params,
            seed=seed,
            batch_size=self.batch_size,
        )
        votes = majority_vote_batch(answers)
        responses: list[list[str]] = [[] for _ in texts]
        confidence = [0.0] * len(texts)
        labels: list[str | None] = [None] * len(texts)
        unparsed = 0
        for i, group, vote in zip(valid_idx, answers, votes, strict=True):
            responses[i], confidence[i], labels[i] = group, float(vote.confidence), vote.answer
            unparsed += vote.num_unparsed
        questions = [r.question if r is not None else "" for r in records]
        penalty = [float(p) for p in repetition_penalty(questions, threshold=self.cluster_threshold)]
        valid = [r is not None for r in records]
        rewards = [
            float(questioner_reward(p, pen, v, mode=self.mode, lam=self.lam))
            for p, pen, v in zip(confidence, penalty, valid, strict=True)
        ]
        metrics = {"visplay/parse_rate": len(valid_idx) / max(1, len(texts))}
        if valid_idx:
            conf = [confidence[i] for i in valid_idx]
            metrics.update(
                {
                    "visplay/confidence": sum(conf) / len(conf),
                    "visplay/penalty": sum(penalty[i] for i in valid_idx) / len(valid_idx),
                    # the reward before the diversity penalty, valid completions only
                    "visplay/uncertainty": sum(questioner_reward(p, 0.0, True, self.mode, self.lam) for p in conf)
                    / len(conf),
                    "visplay/confidence_one_share": sum(c >= 1.0 for c in conf) / len(conf),
                    "visplay/reasoner_unparsed_share": unparsed / (len(valid_idx) * self.params.n),
                }
            )
        return QuestionerScores(rewards, valid, questions, confidence, penalty, labels, responses, metrics)

    def __call__(
        self, prompts, completions, image=None, images=None, trainer_state=None, log_metric=None, log_extra=None, **_
    ):
        texts = [completion_text(c) for c in completions]
        if image is None and images is not None:
            image = [imgs[0] if imgs else None for imgs in images]
        if image is None:
            raise ValueError("the questioner reward needs the prompt images (a dataset column `image`)")
        step = getattr(trainer_state, "global_step", None)
        scores = self.score(texts, image, step=step)
        self.last = scores
        self.history.append(scores.metrics)
        if log_metric is not None:
            for name, value in scores.metrics.items():
                log_metric(name, value)
        if log_extra is not None:
            log_extra("confidence", scores.confidence)
            log_extra("penalty", scores.penalty)
        return scores.rewards


class ReasonerReward:
    """(1 - w) * [answer equivalent to the pseudo-label y*] + w * [a boxed answer], w = format_weight."""

    __name__ = "visplay_reasoner"

    def __init__(self, format_weight: float = 0.1):
        self.format_weight = format_weight
        self.history: list[dict[str, float]] = []

    def __call__(self, prompts, completions, pseudo_label=None, log_metric=None, **kwargs):
        if pseudo_label is None:
            raise ValueError("the reasoner reward needs a dataset column `pseudo_label`")
        texts = [completion_text(c) for c in completions]
        scores = reasoner_score_batch(texts, list(pseudo_label), self.format_weight)
        metrics = {
            "visplay/accuracy": sum(s["accuracy"] for s in scores) / max(1, len(scores)),
            "visplay/format": sum(s["format"] for s in scores) / max(1, len(scores)),
        }
        self.history.append(metrics)
        if log_metric is not None:
            for name, value in metrics.items():
                log_metric(name, value)
        return [s["overall"] for s in scores]
