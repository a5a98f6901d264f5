"""Real recipes survive a rare bad frozen-reasoner request (scored 0, counted in the step's metrics) and checkpoint
every few steps, keeping a bounded number of checkpoints; one failure more than the allowance still fails the step."""

from pathlib import Path

import pytest

from verl_ext.evolve import commands
from verl_ext.evolve.recipe import load_recipe
from verl_ext.evolve.stages import build_plan
from verl_ext.plugins.trainer import PenaltySettings, compute_questioner_rewards

ROOT = Path(__file__).resolve().parents[2]


def _overrides(tmp_path, stage):
    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-vl-7b.yaml", env={})
    spec = next(s for s in build_plan(recipe, tmp_path) if s.key == f"1:{stage}")
    build = commands.questioner_overrides if stage == "questioner" else commands.reasoner_overrides
    return recipe, dict(build(recipe, spec, resolve=lambda p: p))


@pytest.mark.parametrize("stage", ["questioner", "reasoner"])
def test_real_recipes_checkpoint_periodically_and_keep_few(tmp_path, stage):
    recipe, ov = _overrides(tmp_path, stage)
    steps = getattr(recipe, stage).steps
    assert 1 <= ov["trainer.save_freq"] < steps  # a crash loses at most save_freq steps, not the whole stage
    assert ov["trainer.max_actor_ckpt_to_keep"] == commands.KEEP_CHECKPOINTS


def _info(failed: bool, i: int) -> dict:
    return {
        "vp_valid": 1.0,
        "vp_question": f"question {i} about the picture",
        "vp_confidence": 0.5,
        "vp_type": "numerical",
        "vp_reasoner_failed": float(failed),
        "vp_reasoner_error": "HTTP 500 from the router" if failed else "",
    }


def test_one_bad_request_in_a_step_is_scored_zero_and_counted(tmp_path):
    _, ov = _overrides(tmp_path, "questioner")
    allowed = ov["visplay.reasoner.max_failed_fraction"]
    assert allowed > 0
    settings = PenaltySettings(mode="reference", max_failed_fraction=allowed)
    infos = [_info(i == 3, i) for i in range(200)]
    out = compute_questioner_rewards(infos, settings)
    assert out.rewards[3] == 0.0 and out.metrics["visplay/reasoner/failed"] == 1.0
    # beyond the allowance the step fails with the cause
    many = [_info(i < 200 * allowed + 1, i) for i in range(200)]
    with pytest.raises(RuntimeError, match="HTTP 500"):
        compute_questioner_rewards(many, settings)
