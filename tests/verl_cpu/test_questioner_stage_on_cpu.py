"""The questioner stage through verl's real V1 trainer on the CPU, the frozen reasoner behind the test server.

Three GRPO steps of the format-warmed tiny Qwen2.5-VL (its questions parse) with QuestionerRewardManager asking the
project's OpenAI-compatible test server, and the visplay_sync trainer applying the batch repetition penalty to
`rm_scores` before GRPO's advantage. Steps 1-2 succeed; once step 2 is logged the server starts answering 503, so
step 3's reasoner calls fail and the stage must fail (max_failed_fraction = 0) instead of training on zeros.
"""

from __future__ import annotations

import threading

import pytest

from verl_ext.evolve import commands
from verl_ext.evolve.verl_backend import VerlBackend
from verl_ext.inference.openai_server import OpenAIChatServer, RequestError

from .conftest import load_tiny_verl, run_stage, stage_context

STEPS = 3
FAIL_FROM_STEP = 3
# test-only: fail fast when the server refuses (the recipe keeps verl_ext's production retry policy)
FAST_FAILURE = ["visplay.reasoner.max_retries=1", "visplay.reasoner.backoff_s=0.1", "visplay.reasoner.timeout_s=120"]


class RecordingReasoner:
    """The test server's chat model, recording each request's `n` and question, or refusing with 503."""

    def __init__(self, chat_model):
        self.chat_model = chat_model
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.refused = 0
        self.failing = False

    def __getattr__(self, name):  # models(), name, ...: the real chat model's
        return getattr(self.chat_model, name)

    def complete(self, request: dict) -> dict:
        with self.lock:
            if self.failing:
                self.refused += 1
                raise RequestError("reasoner unavailable (test)", status=503)
            self.requests.append({"n": request.get("n"), "messages": request.get("messages")})
        return self.chat_model.complete(request)


@pytest.fixture(scope="module")
def questioner_run(warmed_model, image_parquet, tmp_path_factory):
    root = tmp_path_factory.mktemp("questioner_stage")
    server = OpenAIChatServer(warmed_model)
    reasoner = RecordingReasoner(server.chat_model)
    server.chat_model = reasoner
    server.start()
    try:
        recipe = load_tiny_verl([f"questioner.steps={STEPS}", f"questioner.reasoner_endpoint={server.url}"])
        ctx = stage_context(
            recipe, root / "run", "1:questioner", images=image_parquet, init_model=warmed_model,
            reasoner_model=warmed_model,
        )  # fmt: skip
        (cmd,) = VerlBackend(echo=False).commands(ctx)
        cmd.argv += FAST_FAILURE
        seen = {}

        def fail_after_step_2(line, _proc):
            if f"step:{FAIL_FROM_STEP - 1} -" in line and not reasoner.failing:
                with reasoner.lock:
                    seen["requests_before_failure"] = len(reasoner.requests)
                    reasoner.failing = True

        result = run_stage(cmd, root / "questioner.log", on_line=fail_after_step_2)
    finally:
        server.stop()
    return {"result": result, "reasoner": reasoner, "recipe": recipe, "cmd": cmd, **seen}


@pytest.mark.slow
def test_stage_uses_the_external_reasoner_and_reserves_no_pool(questioner_run):
    argv, url = questioner_run["cmd"].argv, questioner_run["recipe"].questioner.reasoner_endpoint
    assert "reward.reward_model.enable=False" in argv and "reward.reward_model.enable_resource_pool=False" in argv
    assert f"visplay.reasoner.base_url={commands.hydra_value(url)}" in argv
    assert "trainer.v1.trainer_mode=visplay_sync" in argv


@pytest.mark.slow
def test_reasoner_is_asked_m_samples_per_parsed_question(questioner_run):
    steps, recipe = questioner_run["result"].step_metrics(), questioner_run["recipe"]
    assert sorted(steps) == [1, 2], questioner_run["result"].text[-3000:]
    batch = recipe.questioner.grpo.rollout_batch_size * recipe.questioner.grpo.n
    parsed = sum(round(steps[s]["visplay/valid_rate"] * batch) for s in (1, 2))
    assert parsed > 0  # the warmed questioner writes parsable questions
    requests = questioner_run["reasoner"].requests[: questioner_run["requests_before_failure"]]
    assert len(requests) == parsed  # one request per parsed question, none for unparsable ones
    assert all(r["n"] == recipe.questioner.m for r in requests)  # each asks for m samples
    assert all(steps[s]["visplay/reasoner/attempts_mean"] == 1.0 for s in (1, 2))
    # the question text reaches the reasoner with its image
    content = requests[0]["messages"][-1]["content"]
    assert any(part.get("type") == "image_url" for part in content)


@pytest.mark.slow
def test_repetition_penalty_rewrites_rm_scores_before_the_advantage(questioner_run):
    for m in questioner_run["result"].step_metrics().values():
        # rm_scores as GRPO read them == the hook's penalised rewards, below the same rewards without the penalty
        assert m["critic/score/mean"] == pytest.approx(m["visplay/reward/mean"], abs=1e-4)
        assert m["visplay/penalty/mean"] > 0
        assert m["visplay/reward/mean"] < m["visplay/reward/before_penalty_mean"]
    assert any(m["critic/advantages/max"] > 0 for m in questioner_run["result"].step_metrics().values())


@pytest.mark.slow
def test_failed_reasoner_calls_fail_the_step(questioner_run):
    result, reasoner = questioner_run["result"], questioner_run["reasoner"]
    assert reasoner.refused > 0
    assert result.returncode != 0
    assert STEPS not in result.step_metrics()
    assert "the frozen reasoner failed on" in result.text
