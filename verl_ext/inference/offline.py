"""Offline batched sampling for the generation and pseudo-labelling stages, in resumable shards.

`generate`: Q_t writes N questions over the images (one request per image, n samples each). `pseudo-label`: S_{t-1}
answers every parsed question m times and the majority vote gives (y*, p). Engines: Hugging Face `generate` (CPU or
GPU, batched) or vLLM (GPU). Runners: `ray` (default; `ray_pipeline`: a Ray Data pipeline with one engine actor per
GPU or tensor-parallel group on every node of the cluster, or of a local Ray started for the job) or `inprocess` (one
engine in this process, the fallback). The work is cut into fragments (`fragments`), each written atomically, so a
restart redoes only unfinished ones; every request is sampled with its own seed, derived from the run seed and the
item's id, so the rows do not depend on the runner, the fragments or the engine count. vLLM, torch and Ray are
imported only where they run.

    python -m verl_ext.inference generate --model Q --images images.parquet --out-dir D --num-questions N ...
    python -m verl_ext.inference pseudo-label --model S --questions questions.parquet --out-dir D --m 9 ...
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.atomic_io import atomic_write_json
from verl_ext.visplay.records import PSEUDO_LABEL_COLUMNS, QUESTION_COLUMNS

from .engines import HFEngine, Request, Sampling, VLLMEngine
from .fragments import SHARD_DIR, fragment_count, remove_stale_temps

TOO_LONG = "too_long"  # the filter reason of a question whose prompt is over --max-prompt-tokens
# Question columns a pseudo-label row carries over unchanged.
CARRIED_COLUMNS = ("id", "source_image_id", "image", "question", "question_type", "iteration", "questioner_checkpoint")
OUTPUT_NAME = {"generate": "questions.parquet", "pseudo_label": "labels.parquet"}


def derive_seed(seed: int, iteration: int, stage: str, shard: int | str = 0) -> int:
    """The sampling seed of one shard of one stage: a pure function of the run seed and where the work sits."""
    digest = hashlib.sha256(f"{seed}/{iteration}/{stage}/{shard}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def item_seed(seed: int, iteration: int, stage: str, item_id: str) -> int:
    """The sampling seed of one request: the run seed and the item's id (image or question), never its fragment."""
    return derive_seed(seed, iteration, stage, f"item/{item_id}")


def make_engine(args) -> HFEngine | VLLMEngine:
    if args.engine == "hf":
        return HFEngine(args.model, trust_remote_code=args.trust_remote_code, batch_size=args.batch_size)
    return VLLMEngine(
        args.model,
        tensor_parallel_size=args.tensor_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        trust_remote_code=args.trust_remote_code,
    )


def _load_image(value, args):
    from verl_ext.image_io import load_image  # the training datasets' decoder: same resize, same RGB conversion

    return load_image(value, args.min_pixels, args.max_pixels)


# --------------------------------------------------------------------------------------------------
# Work split
# --------------------------------------------------------------------------------------------------


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous [start, end) ranges covering range(n), sizes differing by at most one (no empty ones)."""
    parts = max(1, min(parts, n)) if n else 1
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        end = start + base + (1 if i < extra else 0)
        out.append((start, end))
        start = end
    return [r for r in out if r[1] > r[0]]


def split_weighted(weights: list[int], parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges over `weights` whose sums are as equal as contiguity allows (no empty range):
    shards of near-equal question counts. Equal weights give exactly `split`'s ranges."""
    n = len(weights)
    if n == 0 or len(set(weights)) <= 1:
        return split(n, parts)
    parts = max(1, min(parts, n))
    total = sum(weights)
    cuts, cum, j = [], 0, 1
    for i, w in enumerate(weights):
        cum += w
        # cut after item i once the running sum reaches the j-th share, leaving at least one item per later range
        while j < parts and cum * parts >= total * j and n - (i + 1) >= parts - j:
            if not cuts or cuts[-1] != i + 1:
                cuts.append(i + 1)
            j += 1
    bounds = [0, *cuts, n]
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def select_images(num_images: int, num_questions: int, per_iteration: int | None, seed: int, iteration: int):
    """Row indices (ascending) of the images asked about this iteration: `per_iteration` of them (default: one per
    question), a fresh seeded subset each iteration when the source has more; every image when it has no more."""
    k = min(num_images, per_iteration or num_questions)
    if k >= num_images:
        return list(range(num_images))
    rng = random.Random(derive_seed(seed, iteration, "images"))
    return sorted(rng.sample(range(num_images), k))


def read_rows(path: str | Path, rows: list[int], columns: list[str]) -> dict[str, list]:
    """`columns` of the given rows (ascending indices) of a parquet file, reading only the row groups that hold them
    (the images stage writes groups of 64 rows): a fragment's engine reads its own images, not the whole file."""
    file = pq.ParquetFile(path)
    out: dict[str, list] = {c: [] for c in columns}
    i, offset = 0, 0
    for group in range(file.metadata.num_row_groups):
        if i == len(rows):
            break
        end = offset + file.metadata.row_group(group).num_rows
        take = []
        while i < len(rows) and rows[i] < end:
            take.append(rows[i] - offset)
            i += 1
        if take:
            part = file.read_row_group(group, columns=columns).take(pa.array(take)).to_pydict()
            for c in columns:
                out[c].extend(part[c])
        offset = end
    return out


def generation_plan(args, parts=None) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """(image rows asked about, questions per chosen image, shard ranges over the chosen images). `parts`: the number
    of ranges as a function of the number of chosen images (default: `args.shards`)."""
    num_images = pq.ParquetFile(args.images).metadata.num_rows
    if not num_images:
        raise SystemExit(f"{args.images}: no images")
    chosen = select_images(num_images, args.num_questions, args.images_per_iteration, args.seed, args.iteration)
    counts = questions_per_image(len(chosen), args.num_questions)
    return chosen, counts, split_weighted(counts, parts(len(chosen)) if parts else args.shards)


def questions_per_image(num_images: int, num_questions: int) -> list[int]:
    """N questions spread over the images: N // n each, the first N % n images one more (8000 over 1000 = 8 each)."""
    base, extra = divmod(num_questions, num_images)
    return [base + (1 if i < extra else 0) for i in range(num_images)]


def _shard_path(out_dir: Path, shard: int) -> Path:
    return out_dir / SHARD_DIR / f"shard-{shard:05d}.parquet"


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, write_page_checksum=True)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------

QUESTION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source_image_id", pa.string()),
        ("image", pa.binary()),
        ("raw_output", pa.string()),
        ("question", pa.string()),
        ("question_type", pa.string()),
        ("questioner_answer", pa.string()),
        ("iteration", pa.int64()),
        ("questioner_checkpoint", pa.string()),
        ("shard", pa.int64()),
    ]
)
LABEL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source_image_id", pa.string()),
        ("image", pa.binary()),
        ("question", pa.string()),
        ("question_type", pa.string()),
        ("pseudo_label", pa.string()),
        ("confidence", pa.float64()),
        ("num_samples", pa.int64()),
        ("iteration", pa.int64()),
        ("questioner_checkpoint", pa.string()),
        ("filter_reason", pa.string()),
        ("num_unparsed", pa.int64()),
        ("answers", pa.list_(pa.string())),  # the m extracted \boxed{} answers (None when unparsable)
        ("reasoner_checkpoint", pa.string()),
        ("shard", pa.int64()),
    ]
)
assert tuple(QUESTION_SCHEMA.names[: len(QUESTION_COLUMNS)]) == QUESTION_COLUMNS
assert tuple(LABEL_SCHEMA.names[: len(PSEUDO_LABEL_COLUMNS)]) == PSEUDO_LABEL_COLUMNS


def generate_shard(engine, args, shard: int, images: dict, counts: list[int]) -> pa.Table:
    """Questions over one shard's images (`images`: its rows, `counts`: questions per image, aligned)."""
    from verl_ext.prompts import render_questioner_prompt
    from verl_ext.visplay import parse_question

    prompt = render_questioner_prompt(args.prompt_template)
    idx = [i for i in range(len(counts)) if counts[i] > 0]
    requests = [Request(prompt, _load_image(images["image"][i], args)) for i in idx]
    seeds = [item_seed(args.seed, args.iteration, "generate", images["id"][i]) for i in idx]
    rows = {name: [] for name in QUESTION_SCHEMA.names}
    # Requests ask for the largest count in the shard; extra samples are dropped (counts differ by at most one).
    n = max((counts[i] for i in idx), default=0)
    sampling = Sampling(n, args.temperature, args.top_p, args.top_k, args.max_new_tokens)
    outputs = engine.sample(requests, sampling, seeds) if requests else []
    for i, texts in zip(idx, outputs, strict=True):
        for j, text in enumerate(texts[: counts[i]]):
            parsed = parse_question(text)
            rows["id"].append(f"{images['id'][i]}/{args.iteration}/{j}")
            rows["source_image_id"].append(str(images["id"][i]))
            rows["image"].append(images["image"][i])
            rows["raw_output"].append(text)
            rows["question"].append(parsed.question if parsed else None)
            rows["question_type"].append(parsed.type if parsed else None)
            rows["questioner_answer"].append(parsed.answer if parsed else None)
            rows["iteration"].append(args.iteration)
            rows["questioner_checkpoint"].append(args.questioner_checkpoint or args.model)
            rows["shard"].append(shard)
    return pa.table(rows, schema=QUESTION_SCHEMA)


def over_prompt_limit(engine, requests: dict, args) -> list:
    """Keys of the requests whose prompt (text tokens + chat template + the image's visual tokens) exceeds
    `args.max_prompt_tokens` (0 = no limit): they are not sampled but kept as rows with filter_reason `too_long`, so an
    over-long question can neither exhaust memory nor vanish uncounted."""
    from verl_ext.image_io import prompt_tokens

    limit = getattr(args, "max_prompt_tokens", 0) or 0
    if limit <= 0:
        return []
    return [
        key
        for key, r in requests.items()
        if prompt_tokens(engine.text_tokens(r.prompt), r.image, args.min_pixels, args.max_pixels) > limit
    ]


def pseudo_label_shard(engine, args, shard: int, questions: dict) -> pa.Table:
    """Votes over one shard's questions (`questions`: its rows only); over-long prompts are counted, not sampled."""
    from verl_ext.prompts import render_reasoner_prompt
    from verl_ext.visplay import extract_boxed
    from verl_ext.visplay.voting import majority_vote_batch

    rows = {name: [] for name in LABEL_SCHEMA.names}
    lo, hi = 0, len(questions["id"])
    parsed = [i for i in range(lo, hi) if questions["question"][i] is not None]
    requests = {
        i: Request(
            render_reasoner_prompt(questions["question"][i], args.prompt_template, questions["question_type"][i]),
            _load_image(questions["image"][i], args),
        )
        for i in parsed
    }
    too_long = set(over_prompt_limit(engine, requests, args))
    parsed = [i for i in parsed if i not in too_long]
    requests = [requests[i] for i in parsed]
    seeds = [item_seed(args.seed, args.iteration, "pseudo_label", questions["id"][i]) for i in parsed]
    sampling = Sampling(args.m, args.temperature, args.top_p, args.top_k, args.max_new_tokens)
    responses = engine.sample(requests, sampling, seeds) if requests else []
    votes = dict(zip(parsed, majority_vote_batch(responses), strict=True))
    answers = dict(zip(parsed, ([extract_boxed(t) for t in r] for r in responses), strict=True))
    for i in range(lo, hi):
        for col in CARRIED_COLUMNS:
            rows[col].append(questions[col][i])
        vote = votes.get(i)
        rows["pseudo_label"].append(vote.answer if vote else None)
        rows["confidence"].append(vote.confidence if vote else None)
        rows["num_samples"].append(vote.num_responses if vote else 0)
        rows["num_unparsed"].append(vote.num_unparsed if vote else 0)
        rows["answers"].append(answers.get(i))
        rows["filter_reason"].append(TOO_LONG if i in too_long else None)
        rows["reasoner_checkpoint"].append(args.model)
        rows["shard"].append(shard)
    return pa.table(rows, schema=LABEL_SCHEMA)


def stage_plan(args, stage: str):
    """(fragment ranges, work(engine, k) -> the rows of fragment k) of a stage; the ranges are fixed on its first
    start (`fragments.fragment_count`). Work reads only its own fragment's rows of the input parquet."""
    out_dir, actors = Path(args.out_dir), args.engine_actors
    if stage == "generate":
        chosen, counts, ranges = generation_plan(
            args, lambda items: fragment_count(out_dir, stage, items, args.shards, actors)
        )

        def work(engine, k: int) -> pa.Table:
            a, b = ranges[k]
            return generate_shard(engine, args, k, read_rows(args.images, chosen[a:b], ["id", "image"]), counts[a:b])

    else:
        items = pq.ParquetFile(args.questions).metadata.num_rows
        ranges = split(items, fragment_count(out_dir, stage, items, args.shards, actors))

        def work(engine, k: int) -> pa.Table:
            rows = read_rows(args.questions, list(range(*ranges[k])), list(CARRIED_COLUMNS))
            return pseudo_label_shard(engine, args, k, rows)

    return ranges, work


def write_fragment(engine, args, stage: str, work, k: int) -> dict:
    """Run fragment k and rename its parquet into place; the timing row the pipeline's balance report reads."""
    started = time.time()
    table = work(engine, k)
    _write_atomic(table, _shard_path(Path(args.out_dir), k))
    finished = time.time()
    print(f"[infer] {stage} fragment {k}: {table.num_rows} rows in {finished - started:.1f}s", flush=True)
    return {"fragment": k, "rows": table.num_rows, "started": started, "finished": finished}


def run_in_process(args, stage: str, todo: list[int], work) -> None:
    """The fallback runner: one engine in this process, the fragments in order."""
    engine = make_engine(args)
    for k in todo:
        write_fragment(engine, args, stage, work, k)


def _combine(args, stage: str, n_shards: int, schema: pa.Schema) -> int:
    out_dir = Path(args.out_dir)
    final = out_dir / OUTPUT_NAME[stage]
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    total = 0
    with pq.ParquetWriter(tmp, schema, write_page_checksum=True) as writer:
        for s in range(n_shards):
            table = pq.read_table(_shard_path(out_dir, s)).cast(schema)
            writer.write_table(table)
            total += table.num_rows
    os.replace(tmp, final)
    return total


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    stage = "generate" if args.command == "generate" else "pseudo_label"
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / OUTPUT_NAME[stage]).is_file() and (out_dir / "provenance.json").is_file():
        print(f"[infer] {stage}: already complete in {out_dir}", flush=True)  # written last, so complete
        return 0
    ranges, work = stage_plan(args, stage)
    remove_stale_temps(out_dir)
    todo = [k for k in range(len(ranges)) if not _shard_path(out_dir, k).exists()]
    print(f"[infer] {stage}: {len(todo)} of {len(ranges)} fragments to run ({args.runner} runner)", flush=True)
    pipeline = None
    if todo and args.runner == "ray":
        from .ray_pipeline import run_fragments

        pipeline = run_fragments(args, stage, todo)
    elif todo:
        run_in_process(args, stage, todo, work)
    total = _combine(args, stage, len(ranges), QUESTION_SCHEMA if stage == "generate" else LABEL_SCHEMA)
    provenance = {
        "stage": stage,
        "model": args.model,
        "iteration": args.iteration,
        "engine": args.engine,
        "runner": args.runner,
        "engine_actors": args.engine_actors,
        "fragments": len(ranges),
        "seed": args.seed,
        "seeds": "per request: item_seed(seed, iteration, stage, item id); sample j: engines.sample_seed",
        "sampling": asdict(
            Sampling(
                args.m if stage == "pseudo_label" else 0, args.temperature, args.top_p, args.top_k, args.max_new_tokens
            )  # fmt: skip
        ),
        "min_pixels": args.min_pixels,
        "max_pixels": args.max_pixels,
        "prompt_template": args.prompt_template,
        "inputs": args.images if stage == "generate" else args.questions,
        "images_per_iteration": getattr(args, "images_per_iteration", None),
        "rows": total,
        "max_prompt_tokens": getattr(args, "max_prompt_tokens", None),
        "pipeline": pipeline,  # the last start's per-actor balance (ray runner)
    }
    atomic_write_json(out_dir / "provenance.json", provenance)
    print(f"[infer] {stage}: {total} rows -> {out_dir / OUTPUT_NAME[stage]}", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verl_ext.inference", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True)
    common.add_argument("--out-dir", required=True)
    common.add_argument("--iteration", type=int, required=True)
    common.add_argument("--seed", type=int, default=1)
    common.add_argument("--shards", type=int, default=8)
    common.add_argument("--temperature", type=float, default=1.0)
    common.add_argument("--top-p", type=float, default=1.0)
    common.add_argument("--top-k", type=int, default=-1)
    common.add_argument("--max-new-tokens", type=int, default=1024)
    common.add_argument("--min-pixels", type=int, default=262144)
    common.add_argument("--max-pixels", type=int, default=4194304)
    common.add_argument("--prompt-template", default=None)
    common.add_argument("--engine", choices=("hf", "vllm"), default="vllm")
    common.add_argument("--batch-size", type=int, default=8, help="hf engine: requests per generate call")
    common.add_argument("--tensor-parallel-size", type=int, default=1)
    common.add_argument("--gpu-memory-utilization", type=float, default=0.8)
    common.add_argument("--trust-remote-code", action="store_true")
    common.add_argument(
        "--runner",
        choices=("ray", "inprocess"),
        default="ray",
        help="ray: engine actors over the Ray cluster (RAY_ADDRESS, else a local Ray for this job); inprocess: one "
        "engine in this process",
    )
    common.add_argument(
        "--engine-actors",
        type=int,
        default=1,
        help="ray runner: engine actors (vllm: one per --tensor-parallel-size GPUs; hf: --actor-cpus CPUs each)",
    )
    common.add_argument("--actor-cpus", type=float, default=1.0, help="ray runner: CPUs per engine actor")
    common.add_argument("--ray-address", default=None, help="ray runner: cluster address (default: $RAY_ADDRESS)")
    g = sub.add_parser("generate", parents=[common], help="questions from the questioner")
    g.add_argument("--images", required=True)
    g.add_argument("--num-questions", type=int, required=True)
    g.add_argument("--questioner-checkpoint", default=None)
    g.add_argument(
        "--images-per-iteration",
        type=int,
        default=None,
        help="images asked about (a fresh seeded subset per iteration); default: one per question",
    )
    pl = sub.add_parser("pseudo-label", parents=[common], help="majority-vote pseudo-labels from the reasoner")
    pl.add_argument("--questions", required=True)
    pl.add_argument("--m", type=int, required=True)
    pl.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=0,
        help="questions whose prompt (text + image tokens) is longer are not sampled: too_long (0 = off)",
    )
    return p


if __name__ == "__main__":
    sys.exit(main())
