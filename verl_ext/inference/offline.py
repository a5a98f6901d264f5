"""Offline batched sampling for the generation and pseudo-labelling stages, in resumable shards.

`generate`: Q_t writes N questions over the images (one request per image, n samples each). `pseudo-label`: S_{t-1}
answers every parsed question m times and the majority vote gives (y*, p). Engines: Hugging Face `generate` (CPU or
GPU, batched) or vLLM (GPU, one engine per group of GPUs, data parallel). Each shard has its own seed and is written
atomically, so a restart redoes only unfinished shards. vLLM and torch are imported only inside the engines.

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

SHARD_DIR = "shards"
TOO_LONG = "too_long"  # the filter reason of a question whose prompt is over --max-prompt-tokens
# Question columns a pseudo-label row carries over unchanged.
CARRIED_COLUMNS = ("id", "source_image_id", "image", "question", "question_type", "iteration", "questioner_checkpoint")
OUTPUT_NAME = {"generate": "questions.parquet", "pseudo_label": "labels.parquet"}


def derive_seed(seed: int, iteration: int, stage: str, shard: int = 0) -> int:
    """The sampling seed of one shard of one stage: a pure function of the run seed and where the work sits."""
    digest = hashlib.sha256(f"{seed}/{iteration}/{stage}/{shard}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


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
    """`columns` of the given rows (ascending indices) of a parquet file, streamed batch by batch: a worker holds
    only its own shard's images, never the whole file."""
    wanted = iter(rows)
    nxt = next(wanted, None)
    out: dict[str, list] = {c: [] for c in columns}
    offset = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=columns):
        end = offset + batch.num_rows
        take = []
        while nxt is not None and nxt < end:
            take.append(nxt - offset)
            nxt = next(wanted, None)
        if take:
            part = batch.take(pa.array(take)).to_pydict()
            for c in columns:
                out[c].extend(part[c])
        offset = end
        if nxt is None:
            break
    return out


def generation_plan(args) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """(image rows asked about, questions per chosen image, shard ranges over the chosen images)."""
    num_images = pq.ParquetFile(args.images).metadata.num_rows
    if not num_images:
        raise SystemExit(f"{args.images}: no images")
    chosen = select_images(num_images, args.num_questions, args.images_per_iteration, args.seed, args.iteration)
    counts = questions_per_image(len(chosen), args.num_questions)
    return chosen, counts, split_weighted(counts, args.shards)


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
    seed = derive_seed(args.seed, args.iteration, "generate", shard)
    rows = {name: [] for name in QUESTION_SCHEMA.names}
    # Requests ask for the largest count in the shard; extra samples are dropped (counts differ by at most one).
    n = max((counts[i] for i in idx), default=0)
    sampling = Sampling(n, args.temperature, args.top_p, args.top_k, args.max_new_tokens)
    outputs = engine.sample(requests, sampling, seed) if requests else []
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
    seed = derive_seed(args.seed, args.iteration, "pseudo_label", shard)
    sampling = Sampling(args.m, args.temperature, args.top_p, args.top_k, args.max_new_tokens)
    responses = engine.sample(requests, sampling, seed) if requests else []
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


def _run_shards(args, stage: str, ranges: list[tuple[int, int]], work) -> list[int]:
    """Run the unfinished shards of this worker (rank/world for data parallelism); return those it ran."""
    out_dir = Path(args.out_dir)
    todo = [s for s in range(len(ranges)) if s % args.world == args.rank and not _shard_path(out_dir, s).exists()]
    if not todo:
        return []
    engine = make_engine(args)
    for s in todo:
        started = time.monotonic()
        table = work(engine, s, ranges[s])
        _write_atomic(table, _shard_path(out_dir, s))
        print(f"[infer] {stage} shard {s}: {table.num_rows} rows in {time.monotonic() - started:.1f}s", flush=True)
    return todo


def _data_parallel(args) -> None:
    """Run `args.data_parallel_size` copies of this command, each on its own slice of the visible GPUs."""
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        devices = [d for d in visible.split(",") if d.strip()]
    else:
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())]
    tp, dp = args.tensor_parallel_size, args.data_parallel_size
    if len(devices) < tp * dp:
        raise SystemExit(
            f"--data-parallel-size {dp} x --tensor-parallel-size {tp} needs {tp * dp} GPUs on this node; "
            f"{len(devices)} visible. Generation and pseudo-labelling run on one node (the head node of a multi-node "
            "run): set resources.inference_gpus to at most the GPUs this node has (a multiple of "
            "resources.inference_tensor_parallel_size)"
        )
    procs = []
    for rank in range(dp):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(devices[rank * tp : (rank + 1) * tp])}
        cmd = [sys.executable, "-m", "verl_ext.inference", *args.argv, "--rank", str(rank), "--world", str(dp)]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"data-parallel workers exited with {codes}")


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
    args.argv = argv
    stage = "generate" if args.command == "generate" else "pseudo_label"
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / OUTPUT_NAME[stage]).is_file() and (out_dir / "provenance.json").is_file() and args.world == 1:
        print(f"[infer] {stage}: already complete in {out_dir}", flush=True)  # written last, so complete
        return 0
    if args.engine == "vllm" and args.data_parallel_size > 1 and args.world == 1:
        _data_parallel(args)  # workers write the shards; this process combines them below
    elif stage == "generate":
        chosen, counts, ranges = generation_plan(args)

        def work(eng, s, r):  # reads only this shard's images
            images = read_rows(args.images, chosen[r[0] : r[1]], ["id", "image"])
            return generate_shard(eng, args, s, images, counts[r[0] : r[1]])

        _run_shards(args, stage, ranges, work)
    else:
        ranges = split(pq.ParquetFile(args.questions).metadata.num_rows, args.shards)

        def work(eng, s, r):
            return pseudo_label_shard(eng, args, s, read_rows(args.questions, list(range(*r)), list(CARRIED_COLUMNS)))

        _run_shards(args, stage, ranges, work)
    if args.world > 1:
        return 0  # a data-parallel worker: the parent combines
    if stage == "generate":
        n_shards = len(generation_plan(args)[2])
    else:
        n_shards = len(split(pq.ParquetFile(args.questions).metadata.num_rows, args.shards))
    total = _combine(args, stage, n_shards, QUESTION_SCHEMA if stage == "generate" else LABEL_SCHEMA)
    provenance = {
        "stage": stage,
        "model": args.model,
        "iteration": args.iteration,
        "engine": args.engine,
        "seed": args.seed,
        "shard_seeds": [derive_seed(args.seed, args.iteration, stage, s) for s in range(n_shards)],
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
    common.add_argument("--data-parallel-size", type=int, default=1)
    common.add_argument("--tensor-parallel-size", type=int, default=1)
    common.add_argument("--gpu-memory-utilization", type=float, default=0.8)
    common.add_argument("--trust-remote-code", action="store_true")
    common.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    common.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
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
