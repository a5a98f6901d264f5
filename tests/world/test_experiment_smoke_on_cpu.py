"""A one-iteration smoke of the controlled-world experiment at a toy size: the base, the gate on the dev split, the
real loop (local backend, world recipe), the oracle-label and frozen-questioner arms, S_0 scoring, the evaluations and
the report; then a re-run that resumes from disk."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # a few minutes on 2 busy cores

SMOKE = (
    "images.max_images=4",
    "generation.num_questions=8",
    "questioner.steps=1",
    "questioner.m=2",
    "questioner.grpo.n=2",
    "questioner.grpo.rollout_batch_size=2",
    "questioner.grpo.global_batch_size=2",
    "pseudo_label.m=2",
    "filter.low=0.0",  # keep every labelled question: the control must have data
    "filter.high=1.0",
    "reasoner.steps=1",
    "reasoner.grpo.n=2",
    "reasoner.grpo.rollout_batch_size=2",
    "reasoner.grpo.global_batch_size=2",
    "stats.diversity_sample=8",
)


@pytest.fixture(scope="module")
def smoke(tiny_vlm_path, tmp_path_factory):
    from verl_ext.world.experiment import ExperimentConfig, run_experiment

    out = tmp_path_factory.mktemp("world_smoke")
    cfg = ExperimentConfig(
        overrides=(f"model.base={tiny_vlm_path}", "model.warmup.num_images=6", "model.warmup.steps=12", *SMOKE),
        seeds=1,
        iterations=1,
        per_template=2,
        eval_split="dev",
        s0_questions=4,
        gate_budgets=(1, 2),
        jobs=1,
        cache_dir=str(tmp_path_factory.mktemp("world_cache")),
    )
    logs: list[str] = []
    results = run_experiment(cfg, out, log=logs.append)
    return cfg, out, results, logs


def test_smoke_runs_every_arm_and_writes_the_report(smoke):
    cfg, out, results, logs = smoke
    # the base arm is evaluated once, before any seed starts, and every seed reads it from out/eval/base.json
    base_evals = [i for i, line in enumerate(logs) if line.startswith("[world] eval base:")]
    first_seed = min(i for i, line in enumerate(logs) if line.startswith("[world] seed 1:"))
    gate_done = max(i for i, line in enumerate(logs) if line.startswith("[world] gate:"))
    assert len(base_evals) == 1 and gate_done < base_evals[0] < first_seed
    run_dir = out / "seed_1" / "visplay"
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert all(rec["state"] == "done" for rec in stages.values())
    assert "0:warmup" not in stages  # the loop starts from the shared base model, warmed up once outside it
    base = results["per_seed"][0]["seed_set"]["base_model"]  # results.json names machine paths by placeholders
    assert base.startswith("<cache>/") and "/tmp" not in json.dumps(results["claims"])
    cache = str(Path(cfg.cache_dir).resolve())
    assert stages["1:questioner"]["inputs"]["init_model"] == base.replace("<cache>", cache)

    # the gate ran first, on the dev split, and chose the budget of the main run
    gate = results["gate"]
    assert [c["budget"] for c in gate["scan"]] == [1, 2] and gate["split"] == "dev"
    assert results["config"]["budget"] == gate["choice"]["budget"]
    assert [c["reasoner"]["steps"] * c["reasoner"]["batch"] for c in gate["scan"]] == [2, 4]  # 1x, 2x rollouts

    summary = results["summary"]
    assert [rec["t"] for rec in summary] == [0, 1]
    for arm in ("base", "oracle", "visplay", "frozen"):
        for t in (0, 1):
            for kind in ("greedy", "greedy_swapped"):
                acc = summary[t][f"accuracy.{arm}.{kind}"]["mean"]
                assert acc is not None and 0.0 <= acc <= 1.0
    it1 = results["per_seed"][0]["iterations"][1]
    n_items = len(results["per_seed"][0]["eval_templates"])
    assert n_items == 2 * 10  # the perception variant's 10 templates, 2 balanced items each
    assert all(len(it1["items"][arm]["greedy"]) == n_items for arm in ("base", "oracle", "visplay", "frozen"))
    claims = {c["t"]: c for c in results["claims"]}
    assert set(claims[1]["arms"]) == {"base", "oracle", "visplay", "frozen"}
    assert set(claims[1]["recovery"]) == {"visplay", "frozen"}

    loop = it1["loop"]["visplay"]
    assert loop["questions"]["generated"] == 8
    assert loop["labels"]["kept"] == loop["stats"]["kept"]
    control = it1["control"]
    assert control["data"]["kept"] == loop["stats"]["kept"]
    assert control["data"]["rows"] == loop["labels"]["kept_oracle_ok"]
    train = pq.read_table(out / "seed_1" / "oracle_control" / "iter_1" / "train.parquet").to_pydict()
    assert len(train["pseudo_label"]) == control["data"]["rows"]
    # the frozen-questioner arm: Q0 (the base) wrote its questions, its own S_0 labelled them
    frozen = out / "seed_1" / "frozen_questioner" / "iter_1"
    assert (frozen / "reasoner" / "final" / "config.json").is_file()
    assert it1["loop"]["frozen"]["questions"]["generated"] == 8
    # S_0 scored 4 of Q_1's questions for both question sources
    assert it1["s0"]["visplay"]["questions"] == 4 and it1["s0"]["frozen"]["questions"] == 4

    md = (out / "results.md").read_text()
    assert "## Primary endpoint" in md and "## Findings (computed from results.json)" in md and "Gate " in md
    assert (out / "coevolution.png").stat().st_size > 1000
    html = (out / "report.html").read_text()  # the world section on top of seed 1's run report
    assert html.index('<section id="world">') < html.index('id="stage-table"') and str(run_dir) in html


def test_smoke_rerun_resumes_from_disk(smoke):
    from verl_ext.world.experiment import run_experiment

    cfg, out, results, _ = smoke
    logs: list[str] = []
    again = run_experiment(cfg, out, log=logs.append)
    assert again["summary"] == results["summary"] and again["claims"] == results["claims"]
    assert not any(line.startswith("[world] eval") for line in logs)  # every evaluation came from its cache
    assert not any(": start" in line for line in logs if line.startswith("[evolve]"))  # no stage re-ran
    assert any(line.startswith("[world] gate: from") for line in logs)
