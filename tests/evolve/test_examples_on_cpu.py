"""The example scripts are the loop's own stage commands (generated from commands.py), so they cannot drift from
what `make evolve` runs; run with a stub python3 they pass the recipe's values and the caller's variables to verl."""

import io
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_ext.evolve import examples
from verl_ext.evolve.filter_stage import run_filter
from verl_ext.evolve.recipe import FilterConfig, StatsConfig, load_recipe

ROOT = Path(__file__).resolve().parents[2]


def test_committed_scripts_equal_the_generated_ones():
    assert examples.stale(ROOT) == [], "regenerate: python -m verl_ext.evolve.examples --write"


def _run_script(tmp_path, stage: str, **env) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    argv_file = tmp_path / f"{stage}.argv"
    stub = bin_dir / "python3"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{argv_file}"\n')
    stub.chmod(0o755)
    full_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path), **env}
    subprocess.run(["bash", str(ROOT / examples.SCRIPTS[stage]), "trainer.save_freq=5"], env=full_env, check=True,
                   capture_output=True)  # fmt: skip
    return argv_file.read_text().splitlines()


def _kv(argv: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in argv if "=" in a)


@pytest.mark.parametrize("stage", ["questioner", "reasoner"])
def test_scripts_run_the_recipes_steps_with_the_callers_paths(tmp_path, stage):
    recipe = load_recipe(ROOT / examples.RECIPE, env={})
    kv = _kv(_run_script(tmp_path, stage, MODEL_PATH="/m/q", TRAIN_FILE="/d/t.parquet", NNODES="1"))
    steps = getattr(recipe, stage).steps
    assert kv["trainer.total_training_steps"] == str(steps)
    # an image set smaller than steps x batch must still reach `steps` steps: one step per epoch at least
    assert int(kv["trainer.total_epochs"]) >= steps
    assert kv["actor_rollout_ref.model.path"] == "/m/q"
    assert kv["data.train_files"] == kv["data.val_files"] == "/d/t.parquet"
    assert kv["trainer.logger"] == "[console]"
    assert kv["trainer.save_freq"] == "5"  # extra arguments come last and win
    if stage == "questioner":
        assert kv["visplay.reward.mode"] == recipe.questioner.reward_mode
        assert kv["visplay.reasoner.num_samples"] == str(recipe.questioner.m)
        assert kv["reward.reward_model.model_path"] == "/m/q"  # the frozen reasoner defaults to the same model


def test_questioner_script_external_reasoner(tmp_path):
    kv = _kv(_run_script(tmp_path, "questioner", REASONER_HOSTING="external", REASONER_URL="http://r:8000/v1"))
    assert kv["reward.reward_model.enable"] == "False" and kv["visplay.reasoner.base_url"] == "http://r:8000/v1"


def test_hand_made_pseudo_labels_without_filter_reason_load(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format="PNG")
    table = pa.table(
        {
            "id": ["a", "b"],
            "source_image_id": ["1", "2"],
            "image": [buffer.getvalue()] * 2,
            "question": ["How many?", "Which?"],
            "question_type": ["numerical", None],
            "pseudo_label": ["3", "B"],
            "confidence": [0.5, 0.95],
            "num_samples": [10, 10],
            "iteration": [1, 1],
            "questioner_checkpoint": ["hand", "hand"],
        }
    )
    pq.write_table(table, tmp_path / "labels.parquet")
    stats = run_filter(
        tmp_path / "labels.parquet", None, tmp_path / "out", FilterConfig(), StatsConfig(), iteration=1, seed=0
    )
    assert stats["counts"]["kept"] == 1
    kept = pq.read_table(tmp_path / "out" / "train.parquet").to_pydict()
    assert kept["id"] == ["a"] and kept["filter_reason"] == ["kept"]
