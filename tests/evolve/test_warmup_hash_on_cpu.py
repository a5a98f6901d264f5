"""The warm-up stage's config hash covers what the warmed model depends on: prompts, image sizes and the recipe's
`model.warmup` settings; the local backend builds its warm-up from those settings."""

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


def test_warmup_hash_changes_with_the_warmup_settings(tmp_path):
    base = _warmup_hash(tmp_path)
    assert _warmup_hash(tmp_path, "model.warmup.steps=7") != base
    assert _warmup_hash(tmp_path, "model.warmup.lr=1.0e-4") != base
    assert _warmup_hash(tmp_path, "model.warmup.examples=verl_ext.world.seedset:seed_items") != base


def test_local_backend_warms_up_with_the_recipe_settings(tmp_path):
    from verl_ext.evolve.backend import StageContext
    from verl_ext.evolve.local_backend import LocalBackend
    from verl_ext.local.warmup import WarmupConfig

    world = TINY.with_name("tiny-world.yaml")
    recipe = load_recipe(world, overrides=["model.warmup.steps=7", "model.warmup.lr=2.0e-4", "seed=5"])
    (spec,) = [s for s in build_plan(recipe, tmp_path) if s.name == "warmup"]
    ctx = StageContext(recipe=recipe, spec=spec, run_dir=tmp_path, log=print)
    cfg = LocalBackend().warmup_config(ctx)
    settings = recipe.model.warmup
    assert (cfg.examples, cfg.num_images, cfg.steps, cfg.lr) == (settings.examples, settings.num_images, 7, 2.0e-4)
    assert (cfg.seed, cfg.min_pixels, cfg.max_pixels) == (5, recipe.images.min_pixels, recipe.images.max_pixels)
    # An explicit WarmupConfig (what tests use for short warm-ups) replaces the recipe's settings, not its seed.
    short = LocalBackend(warmup=WarmupConfig(steps=3)).warmup_config(ctx)
    assert (short.steps, short.examples, short.seed) == (3, None, 5)


def test_warmup_hash_ignores_training_settings(tmp_path):
    assert _warmup_hash(tmp_path, "questioner.steps=5") == _warmup_hash(tmp_path)
