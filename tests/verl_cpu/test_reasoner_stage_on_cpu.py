"""The reasoner stage through verl's real V1 trainer on the CPU, preempted after step 1 and resumed.

Two GRPO steps of the format-warmed tiny Qwen2.5-VL on a pseudo-label parquet in the loop's schema, with the
project's dataset (ReasonerDataset), reward function (reasoner_compute_score) and format weight, run as the exact
command the verl backend composes for recipes/tiny-verl.yaml. The first process is killed (process group, SIGKILL)
once step 1 is checkpointed; the same command then resumes (trainer.resume_mode=auto) and runs step 2 only.
Then verl's model merger turns the checkpoint into the Hugging Face directory the loop's next stage loads.
"""

from __future__ import annotations

import pytest
import torch

from verl_ext.evolve import commands
from verl_ext.evolve.verl_backend import VerlBackend

from .conftest import kill_group, load_tiny_verl, run_stage, stage_context, write_pseudo_labels

FORMAT_WEIGHT = 0.1


@pytest.fixture(scope="module")
def reasoner_runs(warmed_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("reasoner_stage")
    labels = write_pseudo_labels(root / "labels.parquet")
    # save every step, so that the preempted first run leaves a step-1 checkpoint to resume from
    recipe = load_tiny_verl(["reasoner.checkpoint_every=1", f"reasoner.format_weight={FORMAT_WEIGHT}"])
    ctx = stage_context(recipe, root / "run", "1:reasoner", train=labels, init_model=warmed_model)
    backend = VerlBackend(echo=False)
    (cmd,) = backend.commands(ctx)

    def preempt_after_step_1(line, proc):
        if "step:1 -" in line:  # printed after global_step_1 is saved
            kill_group(proc)

    first = run_stage(cmd, root / "first.log", on_line=preempt_after_step_1)
    step_after_kill = commands.latest_step(ctx.spec.work_dir)
    second = run_stage(cmd, root / "second.log")
    return {"ctx": ctx, "cmd": cmd, "first": first, "second": second, "step_after_kill": step_after_kill,
            "backend": backend, "root": root, "warmed": warmed_model}  # fmt: skip


@pytest.mark.slow
def test_stage_command_is_the_gpu_command_plus_the_device_block(reasoner_runs):
    cmd, recipe = reasoner_runs["cmd"], reasoner_runs["ctx"].recipe
    gpu = commands.train_command("reasoner", commands.reasoner_overrides(recipe, reasoner_runs["ctx"].spec))
    assert cmd.argv[: len(gpu.argv)] == gpu.argv
    assert cmd.argv[len(gpu.argv) :] == list(recipe.device.overrides)
    assert cmd.env == commands.device_env(recipe.device) and cmd.env["VISPLAY_VERL_CPU"] == "1"
    assert f"reward.custom_reward_function.reward_kwargs.format_weight={FORMAT_WEIGHT}" in cmd.argv


@pytest.mark.slow
def test_preempted_run_resumes_from_its_checkpoint(reasoner_runs):
    first, second = reasoner_runs["first"], reasoner_runs["second"]
    assert first.returncode != 0, "the first run should have been killed after step 1"
    assert sorted(first.step_metrics()) == [1]
    assert reasoner_runs["step_after_kill"] == 1
    assert second.returncode == 0, second.text[-3000:]
    assert sorted(second.step_metrics()) == [2]  # step 1 was not redone
    resumed = [line for line in second.lines if "Resuming from" in line]
    assert resumed and "global_step_1" in resumed[0]  # verl loaded that checkpoint (resume_mode=auto)
    assert commands.latest_step(reasoner_runs["ctx"].spec.work_dir) == 2


@pytest.mark.slow
def test_project_reward_reaches_verls_advantage(reasoner_runs):
    steps = {**reasoner_runs["first"].step_metrics(), **reasoner_runs["second"].step_metrics()}
    for step in (1, 2):
        m = steps[step]
        # reasoner_compute_score's sub-scores, logged by the visplay_sync trainer
        assert m["visplay/reward_extra/format/mean"] > 0  # the warmed model boxes its answers
        expected = (1 - FORMAT_WEIGHT) * m["visplay/reward_extra/accuracy/mean"] + FORMAT_WEIGHT * m[
            "visplay/reward_extra/format/mean"
        ]
        assert m["critic/score/mean"] == pytest.approx(expected, abs=1e-4)  # the project's reward is verl's score
        assert m["critic/rewards/mean"] == pytest.approx(m["critic/score/mean"], abs=1e-4)  # no KL in reward
    # GRPO: a group whose rewards differ gets non-zero advantages, and the optimizer receives a gradient
    assert any(steps[s]["critic/advantages/max"] > 0 for s in (1, 2))
    assert any(steps[s]["actor/grad_norm"] > 0 for s in (1, 2))
    # the HF rollout (fp32) samples what the FSDP actor (bf16) scores: verl's rollout-vs-actor probability gap stays
    # at precision level on average (a stale or missing weight sync would show here first)
    assert all(steps[s]["training/rollout_probs_diff_mean"] < 0.1 for s in (1, 2))


@pytest.mark.slow
def test_checkpoint_merges_into_a_model_the_next_stage_loads(reasoner_runs, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    ctx, backend = reasoner_runs["ctx"], reasoner_runs["backend"]
    merge_ctx = stage_context(ctx.recipe, ctx.run_dir, "1:reasoner_merge", checkpoint=ctx.spec.work_dir)
    (merge,) = backend.commands(merge_ctx)
    assert merge.argv[2] == "verl.model_merger"
    result = run_stage(merge, reasoner_runs["root"] / "merge.log")
    assert result.returncode == 0, result.text[-3000:]
    merged = merge_ctx.spec.work_dir
    AutoModelForImageTextToText.from_pretrained(str(merged), torch_dtype=torch.float32)
    AutoProcessor.from_pretrained(str(merged))
    # the optimizer changed the weights: compare with the model the stage started from, in the merged dtype
    before, after = _tensors(reasoner_runs["warmed"]), _tensors(merged)
    common = [k for k in before if k in after]
    assert len(common) > 0.9 * len(before)
    changed = [k for k in common if not torch.equal(before[k].to(after[k].dtype), after[k])]
    assert len(changed) > len(common) // 2, f"only {len(changed)} of {len(common)} tensors changed"


def _tensors(model_dir):
    from safetensors.torch import load_file

    tensors = {}
    for shard in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
    return tensors
