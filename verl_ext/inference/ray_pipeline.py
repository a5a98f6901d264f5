"""The `ray` runner of the offline stages: a Ray Data pipeline over the running Ray cluster.

The unfinished fragments of a stage (`fragments`) become a dataset of one-row blocks; `map_batches` sends them to a
fixed pool of engine actors (`FragmentWorker`: one per GPU or tensor-parallel group with vLLM, `--actor-cpus` CPUs
each with the HF engine), wherever in the cluster Ray places them. Every actor has loaded its model before the first
fragment is handed out, and holds at most one fragment at a time, so work is balanced dynamically: an idle actor takes
the next fragment, and every actor gets one while fragments are left. An actor reads only its fragment's rows of the
input parquet (lazily, from the shared filesystem), writes the fragment's parquet itself and returns one timing row;
the driver (`python -m verl_ext.inference`) combines the fragments once all are written.

Ray: `RAY_ADDRESS` (the Slurm recipe exports it) or `--ray-address` joins that cluster; otherwise a local Ray is
started for this job and shut down after it. Workers get this package's root on PYTHONPATH. Ray, torch and vLLM are
imported only inside the functions that run them.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

ACTOR_START_TIMEOUT_S = 3600  # model loading on every actor before any fragment is dispatched
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# Offline by default: no usage reports from Ray, and no Ray Data metrics poller (it queries a Prometheus server that
# a job's cluster does not run). Set these in the environment to choose otherwise.
OFFLINE_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DATA_USAGE_DISABLED": "1"}


def offline_env() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def actor_resources(args) -> dict:
    """Ray resources of one engine actor: tensor-parallel-size GPUs with vLLM, `--actor-cpus` CPUs with HF."""
    if args.engine == "vllm":
        return {"num_gpus": args.tensor_parallel_size, "num_cpus": 1}
    return {"num_cpus": args.actor_cpus}


def map_batches_kwargs(args, stage: str, actors: int) -> dict:
    """Everything `Dataset.map_batches` gets: the worker, its constructor arguments, the actor pool, the resources."""
    from ray.data import ActorPoolStrategy

    return {
        "fn": FragmentWorker,
        "fn_constructor_kwargs": {"args": args, "stage": stage},
        "batch_size": 1,  # one fragment per call
        "compute": ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
        **actor_resources(args),
    }


def runtime_env() -> dict:
    """Workers import this checkout (an editable install or PYTHONPATH on the driver) and keep HF offline settings."""
    path = os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    keep = ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VISPLAY_CACHE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return {"env_vars": {"PYTHONPATH": path, **{k: os.environ[k] for k in keep if k in os.environ}}}


@contextmanager
def ray_session(address: str | None = None):
    """Join the Ray cluster (`address`, else $RAY_ADDRESS) or start a local one; disconnect or stop it after. A Ray
    already initialised in this process (a test's cluster) is used as it is and left running."""
    offline_env()
    import ray

    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"runtime_env": runtime_env(), "logging_level": "WARNING", "log_to_driver": True}
    if address is None:
        kwargs["include_dashboard"] = False  # a local Ray for this job only
    ray.init(address=address, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


class FragmentWorker:
    """A Ray Data actor UDF: the engine, loaded once; each call runs one fragment and writes its parquet."""

    def __init__(self, args, stage: str):
        from . import offline

        _configure_threads(args)
        self.args, self.stage, self.offline = args, stage, offline
        _, self.work = offline.stage_plan(args, stage)  # reads the plan the driver recorded
        self.engine = offline.make_engine(args)
        self.actor = f"{socket.gethostname()}:{os.getpid()}"
        self.node = _node_id()

    def __call__(self, batch: dict) -> dict:
        rows = [
            self.offline.write_fragment(self.engine, self.args, self.stage, self.work, int(k))
            for k in batch["fragment"]
        ]
        out = {key: [r[key] for r in rows] for key in ("fragment", "rows", "started", "finished")}
        out["actor"] = [self.actor] * len(rows)
        out["node"] = [self.node] * len(rows)
        return out


def _configure_threads(args) -> None:
    if args.engine == "hf":
        import torch

        if not torch.cuda.is_available():
            torch.set_num_threads(max(1, int(args.actor_cpus)))


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def run_fragments(args, stage: str, todo: list[int]) -> dict:
    """Run fragments `todo` of `stage` on a pool of engine actors; return the per-actor balance (`balance`)."""
    actors = max(1, min(args.engine_actors, len(todo)))  # no actor without a fragment to start with
    with ray_session(args.ray_address) as ray:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S  # all engines loaded before the first fragment
        context.enable_progress_bars = False
        # One operator: nothing to reserve object-store budget for. With the reservation on, Ray Data's output budget
        # for an actor pool holding every CPU reads as spent, and it hands out one fragment at a time (one actor busy).
        context.op_resource_reservation_enabled = False
        fragments = ray.data.from_items([{"fragment": k} for k in todo], override_num_blocks=len(todo))
        started = time.time()
        rows = fragments.map_batches(**map_batches_kwargs(args, stage, actors)).take_all()
        wall = time.time() - started
    report = balance(rows, wall)
    for name, actor in report["actors"].items():
        print(
            f"[infer] {stage} actor {name}: {actor['fragments']} fragments, {actor['rows']} rows, busy "
            f"{actor['busy_s']:.1f}s, idle {actor['idle_share']:.0%} of the {report['window_s']:.1f}s window",
            flush=True,
        )
    return report


def balance(rows: list[dict], wall_s: float | None = None) -> dict:
    """Per-actor fragments, rows, busy seconds and idle share over the window from the first fragment's start to the
    last one's end (model loading is before the window); `wall_s`: the whole pipeline, actor start included."""
    if not rows:
        return {"actors": {}, "window_s": 0.0, "rows": 0, "rows_per_s": 0.0, "wall_s": wall_s}
    start = min(r["started"] for r in rows)
    window = max(max(r["finished"] for r in rows) - start, 1e-9)
    actors: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["started"]):
        a = actors.setdefault(r["actor"], {"node": r["node"], "fragments": 0, "rows": 0, "busy_s": 0.0})
        a["fragments"] += 1
        a["rows"] += int(r["rows"])
        a["busy_s"] += r["finished"] - r["started"]
    for a in actors.values():
        a["idle_share"] = max(0.0, 1.0 - a["busy_s"] / window)
    total = sum(a["rows"] for a in actors.values())
    timeline = [
        [int(r["fragment"]), r["actor"], round(r["started"] - start, 3), round(r["finished"] - start, 3)]
        for r in sorted(rows, key=lambda r: r["started"])
    ]
    return {
        "actors": actors,
        "window_s": window,
        "rows": total,
        "rows_per_s": total / window,
        "wall_s": wall_s,
        "timeline": timeline,  # [fragment, actor, start, end] in seconds from the first start
    }
