"""The runner's configuration: the variant picks the seed set and the eval templates, the budget scales the reasoner's
rollouts in the recipe, the GPU variant is a budget scan of the base, oracle and VisPlay arms; the scan's table shows
each budget's gains from the results."""

import dataclasses

import pytest

from verl_ext.world.experiment import (
    PERCEPTION_SET,
    SEED_SET,
    ExperimentConfig,
    load_world_recipe,
    warmup_config,
)
from verl_ext.world.scan import GPU_BUDGETS, gpu_config, render_scan, scan_rows
from verl_ext.world.seedset import PERCEPTION_TEMPLATES


@pytest.mark.parametrize("variant,examples", [("perception", PERCEPTION_SET), ("full", SEED_SET)])
def test_variant_sets_the_seed_set_and_the_eval_templates(variant, examples):
    cfg = ExperimentConfig(variant=variant)
    recipe = load_world_recipe(cfg, seed=2)
    assert recipe.model.warmup.examples == examples and recipe.seed == 2
    assert warmup_config(cfg, recipe).examples == examples
    assert cfg.eval_templates() == (PERCEPTION_TEMPLATES if variant == "perception" else None)
    with pytest.raises(ValueError):
        load_world_recipe(dataclasses.replace(cfg, variant="nope"), seed=1)


def test_budget_multiplies_the_reasoner_rollouts_only():
    plain = load_world_recipe(ExperimentConfig(), seed=1)
    big = load_world_recipe(ExperimentConfig(budget=32), seed=1)
    rollouts = [r.reasoner.steps * r.reasoner.grpo.rollout_batch_size for r in (plain, big)]
    assert rollouts[1] == 32 * rollouts[0]
    assert big.questioner == plain.questioner and big.pseudo_label == plain.pseudo_label
    four = load_world_recipe(ExperimentConfig(), seed=1, budget=4).reasoner
    assert four.steps * four.grpo.rollout_batch_size == 4 * rollouts[0]


def test_gpu_variant_is_a_budget_scan():
    cfg = gpu_config(ExperimentConfig())
    assert GPU_BUDGETS == (1, 8, 32)
    assert cfg.arms == ("base", "oracle", "visplay") and not cfg.gate and cfg.variant == "perception"


def test_scan_rows_show_each_budgets_gains(world_results):
    rows = scan_rows({1: world_results, 8: world_results, 32: {"claims": []}})
    assert {(r["budget"], r["arm"]) for r in rows} == {(b, a) for b in (1, 8) for a in ("frozen", "oracle", "visplay")}
    final = world_results["claims"][-1]["arms"]["oracle"]["endpoint_gain"]
    md = render_scan(rows)
    assert f"| 8x | 2 | oracle labels | {final['mean']:+.3f} [" in md


@pytest.mark.parametrize("arms", ["oracle,visplay", "base,nope"])
def test_cli_refuses_arms_without_the_base_or_unknown(arms, tmp_path, capsys):
    from verl_ext.world.__main__ import main

    assert main(["--out", str(tmp_path / "w"), "--arms", arms]) == 2
    assert "--arms" in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_pool_errors_name_their_cause():
    import pickle

    from verl_ext.evolve.integrity import CorruptOutputError
    from verl_ext.world.experiment import call_readable

    def broken():
        raise CorruptOutputError("2:reasoner_merge", "stage 2:reasoner_merge: a file changed")

    with pytest.raises(RuntimeError) as info:
        call_readable("seed 3", broken)
    # what a worker sends back must survive pickling with its message
    again = pickle.loads(pickle.dumps(info.value))
    assert "seed 3: CorruptOutputError" in str(again) and "a file changed" in str(again)


def test_gate_table_marks_each_budget_against_the_threshold():
    from verl_ext.world.gate import render_gate
    from verl_ext.world.stats import gate_choice

    def cell(budget, gain):
        margin = {"mean": gain / 2, "lo": -0.01, "hi": 0.05}
        return {"budget": budget, "reasoner": {"steps": 32, "batch": 8 * budget}, "train_rows": 200, "gain": gain,
                "gain_ci": [gain - 0.03, gain + 0.03], "margin_gain": margin}  # fmt: skip

    scan = [cell(1, 0.01), cell(2, 0.06), cell(4, 0.08)]
    gate = {"seed": 1, "threshold": 0.05, "budgets": [1, 2, 4], "scan": scan, "choice": gate_choice(scan)}
    md = render_gate(gate)
    assert "Gate passed: the main run uses budget 2x." in md
    assert "| 1x | 32 x 8 | 200 | +0.010 [-0.020, +0.040] | +0.005 [-0.010, +0.050] | no |" in md
    assert "| 2x | 32 x 16 | 200 | +0.060 [+0.030, +0.090] | +0.030 [-0.010, +0.050] | yes |" in md
    flat = {**gate, "scan": scan[:1], "choice": gate_choice(scan[:1])}
    assert "Gate NOT passed: the main run uses budget 1x." in render_gate(flat)
