"""The CPU target's shims in isolation (fast): gating, what each registers, and that production code never
imports them. The slow tests next to this one run verl's trainer with them."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from verl_ext.testing.verl_cpu import distributed

from .conftest import REPO, load_tiny_verl


def test_backend_string_loses_only_repeated_devices():
    assert distributed.dedupe_backend("cpu:gloo,cpu:gloo") == "cpu:gloo"
    assert distributed.dedupe_backend("cpu:gloo,cuda:nccl") == "cpu:gloo,cuda:nccl"
    assert distributed.dedupe_backend("gloo") == "gloo" and distributed.dedupe_backend(None) is None


def _probe(env: dict) -> str:
    code = (
        "import verl, verl_ext.testing.verl_cpu as cpu\n"
        "from verl.workers.rollout.replica import RolloutReplicaRegistry\n"
        "from verl.plugin.platform import PlatformRegistry\n"
        "print(cpu._ACTIVE, 'hf' in RolloutReplicaRegistry._registry, PlatformRegistry.get('cpu') is not None)\n"
    )
    full = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_shims_apply_through_verls_external_modules_hook():
    recipe_env = dict(item.split("=", 1) for item in load_tiny_verl().device.env)
    assert _probe(recipe_env) == "True True True"  # what every Ray process of a CPU run does on `import verl`


def test_shims_stay_off_unless_asked(monkeypatch):
    import verl_ext.testing.verl_cpu as cpu

    if cpu._ACTIVE:
        pytest.skip("already active in this process")
    monkeypatch.delenv(cpu.FLAG, raising=False)
    assert cpu.activate() is False and cpu._ACTIVE is False
    monkeypatch.setenv(cpu.FLAG, "1")
    monkeypatch.setattr(cpu, "accelerator_present", lambda: True)  # a GPU machine: never shimmed
    assert cpu.activate() is False and cpu._ACTIVE is False


def test_recipe_device_block_names_what_the_shims_register():
    device = load_tiny_verl().device
    env = dict(item.split("=", 1) for item in device.env)
    from verl_ext.testing.verl_cpu import FLAG, hf_rollout
    from verl_ext.testing.verl_cpu.platform import PLATFORM_NAME

    assert env[FLAG] == "1" and env["VERL_PLATFORM"] == PLATFORM_NAME
    assert "verl_ext.testing.verl_cpu" in env["VERL_USE_EXTERNAL_MODULES"].split(",")
    assert f"actor_rollout_ref.rollout.name={hf_rollout.ROLLOUT_NAME}" in device.overrides
    assert device.inference_engine == "hf"


def test_production_code_never_imports_the_test_target():
    pattern = re.compile(r"^\s*(from|import)\s+verl_ext\.testing", re.M)
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "verl_ext").rglob("*.py")
        if "testing" not in path.relative_to(REPO / "verl_ext").parts and pattern.search(path.read_text())
    ]
    assert offenders == []


def test_gpu_recipes_have_no_device_block():
    from verl_ext.evolve.recipe import load_recipe

    for name in ("qwen2.5-vl-7b", "qwen2.5-vl-3b", "mimo-vl-7b"):
        recipe = load_recipe(Path(REPO / "recipes" / f"{name}.yaml"))
        assert recipe.device.env == [] and recipe.device.overrides == [] and recipe.device.inference_engine == "vllm"


def test_tiny_verl_dry_run_shows_the_device_block_on_every_verl_command(tmp_path, capsys):
    from verl_ext.cli import evolve as main

    assert main(["--recipe", str(REPO / "recipes/tiny-verl.yaml"), "--dry-run", "--run-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for stage in ("questioner", "reasoner"):
        assert f"--config-name {stage}" in out
    commands = "\n".join(line for line in out.splitlines() if not line.startswith("#"))  # not the recipe echo
    assert commands.count("actor_rollout_ref.rollout.name=hf") == 4  # both training stages, both iterations
    assert commands.count("VISPLAY_VERL_CPU=1") >= 4 and "--engine hf" in commands
