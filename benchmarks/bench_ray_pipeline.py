"""Generation on the Ray Data runner: items/s with 1 vs 2 HF engine actors (tiny VLM, CPU), side by side, with the
scaling ratio and each actor's idle share. Exits 1 if the two runs' rows differ (they must not: seeds are per item).

One local Ray (`--cpus`, default 2) for both runs; each actor gets 1 CPU and 1 torch thread. Items/s counts the
window from the first fragment's start to the last one's end (model loading is before it); `wall` adds Ray Data's
start and the actors' model loading. Idle share: the part of that window an actor had no fragment.

    python benchmarks/bench_ray_pipeline.py            # 48 questions, 64 new tokens each
    python benchmarks/bench_ray_pipeline.py --quick    # CI smoke: 8 questions, 16 tokens
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from verl_ext.inference import offline, ray_pipeline
from verl_ext.tiny.images import write_image_parquet
from verl_ext.tiny.tiny_vlm import tiny_vlm_path


def run(actors: int, model: Path, images: Path, out: Path, questions: int, tokens: int) -> dict:
    argv = [
        "generate", "--model", str(model), "--images", str(images), "--out-dir", str(out),
        "--num-questions", str(questions), "--shards", "8", "--max-new-tokens", str(tokens),
        "--engine", "hf", "--runner", "ray", "--engine-actors", str(actors), "--actor-cpus", "1",
        "--min-pixels", "3136", "--max-pixels", "12544", "--iteration", "1", "--seed", "1",
    ]  # fmt: skip
    if offline.main(argv):
        raise SystemExit(f"the {actors}-actor run failed")
    return json.loads((out / "provenance.json").read_text())["pipeline"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a CI smoke run: 8 questions of 16 tokens")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = parser.parse_args()
    questions, tokens = (8, 16) if args.quick else (48, 64)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ray_pipeline.offline_env()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tiny_vlm_path()
        images = write_image_parquet(tmp / "images.parquet", n=questions, seed=0)
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR",
                 runtime_env=ray_pipeline.runtime_env())  # fmt: skip
        try:
            reports = {n: run(n, model, images, tmp / f"actors{n}", questions, tokens) for n in (1, 2)}
        finally:
            ray.shutdown()
        one, two = (pq.read_table(tmp / f"actors{n}/questions.parquet") for n in (1, 2))
        same = one.equals(two)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nGeneration, tiny VLM, HF engine actors on a local Ray ({args.cpus} CPUs); {os.cpu_count()} cores, "
          f"load {load:.1f}; {questions} questions x {tokens} new tokens, 8 fragments\n")  # fmt: skip
    print("| engine actors | items | window (s) | items/s | wall (s) | fragments per actor | idle share per actor |")
    print("|---:|---:|---:|---:|---:|:---|:---|")
    for n, r in reports.items():
        actors = list(r["actors"].values())
        frags = " / ".join(str(a["fragments"]) for a in actors)
        idle = " / ".join(f"{a['idle_share']:.0%}" for a in actors)
        timing = f"{r['window_s']:.1f} | {r['rows_per_s']:.2f} | {r['wall_s']:.1f}"
        print(f"| {n} | {r['rows']} | {timing} | {frags} | {idle} |")
    ratio = reports[2]["rows_per_s"] / reports[1]["rows_per_s"]
    verdict = "yes" if same else "NO"
    print(f"\nscaling ratio, 2 vs 1 engine actors: {ratio:.2f}x (ideal 2.00x); identical rows: {verdict}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
