"""A one-iteration smoke of the controlled-world experiment: the real loop (local backend, world recipe), control (b)
on oracle labels, the evaluations and the report, at a toy size; then a re-run that resumes from disk."""

import json

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # ~60 s on 2 busy cores

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
        eval_size=18,
        eval_split="dev",
        eval_samples=2,
        cache_dir=str(tmp_path_factory.mktemp("world_cache")),
    )
    logs: list[str] = []
    results = run_experiment(cfg, out, log=logs.append)
    return cfg, out, results, logs


def test_smoke_runs_every_arm_and_writes_the_report(smoke):
    _cfg, out, results, logs = smoke
    # control (a) is evaluated once, before any seed starts, and every seed reads it from out/eval/base.json
    base_evals = [i for i, line in enumerate(logs) if line.startswith("[world] eval base")]
    first_stage = min(i for i, line in enumerate(logs) if line.startswith("[evolve]"))
    assert len(base_evals) == 1 and base_evals[0] < first_stage
    run_dir = out / "seed_1" / "visplay"
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert all(rec["state"] == "done" for rec in stages.values())
    assert pq.read_table(run_dir / "iter_0" / "images" / "images.parquet").column_names == ["id", "source", "image"]

    assert "0:warmup" not in stages  # the loop starts from the shared base model, warmed up once outside it
    base = results["per_seed"][0]["seed_set"]["base_model"]
    assert stages["1:questioner"]["inputs"]["init_model"] == base

    summary = results["summary"]
    assert [rec["t"] for rec in summary] == [0, 1]
    for arm in ("visplay", "oracle", "base"):
        for t in (0, 1):
            for kind in ("greedy", "sampled", "greedy_swapped"):
                acc = summary[t][f"accuracy.{arm}.{kind}"]["mean"]
                assert acc is not None and 0.0 <= acc <= 1.0
    assert 0.0 <= summary[0]["prior_accuracy"]["mean"] <= 1.0
    assert summary[0]["accuracy.visplay.greedy"] == summary[0]["accuracy.oracle.greedy"]  # both start at the base
    it1 = results["per_seed"][0]["iterations"][1]
    loop = it1["loop"]
    assert loop["questions"]["generated"] == 8
    assert sum(loop["questions"]["oracle_status"].values()) == loop["questions"]["parsed"]
    assert loop["labels"]["kept"] == loop["stats"]["kept"]
    control = it1["control"]
    assert control["data"]["kept"] == loop["stats"]["kept"]
    assert control["data"]["rows"] == loop["labels"]["kept_oracle_ok"]
    # the control's training set: the kept questions the oracle can answer, labelled by the oracle
    train = pq.read_table(out / "seed_1" / "oracle_control" / "iter_1" / "train.parquet").to_pydict()
    assert len(train["pseudo_label"]) == control["data"]["rows"]
    assert (out / "seed_1" / "oracle_control" / "iter_1" / "reasoner" / "final" / "config.json").is_file()

    seed_set = results["seed_set"]
    assert seed_set["images"] == 6 and seed_set["examples"]["reasoner"] > 0 and seed_set["warmup_steps"] == 12
    md = (out / "results.md").read_text()
    assert "## Reasoner accuracy on the held-out eval set" in md and "| 1 |" in md
    assert (out / "coevolution.png").stat().st_size > 1000
    html = (out / "report.html").read_text()  # the world section on top of seed 1's run report
    assert html.index('<section id="world">') < html.index('id="stage-table"') and str(run_dir) in html


def test_smoke_rerun_resumes_from_disk(smoke):
    from verl_ext.world.experiment import run_experiment

    cfg, out, results, _ = smoke
    logs: list[str] = []
    again = run_experiment(cfg, out, log=logs.append)
    assert again["summary"] == results["summary"]
    assert not any(line.startswith("[world] eval") for line in logs)  # every evaluation came from its cache
    assert not any(": start" in line for line in logs if line.startswith("[evolve]"))  # no stage re-ran
