"""Multi-node runs generate and pseudo-label across the whole Ray cluster: the engine actor count covers every node's
inference GPUs (no head-node-only stage), training stages still span every node, and the recipe can fall back to one
in-process engine."""

from pathlib import Path

import pytest

from verl_ext.evolve.backend import StageContext
from verl_ext.evolve.local_backend import LocalBackend
from verl_ext.evolve.recipe import load_recipe
from verl_ext.evolve.stages import build_plan
from verl_ext.evolve.verl_backend import VerlBackend

ROOT = Path(__file__).resolve().parents[2]


def _infer_commands(recipe, run_dir, backend):
    for spec in build_plan(recipe, run_dir):
        if spec.name in ("generate", "pseudo_label") and spec.iteration == 1:
            ctx = StageContext(recipe=recipe, spec=spec, run_dir=run_dir)
            if isinstance(backend, LocalBackend):
                yield backend.infer_command(ctx, planning=True)
            else:
                (cmd,) = backend.commands(ctx, planning=True)
                yield cmd


def _flag(argv, name):
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("nnodes", ["1", "2", "4"])
def test_inference_engines_span_every_node(tmp_path, nnodes):
    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-vl-7b.yaml", env={"NNODES": nnodes})
    res = recipe.resources
    assert res.nnodes == int(nnodes) and res.inference_gpus == 8
    for cmd in _infer_commands(recipe, tmp_path, VerlBackend(python="python")):
        assert _flag(cmd.argv, "--runner") == "ray" and _flag(cmd.argv, "--engine") == "vllm"
        actors = int(_flag(cmd.argv, "--engine-actors"))
        assert actors * res.inference_tensor_parallel_size == 8 * int(nnodes)  # every node's inference GPUs
        assert "--data-parallel-size" not in cmd.argv and "head node" not in cmd.description
        assert f"{actors} engine actor(s) over the Ray cluster ({nnodes} node" in cmd.description
    # training stages still span every node
    q = next(s for s in build_plan(recipe, tmp_path) if s.key == "1:questioner")
    ctx = StageContext(recipe=recipe, spec=q, run_dir=tmp_path)
    (cmd,) = VerlBackend(python="python").commands(ctx, planning=True)
    assert f"trainer.nnodes={nnodes}" in cmd.argv


def test_tensor_parallel_groups_and_the_in_process_fallback(tmp_path):
    recipe = load_recipe(
        ROOT / "recipes" / "qwen2.5-vl-7b.yaml",
        overrides=["resources.nnodes=2", "resources.inference_tensor_parallel_size=2"],
    )
    cmd = next(_infer_commands(recipe, tmp_path, VerlBackend(python="python")))
    assert _flag(cmd.argv, "--engine-actors") == "8" and _flag(cmd.argv, "--tensor-parallel-size") == "2"
    path = ROOT / "recipes" / "qwen2.5-vl-7b.yaml"
    inprocess = load_recipe(path, overrides=["resources.inference_runner=inprocess"])
    cmd = next(_infer_commands(inprocess, tmp_path, VerlBackend(python="python")))
    assert _flag(cmd.argv, "--runner") == "inprocess" and "in-process" in cmd.description
    with pytest.raises(Exception, match="inference_runner"):
        load_recipe(ROOT / "recipes" / "qwen2.5-vl-7b.yaml", overrides=["resources.inference_runner=mpi"])


def test_the_cpu_default_runs_one_hf_engine_actor_on_ray(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "tiny.yaml")
    cmds = list(_infer_commands(recipe, tmp_path, LocalBackend()))
    assert len(cmds) == 2
    for cmd in cmds:
        assert _flag(cmd.argv, "--runner") == "ray" and _flag(cmd.argv, "--engine") == "hf"
        assert _flag(cmd.argv, "--engine-actors") == "1"
