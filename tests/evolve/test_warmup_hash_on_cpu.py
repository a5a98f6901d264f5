"""The warm-up stage's config hash covers what the warmed model depends on: prompts and image sizes."""

from pathlib import Path

from verl_ext.evolve.recipe import load_recipe
from verl_ext.evolve.stages import build_plan

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


def _warmup_hash(tmp_path, *overrides):
    plan = build_plan(load_recipe(TINY, overrides=list(overrides)), tmp_path)
    (warmup,) = [spec for spec in plan if spec.name == "warmup"]
    return warmup.config_hash


def test_warmup_hash_changes_with_pixels_and_prompts(tmp_path):
    base = _warmup_hash(tmp_path)
    assert _warmup_hash(tmp_path) == base
    assert _warmup_hash(tmp_path, "images.max_pixels=6272") != base
    prompt = tmp_path / "q.jinja"
    prompt.write_text("Ask one question about the image.\n")
    assert _warmup_hash(tmp_path, f"prompts.questioner={prompt}") != base


def test_warmup_hash_ignores_training_settings(tmp_path):
    assert _warmup_hash(tmp_path, "questioner.steps=5") == _warmup_hash(tmp_path)
