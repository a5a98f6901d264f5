"""A finished two-iteration run directory (fake backend: instant, real filter stats) with what a real run adds:
reasoner votes in the pseudo-labels, training metrics (local-backend JSONL and a verl console log) and evaluation
results, for the report tests; and a controlled-world results dict summarized from made-up seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
VERL_LOG = """\
(TaskRunner pid=4242) step:1 - critic/score/mean:0.31 - actor/lr:1e-06 - timing_s/step:12.5
(TaskRunner pid=4242) step:2 - critic/score/mean:0.38 - actor/lr:1e-06 - visplay/confidence:0.55
some unrelated line
(TaskRunner pid=4242) step:3 - critic/score/mean:0.41 - actor/lr:1e-06 - visplay/confidence:0.52
"""


def eval_results(labels=("base", "iter_1", "iter_2"), rule=(30.0, 34.0, 37.5), judge=(32.0, 36.0, 39.0)) -> dict:
    """results.json as `python -m verl_ext.eval` writes it, for two benchmarks."""
    scores = {}
    for k, bench in enumerate(("mmstar", "mathvision")):
        scores[bench] = {
            lab: {
                "rule": {"score": r + k, "n": 50, "total": 50, "parsed": 49, "new": 0},
                "judge": {"score": j + k, "n": 49, "total": 50, "failed": 1, "new": 0, "errors": ["HTTP 503"]},
            }
            for lab, r, j in zip(labels, rule, judge, strict=True)
        }
    return {
        "checkpoints": [
            {"label": lab, "path": f"/m/{lab}", "iteration": i, "fingerprint": "f"} for i, lab in enumerate(labels)
        ],
        "base": labels[0],
        "benchmarks": ["mmstar", "mathvision"],
        "titles": {"mmstar": "MMStar", "mathvision": "MATH-Vision"},
        "generation": {"engine": "hf", "max_new_tokens": 64},
        "judge": {"model": "judge-1", "base_url": "http://127.0.0.1:1/v1", "temperature": 0.0},
        "scores": scores,
    }


def build_report_run(run_dir: Path, stop_after: str | None = None) -> Path:
    from verl_ext.evolve.fake_backend import FakeBackend
    from verl_ext.evolve.loop import run_evolution
    from verl_ext.evolve.recipe import load_recipe

    overrides = ["model.format_warmup=false", "images.max_images=6", "generation.num_questions=20", "iterations=2"]
    recipe = load_recipe(ROOT / "recipes/tiny.yaml", overrides=overrides, env={})
    run_evolution(recipe, run_dir, FakeBackend(), stop_after=stop_after, log=lambda _m: None)
    if stop_after:
        return run_dir
    # The real pseudo-labelling stage keeps the m extracted answers; the fake does not: add them for iteration 1.
    labels = run_dir / "iter_1/pseudo_label/labels.parquet"
    table = pq.read_table(labels)
    answers = [
        None if q is None else [y, y, "7", None] if y is not None else [None] * 4
        for q, y in zip(table.column("question").to_pylist(), table.column("pseudo_label").to_pylist(), strict=True)
    ]
    pq.write_table(table.append_column("answers", pa.array(answers, pa.list_(pa.string()))), labels)
    # Training logs: the local backend's metrics.jsonl (reasoner, t=1) and verl's console log (questioner, t=2).
    rows = [{"step": s, "reward": 0.2 + 0.1 * s, "visplay/accuracy": 0.1 * s, "visplay/format": 1.0} for s in (1, 2)]
    rows.append({"step": 2, "train_runtime": 1.0})
    (run_dir / "iter_1/reasoner/metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = run_dir / "logs/iter_2/questioner.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(VERL_LOG)
    (run_dir / "eval").mkdir(exist_ok=True)
    (run_dir / "eval/results.json").write_text(json.dumps(eval_results()))
    return run_dir


@pytest.fixture(scope="session")
def report_run(tmp_path_factory):
    return build_report_run(tmp_path_factory.mktemp("report_run") / "run")


@pytest.fixture
def build_run():
    """`build_report_run(run_dir, stop_after=None)`, for tests that need a run of their own."""
    return build_report_run


@pytest.fixture(scope="session")
def world_results(world_seed):
    """`verl_ext.world.report.summarize` of two made-up seeds, T = 2, as results.json holds it."""
    from verl_ext.world.experiment import ExperimentConfig
    from verl_ext.world.report import summarize

    per_seed = [world_seed(1, 0.01), world_seed(2, 0.03)]
    return summarize(ExperimentConfig(seeds=2, iterations=2), per_seed, wall_seconds=42.0, base_seconds=7.0)
