"""The Ray Data runner of generation and pseudo-labelling on a simulated 2-node cluster (Ray's cluster utilities, one
CPU a node) with the tiny VLM in HF engine actors: the rows equal the in-process runner's for the same seeds, each
actor gets work when there are at least as many items as actors, and a driver killed mid-way resumes without
redoing finished fragments or writing a row twice. Plus the pipeline's bookkeeping, without a cluster."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.inference import fragments, ray_pipeline
from verl_ext.inference import offline as infer

SMALL = ["--engine", "hf", "--min-pixels", "3136", "--max-pixels", "12544", "--iteration", "1", "--seed", "7"]


# --------------------------------------------------------------------------------------------------
# Without a cluster
# --------------------------------------------------------------------------------------------------


def test_the_fragment_plan_is_fixed_on_the_first_start(tmp_path):
    assert fragments.num_fragments(items=1000, shards=8, actors=16) == 64  # 4 per engine
    assert fragments.num_fragments(items=3, shards=8, actors=16) == 3  # never more than items
    assert fragments.fragment_count(tmp_path, "generate", 1000, 8, actors=16) == 64
    # a restart on a smaller allocation keeps the ranges its finished fragments were cut from
    assert fragments.fragment_count(tmp_path, "generate", 1000, 8, actors=2) == 64
    with pytest.raises(SystemExit, match="inputs changed"):
        fragments.fragment_count(tmp_path, "generate", 999, 8, actors=2)
    (tmp_path / "shards" / ".shard-00003.parquet.tmp-123").write_bytes(b"half")
    (tmp_path / "shards" / "shard-00001.parquet").write_bytes(b"done")
    assert fragments.remove_stale_temps(tmp_path) == 1
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["plan.json", "shard-00001.parquet"]


def test_balance_report():
    rows = [
        {"fragment": 0, "rows": 4, "actor": "a", "node": "n1", "started": 100.0, "finished": 104.0},
        {"fragment": 1, "rows": 4, "actor": "b", "node": "n2", "started": 100.0, "finished": 102.0},
        {"fragment": 2, "rows": 2, "actor": "b", "node": "n2", "started": 102.0, "finished": 103.0},
    ]
    report = ray_pipeline.balance(rows, wall_s=9.0)
    assert report["window_s"] == 4.0 and report["rows"] == 10 and report["rows_per_s"] == 2.5
    assert report["actors"]["a"]["idle_share"] == 0.0 and report["actors"]["b"]["idle_share"] == 0.25
    assert report["actors"]["b"]["fragments"] == 2 and report["timeline"][0][:2] == [0, "a"]
    assert ray_pipeline.balance([])["actors"] == {}


def test_actor_pool_per_engine():
    vllm = argparse.Namespace(engine="vllm", tensor_parallel_size=2, actor_cpus=1.0)
    kwargs = ray_pipeline.map_batches_kwargs(vllm, "generate", actors=8)
    assert kwargs["num_gpus"] == 2 and kwargs["batch_size"] == 1 and kwargs["fn"] is ray_pipeline.FragmentWorker
    assert kwargs["compute"].min_size == kwargs["compute"].max_size == 8
    assert kwargs["compute"].max_tasks_in_flight_per_actor == 1  # an idle actor takes the next fragment
    hf = argparse.Namespace(engine="hf", tensor_parallel_size=1, actor_cpus=2.0)
    assert ray_pipeline.actor_resources(hf) == {"num_cpus": 2.0}


# --------------------------------------------------------------------------------------------------
# On a 2-node cluster
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each, this process connected as the driver; both torn down after the module."""
    ray_pipeline.offline_env()
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        nodes.add_node(num_cpus=1)
        ray.init(address=nodes.address, runtime_env=ray_pipeline.runtime_env(), logging_level="ERROR")
        nodes.wait_for_nodes()
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


def _rows(path):
    return pq.read_table(path).to_pydict()


@pytest.mark.slow
def test_two_nodes_give_the_in_process_rows_and_each_actor_works(cluster, tiny_vlm_path, image_parquet, tmp_path):
    # 2 images (items) for 2 actors, 3 questions each: the edge of "items >= actors"
    argv = ["generate", "--model", str(tiny_vlm_path), "--images", str(image_parquet), "--num-questions", "6",
            "--images-per-iteration", "2", "--shards", "1", "--max-new-tokens", "12", "--engine-actors", "2",
            *SMALL]  # fmt: skip
    assert infer.main([*argv, "--out-dir", str(tmp_path / "local"), "--runner", "inprocess"]) == 0
    assert infer.main([*argv, "--out-dir", str(tmp_path / "ray"), "--runner", "ray"]) == 0
    local, distributed = _rows(tmp_path / "local/questions.parquet"), _rows(tmp_path / "ray/questions.parquet")
    assert distributed == local and len(local["id"]) == 6 and len(set(local["raw_output"])) > 1
    pipeline = json.loads((tmp_path / "ray/provenance.json").read_text())["pipeline"]
    assert len(pipeline["actors"]) == 2 and all(a["fragments"] == 1 for a in pipeline["actors"].values())
    assert len({a["node"] for a in pipeline["actors"].values()}) == 2  # one engine on each node


@pytest.mark.slow
def test_a_killed_pipeline_resumes_without_duplicates(cluster, tiny_vlm_path, image_parquet, tmp_path):
    images = pq.read_table(image_parquet).to_pydict()
    n = 16
    questions = {
        "id": [f"{images['id'][i % 8]}/1/{i // 8}" for i in range(n)],
        "source_image_id": [images["id"][i % 8] for i in range(n)],
        "image": [images["image"][i % 8] for i in range(n)],
        "question": ["How many circles are there?" if i % 4 else None for i in range(n)],
        "question_type": ["numerical" if i % 4 else None for i in range(n)],
        "iteration": [1] * n,
        "questioner_checkpoint": ["q"] * n,
    }
    pq.write_table(pa.table(questions), tmp_path / "questions.parquet")
    argv = ["pseudo-label", "--model", str(tiny_vlm_path), "--questions", str(tmp_path / "questions.parquet"),
            "--m", "4", "--top-k", "40", "--max-new-tokens", "24", "--shards", "8", "--engine-actors", "2",
            *SMALL]  # fmt: skip
    assert infer.main([*argv, "--out-dir", str(tmp_path / "local"), "--runner", "inprocess"]) == 0

    # A driver of its own, killed (SIGKILL: no cleanup) once the first fragment is written.
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "verl_ext.inference", *argv, "--out-dir", str(out), "--ray-address", cluster.address]
    driver = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list(out.glob("shards/shard-*.parquet")):
            assert driver.poll() is None, f"driver exited with {driver.returncode} before writing a fragment"
            assert time.monotonic() < deadline, "no fragment within 600 s"
            time.sleep(0.02)  # polling a condition, not waiting for a duration
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("shards/shard-*.parquet")}
    assert 1 <= len(done) < 8, done  # killed mid-way
    assert not (out / "labels.parquet").exists()

    assert infer.main([*argv, "--out-dir", str(out)]) == 0  # the ray runner again, on the same cluster
    assert {name: (out / "shards" / name).stat().st_mtime_ns for name in done} == done  # finished ones skipped
    labels, local = _rows(out / "labels.parquet"), _rows(tmp_path / "local/labels.parquet")
    assert len(labels["id"]) == n == len(set(labels["id"]))  # no duplicates, none missing
    assert labels == local  # and the rows a single uninterrupted process writes
    assert labels["num_samples"] == [0 if i % 4 == 0 else 4 for i in range(n)]


def test_a_vllm_actor_seeds_each_request_by_its_item(tiny_vlm_path, image_parquet, tmp_path, monkeypatch):
    """The vLLM engine actor's code path, with a stand-in `vllm` module (no GPU here): the engine gets the recipe's
    tensor parallelism and one image per prompt; every request carries its item's seed and its question count."""
    import types

    calls: dict = {"params": []}

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs

        def generate(self, prompts, params, use_tqdm=False):
            assert all(p["multi_modal_data"]["image"] is not None for p in prompts)
            texts = [[types.SimpleNamespace(text=f"<type>numerical</type> q{k}") for k in range(p.n)] for p in params]
            return [types.SimpleNamespace(outputs=t) for t in texts]

    def sampling_params(**kwargs):
        calls["params"].append(kwargs)
        return types.SimpleNamespace(**kwargs)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=sampling_params))
    argv = ["generate", "--model", str(tiny_vlm_path), "--images", str(image_parquet), "--out-dir", str(tmp_path),
            "--num-questions", "10", "--engine", "vllm", "--tensor-parallel-size", "2", "--engine-actors", "2",
            "--iteration", "1", "--seed", "7"]  # fmt: skip
    args = infer.build_parser().parse_args(argv)
    ranges, _ = infer.stage_plan(args, "generate")  # the driver records the plan before the actors start
    worker = ray_pipeline.FragmentWorker(args, "generate")
    assert calls["llm"]["tensor_parallel_size"] == 2 and calls["llm"]["limit_mm_per_prompt"] == {"image": 1}
    out = worker({"fragment": [0]})
    assert out["fragment"] == [0] and out["rows"][0] > 0 and (tmp_path / "shards/shard-00000.parquet").is_file()
    ids = pq.read_table(image_parquet).column("id").to_pylist()[: ranges[0][1]]
    assert [p["seed"] for p in calls["params"]] == [infer.item_seed(7, 1, "generate", i) for i in ids]
    assert sum(p["n"] for p in calls["params"]) >= out["rows"][0]
