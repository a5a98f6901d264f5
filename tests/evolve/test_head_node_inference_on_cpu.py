"""Multi-node runs generate and pseudo-label on the head node: the engines' data-parallel size counts one node's
GPUs (the engines see only local GPUs), and too few visible GPUs stop with the recipe key to change."""

from pathlib import Path

import pytest

from verl_ext.evolve.backend import StageContext
from verl_ext.evolve.recipe import load_recipe
from verl_ext.evolve.stages import build_plan
from verl_ext.evolve.verl_backend import VerlBackend
from verl_ext.inference import offline

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("nnodes", ["1", "2", "4"])
def test_inference_data_parallel_counts_the_head_nodes_gpus(tmp_path, nnodes):
    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-vl-7b.yaml", env={"NNODES": nnodes})
    assert recipe.resources.nnodes == int(nnodes)
    for spec in build_plan(recipe, tmp_path):
        if spec.name not in ("generate", "pseudo_label") or spec.iteration != 1:
            continue
        ctx = StageContext(recipe=recipe, spec=spec, run_dir=tmp_path)
        (cmd,) = VerlBackend(python="python").commands(ctx, planning=True)
        dp = cmd.argv[cmd.argv.index("--data-parallel-size") + 1]
        assert int(dp) * recipe.resources.inference_tensor_parallel_size == recipe.resources.inference_gpus == 8
        assert ("head node" in cmd.description) == (nnodes != "1")
    # training stages still span every node
    q = next(s for s in build_plan(recipe, tmp_path) if s.key == "1:questioner")
    ctx = StageContext(recipe=recipe, spec=q, run_dir=tmp_path)
    (cmd,) = VerlBackend(python="python").commands(ctx, planning=True)
    assert f"trainer.nnodes={nnodes}" in cmd.argv


def test_too_few_local_gpus_stop_with_the_recipe_key(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    args = offline.build_parser().parse_args(
        ["generate", "--model", "m", "--out-dir", str(tmp_path), "--iteration", "1", "--images", "i.parquet",
         "--num-questions", "8", "--data-parallel-size", "8"]
    )  # fmt: skip
    args.argv = []
    with pytest.raises(SystemExit, match=r"needs 8 GPUs on this node; 4 visible.*resources\.inference_gpus"):
        offline._data_parallel(args)
