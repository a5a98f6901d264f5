"""The local backend end to end on the warmed tiny VLM: every stage of one iteration, real TRL GRPO in both roles,
loadable merged models, the record schemas; and a GRPO stage resumed from its TRL checkpoint."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from verl_ext.visplay.records import PSEUDO_LABEL_COLUMNS, QUESTION_COLUMNS

pytestmark = pytest.mark.slow  # ~40 s on 2 busy cores, plus the session's warm-up

TINY_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"
SUB_SCORES = {  # logged by the reward functions at every step
    "questioner": ("visplay/parse_rate", "visplay/confidence", "visplay/penalty", "visplay/uncertainty"),
    "reasoner": ("visplay/accuracy", "visplay/format"),
}


def _weights(model_dir) -> dict:
    from safetensors.torch import load_file

    out = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        out.update(load_file(path))
    return out


def _max_change(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def tiny_run(tiny_vlm_path, warmed, warm_cache, tmp_path_factory):
    from verl_ext.evolve import load_recipe, run_evolution
    from verl_ext.evolve.local_backend import LocalBackend

    overrides = [f"model.base={tiny_vlm_path}", "iterations=1", "images.max_images=8", "generation.num_questions=12"]
    recipe = load_recipe(TINY_RECIPE, overrides=overrides)
    run_dir = tmp_path_factory.mktemp("tiny_run")
    logs: list[str] = []
    manifest = run_evolution(recipe, run_dir, LocalBackend(cache_dir=warm_cache), log=logs.append)
    return run_dir, manifest, logs


def test_every_stage_runs_and_writes_its_artifacts(tiny_run, warmed):
    run_dir, manifest, logs = tiny_run
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert all(rec["state"] == "done" for rec in stages.values()), {k: v["state"] for k, v in stages.items()}
    assert "[warmup] cached" in "\n".join(logs)  # the session's warm-up was reused, not rebuilt

    warm = _weights(warmed[0])
    assert _max_change(_weights(run_dir / "iter_0/warmup"), warm) == 0.0

    questions = pq.read_table(run_dir / "iter_1/generate/questions.parquet")
    assert questions.column_names[: len(QUESTION_COLUMNS)] == list(QUESTION_COLUMNS)
    assert questions.num_rows == 12
    parsed = [q for q in questions.column("question").to_pylist() if q]
    assert len(parsed) >= 6  # the warmed questioner writes parsable questions
    labels = pq.read_table(run_dir / "iter_1/pseudo_label/labels.parquet")
    assert labels.column_names[: len(PSEUDO_LABEL_COLUMNS)] == list(PSEUDO_LABEL_COLUMNS)
    assert set(labels.column("reasoner_checkpoint").to_pylist()) == {str(run_dir / "iter_0/warmup")}
    kept = pq.read_table(run_dir / "iter_1/filter/train.parquet").num_rows
    assert kept >= 1  # a non-empty band
    assert stages["1:reasoner"]["summary"]["rows"] == kept


@pytest.mark.parametrize("role", ["questioner", "reasoner"])
def test_grpo_changes_the_weights_and_merges_to_a_loadable_model(tiny_run, warmed, role):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    run_dir, _, _ = tiny_run
    ckpt = run_dir / f"iter_1/{role}"
    # An Adam step moves every parameter with a gradient by ~lr (1e-5); weight decay alone moves them by ~1e-9.
    assert _max_change(_weights(ckpt / "final"), _weights(warmed[0])) > 1e-6
    metrics = [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "reward" in m]
    assert len(steps) == 2 and any(m["reward_std"] > 0 for m in steps)
    assert all(key in steps[0] for key in SUB_SCORES[role])

    merged = run_dir / f"iter_1/{role}_merge"
    processor = AutoProcessor.from_pretrained(merged)
    model = AutoModelForImageTextToText.from_pretrained(merged)
    assert _max_change(_weights(merged), _weights(ckpt / "final")) == 0.0
    assert (
        json.loads((merged / "generation_config.json").read_text())["eos_token_id"]
        == json.loads((warmed[0] / "generation_config.json").read_text())["eos_token_id"]
    )
    ids = processor.tokenizer("hello", return_tensors="pt").input_ids
    with torch.no_grad():
        assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] > ids.shape[1]


def test_grpo_resumes_from_its_last_checkpoint(warmed, synthetic_images, tmp_path):
    import random

    from verl_ext.evolve.recipe import GRPOConfig
    from verl_ext.local.grpo import make_dataset, run_grpo
    from verl_ext.local.models import load_processor
    from verl_ext.local.rewards import ReasonerReward
    from verl_ext.local.warmup import scene_questions
    from verl_ext.prompts import render_reasoner_prompt
    from verl_ext.tiny.images import png_bytes

    path, _ = warmed
    rng = random.Random(0)
    items = [(image, scene_questions(scene, rng)[0]) for image, scene in synthetic_images[:4]]
    rows = {
        "prompt": [[{"role": "user", "content": render_reasoner_prompt(it["question"])}] for _, it in items],
        "image": [png_bytes(image) for image, _ in items],
        "pseudo_label": [it["answer"] for _, it in items],
    }
    grpo = GRPOConfig(n=4, lr=1e-5, rollout_batch_size=2, global_batch_size=2, max_token_len_per_gpu=1024,
                      max_prompt_length=512, max_response_length=32)  # fmt: skip

    def train(out_dir):
        return run_grpo(
            role="reasoner", model_path=path, processor=load_processor(path, 3136, 12544),
            dataset=make_dataset(rows, 2), reward_funcs=[ReasonerReward(0.1)], grpo=grpo, steps=2,
            out_dir=out_dir, seed=5, checkpoint_every=1, log=lambda _m: None,
        )  # fmt: skip

    full = train(tmp_path / "full")
    assert full["optimizer_steps"] == 2 and full["resumed_from"] is None
    # A stage killed after its first checkpoint: only checkpoint-1 survives in its work dir.
    shutil.copytree(tmp_path / "full/checkpoint-1", tmp_path / "killed/checkpoint-1")
    resumed = train(tmp_path / "killed")
    assert resumed["resumed_from"] == "checkpoint-1" and resumed["optimizer_steps"] == 2
    assert _max_change(_weights(tmp_path / "killed/final"), _weights(tmp_path / "full/final")) == 0.0
    assert train(tmp_path / "killed") == {"resumed": "finished"}  # a finished stage is not trained again


def test_a_checkpoint_cut_while_saving_is_skipped_for_the_one_before(tmp_path):
    from verl_ext.local.grpo import latest_checkpoint

    assert latest_checkpoint(tmp_path) is None
    for step, state in ((1, '{"global_step": 1}'), (2, '{"global_step": 2}'), (3, '{"global_st'), (4, None)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:  # 3: the state file cut by a kill; 4: killed before the Trainer wrote it
            (tmp_path / f"checkpoint-{step}/trainer_state.json").write_text(state)
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    (tmp_path / "checkpoint-10").mkdir()  # numeric order, not lexical
    (tmp_path / "checkpoint-10/trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
