"""questioner.reasoner_prompt: how the frozen reasoner is asked inside the questioner's reward. answer_only (the
reference recipes' default) sends a system prompt asking for the final answer only and the question type in the user
text; step_by_step sends the reasoner's <think> prompt. The request that reaches the endpoint carries it."""

import asyncio
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from verl_ext.evolve import commands
from verl_ext.evolve.recipe import RecipeError, load_recipe
from verl_ext.evolve.stages import build_plan
from verl_ext.plugins.reasoner_client import SampleResult, build_messages
from verl_ext.plugins.reward_manager import QuestionerRewardSettings, score_question
from verl_ext.prompts import ANSWER_ONLY_SYSTEM_PROMPT

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "<type>numerical</type><question>How many shapes are there?</question><answer>3</answer>"


class RecordingClient:
    num_samples = 4

    def __init__(self):
        self.calls = []

    async def sample(self, prompt, image=None, n=None, system=None):
        self.calls.append({"prompt": prompt, "system": system})
        return SampleResult(texts=["\\boxed{3}", "\\boxed{3}", "\\boxed{4}", "no box"], requested=4)


def _score(style: str) -> tuple[dict, dict]:
    config = OmegaConf.create({"visplay": {"reward": {"mode": "reference"}, "reasoner": {"prompt_style": style}}})
    client = RecordingClient()
    info = asyncio.run(score_question(QUESTION, b"img", client, QuestionerRewardSettings.from_config(config)))
    (call,) = client.calls
    return info, call


def test_answer_only_sends_the_reference_system_prompt_and_the_type():
    info, call = _score("answer_only")
    assert call["system"] == ANSWER_ONLY_SYSTEM_PROMPT and "\\boxed{}" in call["system"]
    assert "numerical" in call["prompt"] and "How many shapes are there?" in call["prompt"]
    assert "<think>" not in call["prompt"] and "<think>" not in call["system"]
    assert info["vp_confidence"] == 0.5  # 2 of m = 4 agree; the unboxed answer counts in m


def test_step_by_step_sends_the_reasoner_prompt_without_a_system_message():
    _, call = _score("step_by_step")
    assert call["system"] is None and "<think>" in call["prompt"]


def test_unknown_style_is_refused():
    config = OmegaConf.create({"visplay": {"reasoner": {"prompt_style": "chatty"}}})
    with pytest.raises(ValueError, match="prompt_style"):
        QuestionerRewardSettings.from_config(config)


def test_chat_request_puts_the_system_prompt_first():
    messages = build_messages("Q?", "data:image/png;base64,xx", system="S")
    assert [m["role"] for m in messages] == ["system", "user"] and messages[0]["content"] == "S"
    assert [m["role"] for m in build_messages("Q?", None)] == ["user"]


def test_recipe_key_reaches_the_questioner_stage(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-vl-7b.yaml", env={})
    spec = next(s for s in build_plan(recipe, tmp_path) if s.key == "1:questioner")
    overrides = dict(commands.questioner_overrides(recipe, spec, resolve=lambda p: p))
    assert overrides["visplay.reasoner.prompt_style"] == "answer_only"
    recipe = load_recipe(
        ROOT / "recipes" / "qwen2.5-vl-7b.yaml", overrides=["questioner.reasoner_prompt=step_by_step"], env={}
    )
    assert dict(commands.questioner_overrides(recipe, spec, resolve=lambda p: p))["visplay.reasoner.prompt_style"] == (
        "step_by_step"
    )
    with pytest.raises(RecipeError, match="questioner.reasoner_prompt: the local backend"):
        load_recipe(ROOT / "recipes" / "tiny.yaml", overrides=["questioner.reasoner_prompt=answer_only"], env={})
