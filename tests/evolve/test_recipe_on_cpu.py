"""Recipe loading and validation: every shipped recipe loads; every error names the bad key."""

from pathlib import Path

import pytest
import yaml

from verl_ext.evolve.recipe import RecipeError, load_recipe, parse_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
REAL = ("qwen2.5-vl-3b", "qwen2.5-vl-7b", "mimo-vl-7b")


def _tiny_data() -> dict:
    return yaml.safe_load((RECIPES / "tiny.yaml").read_text())


def _errors(data=None, overrides=None, env=None) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(_tiny_data() if data is None else data, overrides=overrides, env=env or {})
    return info.value.errors


@pytest.mark.parametrize("name", REAL + ("tiny",))
def test_shipped_recipes_load(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml", env={})
    assert recipe.name == name
    assert recipe.to_dict()["questioner"]["lambda"] == recipe.questioner.lam


@pytest.mark.parametrize("name", REAL)
def test_real_recipes_hold_the_reference_run(name):
    r = load_recipe(RECIPES / f"{name}.yaml", env={})
    steps = 40 if "3b" in name else 20
    assert (r.backend, r.iterations, r.questioner.steps, r.reasoner.steps) == ("verl", 3, steps, steps)
    assert (r.questioner.m, r.pseudo_label.m, r.generation.num_questions) == (10, 9, 8000)
    assert (r.generation.temperature, r.generation.top_p, r.generation.max_new_tokens) == (1.0, 0.95, 4096)
    # the reference asks the frozen reasoner for the final answer only (docs/reference-differences.md)
    assert r.questioner.reasoner_prompt == "answer_only"
    assert (r.questioner.reasoner_temperature, r.questioner.reasoner_top_p, r.questioner.reasoner_top_k) == (
        1.0,
        1.0,
        40,
    )
    assert (r.filter.low, r.filter.high) == (0.3, 0.8)
    assert (r.images.min_pixels, r.images.max_pixels) == (262144, 4194304)
    for g in (r.questioner.grpo, r.reasoner.grpo):
        assert (g.n, g.lr, g.weight_decay, g.kl_coef, g.kl_type) == (8, 1e-6, 1e-2, 1e-2, "low_var_kl")
        assert (g.rollout_batch_size, g.global_batch_size) == (512, 128)
        assert (g.top_p, g.clip_ratio_high) == (0.99, 0.3)  # the reference trainer config
    assert (r.questioner.grpo.max_response_length, r.reasoner.grpo.max_response_length) == (2048, 4096)
    assert (r.resources.questioner_train_gpus, r.resources.questioner_reasoner_gpus) == (4, 4)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("questioner.m=1", "questioner.m: must be >= 2, got 1"),
        ("pseudo_label.m=0", "pseudo_label.m: must be >= 2, got 0"),
        ("iterations=0", "iterations: must be >= 1, got 0"),
        ("filter.high=1.5", "filter.high: must be <= 1, got 1.5"),
        ("questioner.grpo.lr=-1", "questioner.grpo.lr: must be > 0, got -1.0"),
        ("questioner.reward_mode=fancy", "questioner.reward_mode: must be one of paper, reference; got 'fancy'"),
        ("backend=jax", "backend: must be one of verl, local; got 'jax'"),
        ("questioner.m=ten", "questioner.m: must be an integer, got str 'ten'"),
        ("questioner.m=2.5", "questioner.m: must be an integer, got float 2.5"),
        ("model.trust_remote_code=1", "model.trust_remote_code: must be true or false, got int 1"),
        ("images.max_images=null", "images.max_images: required with images.source: testkit"),
        ("logging.loggers=[console,mlflow]", "logging.loggers[1]: must be one of console, wandb, tensorboard"),
        ("model.warmup.steps=0", "model.warmup.steps: must be >= 1, got 0"),
        ("model.warmup.examples=seedset.py", "model.warmup.examples: must be 'module:function' or null"),
    ],
)
def test_bad_values_name_the_key(override, expected):
    errors = _errors(overrides=[override])
    assert any(e.startswith(expected) for e in errors), errors


def test_unknown_key_is_named_with_a_suggestion():
    data = _tiny_data()
    data["questioner"]["lamda"] = 0.5
    data["reasonr"] = {}
    errors = _errors(data)
    assert "questioner.lamda: unknown key (did you mean 'lambda'?)" in errors
    assert any(e.startswith("reasonr: unknown key (did you mean 'reasoner'?)") for e in errors)


def test_cross_key_constraints_name_the_key():
    assert any(e.startswith("filter.low: must be <= filter.high") for e in _errors(overrides=["filter.low=0.9"]))
    errors = _errors(overrides=["reasoner.grpo.global_batch_size=3"])
    assert any(
        e.startswith("reasoner.grpo.global_batch_size: must divide reasoner.grpo.rollout_batch_size") for e in errors
    )
    errors = _errors(overrides=["questioner.grpo.max_prompt_length=64"])
    assert any(e.startswith("questioner.grpo.max_prompt_length: must be >= 272") for e in errors), errors
    errors = _errors(overrides=["questioner.reasoner_service=endpoint"])
    assert any(e.startswith("questioner.reasoner_endpoint: required") for e in errors)


def test_verl_resource_checks():
    data = yaml.safe_load((RECIPES / "qwen2.5-vl-7b.yaml").read_text())
    errors = _errors(data, overrides=["resources.questioner_train_gpus=6"])
    assert any(
        e.startswith("resources.questioner_train_gpus: questioner_train_gpus + questioner_reasoner_gpus")
        for e in errors
    )


def test_missing_required_and_all_errors_at_once():
    data = _tiny_data()
    del data["model"]["base"]
    data["questioner"]["m"] = 1
    errors = _errors(data)
    assert "model.base: required key is missing" in errors
    assert "questioner.m: must be >= 2, got 1" in errors


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text((RECIPES / "tiny.yaml").read_text() + "\niterations: 5\n")
    with pytest.raises(RecipeError, match="duplicate key 'iterations'"):
        load_recipe(path)


def test_env_expansion_typing_and_missing_variable():
    data = _tiny_data()
    data["resources"]["nnodes"] = "${NNODES:-1}"
    data["model"]["base"] = "${BASE_MODEL}"
    assert "model.base: environment variable BASE_MODEL is not set" in _errors(data)[0]
    r = parse_recipe(data, env={"NNODES": "4", "BASE_MODEL": "/models/x"})
    assert (r.resources.nnodes, r.model.base) == (4, "/models/x")


def test_partial_sections_keep_role_defaults():
    data = _tiny_data()
    data["reasoner"] = {"steps": 3}
    r = parse_recipe(data, env={})
    assert r.reasoner.grpo.max_response_length == 4096  # the reasoner's own default, not the questioner's 2048
    assert parse_recipe(_tiny_data(), overrides=["questioner.grpo.lr=1e-6"], env={}).questioner.grpo.lr == 1e-6


@pytest.mark.parametrize("name", REAL)
def test_real_recipes_log_without_an_account(name):
    # verl calls wandb.init for `wandb`, which raises without an API key: the default must run anywhere.
    r = load_recipe(RECIPES / f"{name}.yaml", env={})
    assert "wandb" not in r.logging.loggers and "console" in r.logging.loggers
    assert "WANDB_API_KEY" in (RECIPES / f"{name}.yaml").read_text()  # the recipe says how to turn it on
    with_wandb = load_recipe(RECIPES / f"{name}.yaml", overrides=["logging.loggers=[console,wandb]"], env={})
    assert with_wandb.logging.loggers == ["console", "wandb"]


def test_a_bad_set_override_is_named_as_the_option_not_the_file():
    with pytest.raises(RecipeError) as exc:
        parse_recipe(_tiny_data(), overrides=["questioner.lamda=2"], source="recipes/tiny.yaml")
    text = str(exc.value)
    assert text.startswith("invalid --set override for recipe ")
    assert "questioner.lamda: unknown key (did you mean 'lambda'?) (from --set questioner.lamda=2)" in text
    data = _tiny_data()
    data["questioner"]["lamda"] = 0.5  # in the file itself: the file is named
    with pytest.raises(RecipeError) as exc:
        parse_recipe(data, overrides=["iterations=2"], source="x.yaml")
    assert str(exc.value).startswith("invalid recipe x.yaml") and "(from --set" not in str(exc.value)
