"""Session fixtures shared by every test: the tiny offline VLM, synthetic images, a local OpenAI-style endpoint, and
a finished run directory with what a real run adds (reasoner votes, training metrics, evaluation results) plus a
controlled-world results dict, for the report and world tests.

All are built lazily (only when a test asks) and offline; imports stay inside the fixtures so that collecting tests
that need none of them costs nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# A test running longer than 10 s says so every 10 s (VISPLAY_TEST_HEARTBEAT), so `make test` is never silent.
from verl_ext.testing.pytest_heartbeat import pytest_runtest_protocol  # noqa: F401

# Tests never reach the hub: fail fast instead of waiting on a network that is not there.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from intra-op threads, and on a small shared machine OpenMP's spinning threads stall
# whenever another process holds a core (10x slower generate under load). Export OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_vlm_path(tmp_path_factory):
    """Path of a tiny random Qwen2.5-VL model directory (HF format, float32, ~1M parameters), built once per session.

    Load it with AutoProcessor / AutoTokenizer / Qwen2_5_VLForConditionalGeneration / verl.utils.hf_processor; pass
    `str(tiny_vlm_path)` where a string is expected. A 64x64 image gives 4 image tokens (at most 16 per image).
    """
    from verl_ext.tiny.tiny_vlm import tiny_vlm_path as build_cached

    return build_cached(cache_dir=tmp_path_factory.mktemp("visplay_cache"))


@pytest.fixture(scope="session")
def synthetic_images():
    """Eight (PIL.Image 64x64 RGB, scene dict) pairs: counts of shapes, mixed shapes, bar charts (seed 0)."""
    from verl_ext.tiny.images import make_images

    return make_images(8, seed=0)


@pytest.fixture(scope="session")
def image_parquet(tmp_path_factory):
    """Path of an image-only parquet (columns id, source, image = PNG bytes), 8 synthetic 64x64 images (seed 0)."""
    from verl_ext.tiny.images import write_image_parquet

    return write_image_parquet(tmp_path_factory.mktemp("images") / "images.parquet", n=8, seed=0)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Folder of 8 synthetic PNGs named `<id>.png` plus `scenes.jsonl` (seed 0, same images as `image_parquet`)."""
    from verl_ext.tiny.images import write_image_folder

    folder = tmp_path_factory.mktemp("image_folder")
    write_image_folder(folder, n=8, seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_vlm_server(tiny_vlm_path):
    """Base URL (`http://127.0.0.1:<port>/v1`) of an OpenAI-compatible chat server running the tiny VLM for the
    session: POST {base}/chat/completions with text and data-URL images, n, temperature, top_p, top_k, max_tokens,
    seed; GET {base}/models."""
    from verl_ext.inference.openai_server import serve_model

    with serve_model(tiny_vlm_path) as url:
        yield url


@pytest.fixture(scope="session")
def world_seed():
    """`world_seed(seed, gain, iterations=2, oracle=True)`: one seed's results as the controlled-world experiment's
    `run_seed` returns them, made up (no models): greedy accuracy rises by `gain` per iteration for VisPlay and the
    frozen-questioner arm and by twice that for the oracle arm (absent with oracle=False); the base stays at 0.3. The
    eval set: 20 endpoint items (counts) and 4 yes/no items; per item, VisPlay gets round(100 * gain * t) more of the
    endpoint items right than the base (6), and the oracle arm twice that."""
    templates = ["count_all"] * 20 + ["exists"] * 4

    def items(right: int) -> dict:
        right = min(20, right)
        return {"greedy": "1" * right + "0" * (20 - right) + "1010", "greedy_swapped": "1" * 4 + "0" * 16 + "0110"}

    def build(seed: int, gain: float, iterations: int = 2, oracle: bool = True) -> dict:
        fam = {"count": {"n": 3, "greedy": 0.3}}

        def acc(v):
            return {"greedy": v, "sampled": v - 0.1, "majority": v + 0.02, "greedy_swapped": v - 0.05,
                    "boxed_rate": 1.0, "by_family": fam}  # fmt: skip

        arms = ("base", "oracle", "visplay", "frozen")
        its = [{"t": 0, "accuracy": {a: acc(0.3) for a in arms}, "items": {a: items(6) for a in arms}}]
        for t in range(1, iterations + 1):
            accuracy = {"visplay": acc(0.3 + gain * t), "frozen": acc(0.3 + gain * t / 2), "base": acc(0.3)}
            step = round(100 * gain * t)
            per_item = {"visplay": items(6 + step), "frozen": items(6 + step // 2), "base": items(6)}
            loop = {
                "stats": {"difficulty": 0.4 + 0.05 * t + gain, "question_parse_rate": 0.9, "diversity": 0.5,
                          "kept": 100 - 10 * t},
                "labels": {"precision_kept": 0.5 - gain, "precision_all": 0.5, "kept_oracle_ok": 50,
                           "precision_by_confidence": {"0.5": {"n": 10, "precision": 0.5, "in_band": True}}},
                "questions": {"oracle_parsable_share": 0.7 + gain, "template_entropy": 0.8,
                              "questioner_answer_accuracy": 0.4},
            }  # fmt: skip
            rec = {
                "t": t,
                "accuracy": {**accuracy, "oracle": acc(0.3 + 2 * gain * t)} if oracle else accuracy,
                "items": {**per_item, "oracle": items(6 + 2 * step)} if oracle else per_item,
                "loop": {"visplay": loop, "frozen": loop},
                "s0": {"visplay": {"difficulty": 0.45 + gain * t}, "frozen": {"difficulty": 0.45 + gain / 2}},
            }
            if oracle:
                rec["control"] = {"rows": 50, "data": {"rows": 50}}
            its.append(rec)
        for rec in its:
            rec["prior_accuracy"] = 0.35
        return {
            "seed": seed,
            "seed_set": {"images": 8, "questions_per_image": 4, "examples": {"reasoner": 32}, "warmup_steps": 5},
            "eval": {"split": "dev", "per_template": 4, "templates": [], "samples": 2, "temperature": 1.0},
            "eval_templates": templates,
            "iterations": its,
            "seconds": {"visplay": 10.0 + seed, "oracle": 2.0, "frozen": 4.0, "eval": 3.0, "total": 19.0 + seed},
        }

    return build


# --------------------------------------------------------------------------------------------------
# A finished run for the report and world tests (fake backend: instant, real filter stats)
# --------------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
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
    """`verl_ext.world.results.summarize` of two made-up seeds, T = 2, as results.json holds it."""
    from verl_ext.world.experiment import ExperimentConfig
    from verl_ext.world.results import summarize

    per_seed = [world_seed(1, 0.01), world_seed(2, 0.03)]
    return summarize(ExperimentConfig(seeds=2, iterations=2), per_seed, wall_seconds=42.0, base_seconds=7.0)
