"""A training file with fewer rows than the rollout batch: the stage shrinks its batch (warned) or stops with the
counts; it never reaches verl's `len(dataset) // train_batch_size` = 0 (a ZeroDivisionError, or no training)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.evolve.backend import StageContext
from verl_ext.evolve.batching import TrainSetTooSmallError, fit_batch
from verl_ext.evolve.recipe import GRPOConfig, load_recipe
from verl_ext.evolve.stages import build_plan
from verl_ext.evolve.verl_backend import VerlBackend

ROOT = Path(__file__).resolve().parents[2]


def _verl_steps_per_epoch(rows: int, train_batch_size: int) -> int:
    return rows // train_batch_size  # verl 0.9.1 trainer_base: then `global_steps // steps_per_epoch`


@pytest.mark.parametrize("rows", [1, 7, 100, 127, 128, 300, 511])
def test_shrunk_batch_gives_verl_at_least_one_step(rows):
    g = GRPOConfig(n=8, rollout_batch_size=512, global_batch_size=128)
    fit = fit_batch("reasoner", rows, g, data_parallel_size=8)
    assert fit.shrunk and fit.message
    assert _verl_steps_per_epoch(rows, fit.rollout_batch_size) >= 1
    assert fit.rollout_batch_size % fit.global_batch_size == 0
    assert (fit.global_batch_size * g.n) % 8 == 0  # verl asserts mini_batch_size % dp_size == 0
    assert "512" in fit.message and str(rows) in fit.message and "filter.low" in fit.message
    if rows >= 128:
        assert fit.global_batch_size == 128 and fit.rollout_batch_size == rows // 128 * 128


def test_enough_rows_keep_the_recipe_sizes():
    g = GRPOConfig(rollout_batch_size=512, global_batch_size=128)
    fit = fit_batch("reasoner", 5000, g, 8)
    assert (fit.rollout_batch_size, fit.global_batch_size, fit.shrunk, fit.message) == (512, 128, False, None)


def test_nothing_kept_or_shrink_off_stops_with_the_counts_and_keys():
    with pytest.raises(TrainSetTooSmallError, match=r"0 training rows.*filter\.low"):
        fit_batch("reasoner", 0, GRPOConfig(), 8)
    with pytest.raises(TrainSetTooSmallError, match=r"300 training rows < reasoner.grpo.rollout_batch_size \(512\)"):
        fit_batch("reasoner", 300, GRPOConfig(shrink_to_fit=False), 8)
    with pytest.raises(TrainSetTooSmallError, match=r"images\.path"):
        fit_batch("questioner", 0, GRPOConfig(), 4)
    # 3 prompts x n=1 rollouts cannot split over 8 GPUs
    with pytest.raises(TrainSetTooSmallError, match="splits over 8 actor GPUs"):
        fit_batch("reasoner", 3, GRPOConfig(n=2, rollout_batch_size=512, global_batch_size=128), 8)


def _ctx(tmp_path, stage: str, rows: int, *overrides):
    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-vl-7b.yaml", overrides=list(overrides), env={})
    spec = next(s for s in build_plan(recipe, tmp_path / "run") if s.key == f"1:{stage}")
    path = Path(spec.inputs["images" if stage == "questioner" else "train"])
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": [str(i) for i in range(rows)]}), path)
    logged = []
    return StageContext(recipe=recipe, spec=spec, run_dir=tmp_path / "run", log=logged.append), logged


def _value(argv: list[str], key: str) -> str:
    return next(a.split("=", 1)[1] for a in argv if a.startswith(key + "="))


def test_verl_reasoner_command_uses_the_shrunk_batch(tmp_path):
    ctx, logged = _ctx(tmp_path, "reasoner", 300)
    (cmd,) = VerlBackend(python="python").commands(ctx)
    assert _value(cmd.argv, "data.train_batch_size") == "256"
    assert _value(cmd.argv, "actor_rollout_ref.actor.ppo_mini_batch_size") == "128"
    assert any("WARNING 1:reasoner" in line and "300 training rows" in line for line in logged)
    # planning (dry run) shows the recipe's sizes: the file may not exist yet
    (plan_cmd,) = VerlBackend(python="python").commands(ctx, planning=True)
    assert _value(plan_cmd.argv, "data.train_batch_size") == "512"


def test_verl_questioner_small_image_set_shrinks_and_shrink_off_stops(tmp_path):
    ctx, _ = _ctx(tmp_path / "a", "questioner", 100)
    (cmd,) = VerlBackend(python="python").commands(ctx)
    assert int(_value(cmd.argv, "data.train_batch_size")) <= 100
    ctx, _ = _ctx(tmp_path / "b", "questioner", 100, "questioner.grpo.shrink_to_fit=false")
    with pytest.raises(TrainSetTooSmallError, match="questioner.grpo.shrink_to_fit is false"):
        VerlBackend(python="python").commands(ctx)
