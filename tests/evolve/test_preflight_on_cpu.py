"""`visplay preflight`: one table of machine checks before any GPU time; on CPU with no engine it says what is missing
and fails; on a machine that fits the recipe it passes; the verl backend runs it before its first stage."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.compat import gpu_stack
from verl_ext.evolve import preflight as pf
from verl_ext.evolve.backend import StageContext
from verl_ext.evolve.recipe import load_recipe
from verl_ext.evolve.stages import build_plan
from verl_ext.evolve.verl_backend import VerlBackend

ROOT = Path(__file__).resolve().parents[2]
TiB = 1024**4


def _model_dir(tmp_path, arch="Qwen2_5_VLForConditionalGeneration") -> Path:
    d = tmp_path / "Qwen2.5-VL-7B-Instruct"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"architectures": [arch]}))
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 2 * 8_290_000_000}}))
    return d


def _images(tmp_path, n=1000) -> Path:
    path = tmp_path / "images.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(n)]}), path)
    return path


def _recipe(tmp_path, *overrides, arch="Qwen2_5_VLForConditionalGeneration"):
    env = {
        "BASE_MODEL": str(_model_dir(tmp_path, arch)),
        "IMAGE_SOURCE": "parquet",
        "IMAGE_PATH": str(_images(tmp_path)),
    }
    return load_recipe(ROOT / "recipes" / "qwen2.5-vl-7b.yaml", overrides=list(overrides), env=env)


def _good_probe(run_dir, **changes) -> pf.Probe:
    probe = pf.Probe(
        gpus=8,
        versions={name: v + ("+cu130" if name == "torch" else "") for name, v in gpu_stack.wanted_pins().items()},
        declared=gpu_stack.verl_declared_pins(),
        env={},
        home=Path(run_dir),
        mem_available=2 * TiB,
        disk_free={str(run_dir): 4 * TiB},
    )
    for key, value in changes.items():
        setattr(probe, key, value)
    return probe


def _status(checks) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def test_a_machine_that_fits_passes_every_check(tmp_path):
    recipe, run_dir = _recipe(tmp_path), tmp_path / "run"
    checks, table = pf.preflight(recipe, run_dir, _good_probe(run_dir))
    assert pf.failures(checks) == [], table
    status = _status(checks)
    for name in ("GPUs", "package vllm", "package flash-attn", "images", "base model", "disk (checkpoints)"):
        assert status[name] == pf.OK, table
    assert table.splitlines()[0] == "| check | needed | found | status | what to do |"


@pytest.mark.parametrize(
    "change, failed",
    [
        (lambda run_dir: {"gpus": 4}, "GPUs"),
        (lambda run_dir: {"versions": {"torch": "2.11.0"}}, "package vllm"),
        (lambda run_dir: {"disk_free": {str(run_dir): 10 * 1024**3}}, "disk (checkpoints)"),
    ],
)
def test_each_shortfall_fails_its_row(tmp_path, change, failed):
    recipe, run_dir = _recipe(tmp_path), tmp_path / "run"
    checks, _ = pf.preflight(recipe, run_dir, _good_probe(run_dir, **change(run_dir)))
    assert failed in [c.name for c in pf.failures(checks)]


def test_wandb_needs_credentials(tmp_path):
    recipe, run_dir = _recipe(tmp_path, "logging.loggers=[console,wandb]"), tmp_path / "run"
    checks, _ = pf.preflight(recipe, run_dir, _good_probe(run_dir))
    assert _status(checks)["logger wandb"] == pf.FAIL
    for env in ({"WANDB_API_KEY": "k"}, {"WANDB_MODE": "offline"}):
        checks, _ = pf.preflight(recipe, run_dir, _good_probe(run_dir, env=env))
        assert _status(checks)["logger wandb"] == pf.OK
    (run_dir).mkdir()
    (run_dir / ".netrc").write_text("machine api.wandb.ai login user password k\n")
    checks, _ = pf.preflight(recipe, run_dir, _good_probe(run_dir))
    assert _status(checks)["logger wandb"] == pf.OK


def test_small_image_set_warns_empty_fails_and_unsupported_model_fails(tmp_path):
    recipe = _recipe(tmp_path, "images.max_images=100")
    checks, _ = pf.preflight(recipe, tmp_path / "run", _good_probe(tmp_path / "run"))
    assert _status(checks)["images"] == pf.WARN
    recipe = load_recipe(
        ROOT / "recipes" / "qwen2.5-vl-7b.yaml", env={"IMAGE_PATH": str(tmp_path / "none"), "BASE_MODEL": "x/y"}
    )
    checks, _ = pf.preflight(recipe, tmp_path / "run", _good_probe(tmp_path / "run"))
    assert _status(checks)["images"] == pf.FAIL
    other = tmp_path / "other"
    checks, _ = pf.preflight(_recipe(other, arch="LlamaForCausalLM"), tmp_path / "run", _good_probe(tmp_path / "run"))
    assert _status(checks)["base model"] == pf.FAIL


def test_estimates():
    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-vl-7b.yaml", env={})
    # 512 prompts x 8 rollouts x 2048^2 px x 24 B (float32 patches of 3 x 2 x 14 x 14 per 14^2 px)
    assert pf.multimodal_ram_bytes(recipe) == 512 * 8 * 4194304 * 24
    params = 7_000_000_000
    per_stage = 2 * 12 * params + 2 * params  # 20 steps saved every 5: the newest 2 kept, plus the bf16 merge
    assert pf.checkpoint_disk_bytes(recipe, params) == 6 * per_stage
    at_end = load_recipe(
        ROOT / "recipes" / "qwen2.5-vl-7b.yaml",
        overrides=["questioner.checkpoint_every=null", "reasoner.checkpoint_every=null"],
        env={},
    )
    assert pf.checkpoint_disk_bytes(at_end, params) == 6 * (12 * params + 2 * params)
    assert pf.model_parameters("Qwen/Qwen2.5-VL-3B-Instruct", None) == 3_000_000_000


def test_cli_on_this_cpu_machine_names_what_is_missing_without_importing_engines(tmp_path):
    code = (
        "import sys; from verl_ext.cli import main; "
        f"rc = main(['preflight', '--recipe', {str(ROOT / 'recipes' / 'qwen2.5-vl-7b.yaml')!r}, "
        f"'--run-dir', {str(tmp_path / 'run')!r}]); "
        "assert 'torch' not in sys.modules and 'vllm' not in sys.modules, 'engine imported'; sys.exit(rc)"
    )
    env = {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "| GPUs | 8 per node x 1 node(s) | 0 | FAIL |" in out.stdout
    if gpu_stack.installed_version("vllm") is None:
        assert "| package vllm | ==0.24.0 | missing | FAIL | missing: make install-gpu |" in out.stdout
    assert "failed check(s)" in out.stdout


def test_verl_backend_runs_preflight_before_its_first_stage(tmp_path, monkeypatch):
    recipe = _recipe(tmp_path)
    run_dir = tmp_path / "run"
    spec = next(s for s in build_plan(recipe, run_dir) if s.key == "1:questioner_merge")
    ran = []
    monkeypatch.setattr("verl_ext.evolve.verl_backend.run_command", lambda cmd, *a, **k: ran.append(cmd))
    monkeypatch.delenv("VISPLAY_SKIP_PREFLIGHT", raising=False)
    logged = []
    ctx = StageContext(recipe=recipe, spec=spec, run_dir=run_dir, log=logged.append)
    monkeypatch.setattr(pf, "probe_machine", lambda run_dir: _good_probe(run_dir, gpus=0))
    backend = VerlBackend(python="python")
    with pytest.raises(pf.PreflightError, match=r"preflight failed \(GPUs\)"):
        backend.merge(ctx)
    assert ran == []  # nothing started
    monkeypatch.setattr(pf, "probe_machine", lambda run_dir: _good_probe(run_dir))
    backend.merge(ctx)
    assert len(ran) == 1 and any("| GPUs | 8 per node" in line for line in logged)
    monkeypatch.setattr(pf, "probe_machine", lambda run_dir: pytest.fail("preflight ran twice"))
    backend.merge(ctx)  # once per loop process


def test_the_cpu_execution_target_is_not_checked_for_gpus_or_engines(tmp_path):
    """recipes/tiny-verl.yaml runs verl's trainer on CPU (its `device` block): no GPU or vLLM row can fail it."""
    recipe = load_recipe(ROOT / "recipes" / "tiny-verl.yaml", env={})
    run_dir = tmp_path / "run"
    checks, table = pf.preflight(recipe, run_dir, _good_probe(run_dir, gpus=0, versions={}))
    names = [c.name for c in checks]
    assert "GPUs" not in names and not any(n.startswith("package ") for n in names), table
    assert pf.failures(checks) == [], table
    gpu_recipe, gpu_run = _recipe(tmp_path / "gpu"), tmp_path / "gpu_run"
    gpu_checks, _ = pf.preflight(gpu_recipe, gpu_run, _good_probe(gpu_run, gpus=0, versions={}))
    assert {"GPUs", "package vllm"} <= {c.name for c in pf.failures(gpu_checks)}
