"""`python -m verl_ext.eval --run RUN_DIR` or `--model [LABEL=]PATH`: the benchmark table of a run or of models.

    python -m verl_ext.eval --run runs/qwen2.5-vl-7b                       # base + every finished iteration
    python -m verl_ext.eval --model base=Qwen/Qwen2.5-VL-7B-Instruct --model evo=runs/x/iter_3/reasoner_merge
    python -m verl_ext.eval --run R --benchmarks mmmu,mmstar --data mmmu=/data/MMMU --limit 200
    python -m verl_ext.eval --list                                          # the registry: names, sources, splits
    python -m verl_ext.eval --run R --protocol visplay --data-root /data/visplay   # the reference's protocol

Writes `results.json`, `table.md`, `table.csv` and per-item caches into --out (default RUN/eval, or
evals/<label> for --model; RUN/eval-visplay, evals/<label>-visplay under --protocol visplay): a re-run generates,
scores and judges only what is new. docs/eval.md lists the rule each benchmark is scored by.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .benchmarks import DEFAULT_BENCHMARKS, PROTOCOLS, get_benchmark, protocol_benchmarks
from .data import TESTKIT_SOURCE, DataError, DataSource, testkit_data_root
from .generate import GenerationConfig
from .judge import JudgeConfig, JudgeConfigError, official_mmvet_prompt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m verl_ext.eval",
        description="Evaluate VisPlay checkpoints on the paper's benchmarks (greedy decoding with the reasoner "
        "prompt; rule scoring and an optional LLM judge; cached per item).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    what = p.add_argument_group("what to evaluate")
    what.add_argument("--run", help="an evolution run directory: its base model and each finished S_t")
    what.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[LABEL=]PATH",
        help="a model dir or hub name (repeatable); the first is the base for deltas unless --base",
    )
    what.add_argument("--base", help="label of the checkpoint deltas are taken against (default: the first)")
    what.add_argument("--list", action="store_true", help="list the registered benchmarks and exit")
    what.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="official",
        help="official (default): each benchmark's own answer rules; visplay: the reference implementation's data "
        "copies, solver prompt, binary judge on the extracted answer and micro average (docs/eval.md)",
    )
    data = p.add_argument_group("data")
    data.add_argument("--benchmarks", help=f"comma-separated (default: all: {','.join(DEFAULT_BENCHMARKS)})")
    data.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME=SOURCE",
        help="a benchmark's data: parquet file/folder, JSON(L) release folder, or HF dataset name",
    )
    data.add_argument(
        "--data-root",
        help="folder holding <name>/ for each benchmark, or 'testkit' for the offline "
        "fixtures (default: $VISPLAY_EVAL_DATA; 'testkit' for a run on the test kit's images)",
    )
    data.add_argument("--split", action="append", default=[], metavar="NAME=SPLIT", help="override a split")
    data.add_argument("--limit", type=int, help="at most N items per benchmark (dataset order)")
    data.add_argument("--config", help="YAML with benchmarks / data_root / limit / generation / judge sections")
    gen = p.add_argument_group("decoding (defaults: the run's recipe, else the paper's settings)")
    gen.add_argument("--engine", choices=("auto", "hf", "vllm"))
    gen.add_argument("--max-new-tokens", type=int)
    gen.add_argument("--batch-size", type=int)
    gen.add_argument("--min-pixels", type=int)
    gen.add_argument("--max-pixels", type=int)
    gen.add_argument("--tensor-parallel-size", type=int)
    gen.add_argument("--gpu-memory-utilization", type=float)
    gen.add_argument("--prompt-template", help="reasoner Jinja template (default: the run's, else the packaged one)")
    gen.add_argument("--trust-remote-code", action="store_true", default=None)
    j = p.add_argument_group("LLM judge (any OpenAI-compatible endpoint; off unless a model is named)")
    j.add_argument("--judge-model", help="default $VISPLAY_JUDGE_MODEL")
    j.add_argument("--judge-url", help="base URL ending in /v1; default $VISPLAY_JUDGE_URL or $OPENAI_BASE_URL")
    j.add_argument(
        "--judge-api-key-env",
        help="name of the env var holding the key "
        "(default VISPLAY_JUDGE_API_KEY, then OPENAI_API_KEY); keys are never taken on the command line",
    )
    j.add_argument("--judge-concurrency", type=int)
    j.add_argument("--judge-attempts", type=int, help="calls per item before it counts as failed (default 4)")
    j.add_argument("--no-judge", action="store_true", help="rule scoring only, even if the environment names a judge")
    j.add_argument(
        "--mmvet-grader-prompt",
        metavar="FILE",
        help="MM-Vet's official few-shot grader prompt as a text file (default $VISPLAY_MMVET_PROMPT, else an "
        "installed lmms-eval's; without one MM-Vet is graded with our paraphrased rubric and labelled so)",
    )
    p.add_argument("--out", help="output folder (default: RUN/eval, or evals/<first model label>)")
    return p


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        if "=" not in v:
            raise SystemExit(f"error: {what} {v!r}: expected NAME=VALUE")
        k, val = v.split("=", 1)
        out[k.strip()] = val.strip()
    return out


def _default_label(path: str) -> str:
    """The folder name, or its parent's for the loop's generic names (iter_3/reasoner_merge -> iter_3)."""
    p = Path(path.rstrip("/"))
    if p.name in ("reasoner_merge", "questioner_merge", "model", "final", "huggingface") and p.parent.name:
        return p.parent.name
    return p.name or path


def _load_config(path: str | None) -> dict:
    if not path:
        return {}
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(data) - {"benchmarks", "data_root", "limit", "generation", "judge"}
    if unknown:
        raise SystemExit(f"error: {path}: unknown section(s) {sorted(unknown)}")
    return data


def list_benchmarks(protocol: str = "official") -> str:
    lines = [f"{'name':<16}{'title':<16}{'default source':<32}{'split':<12}{'judge':<8}notes"]
    for spec in protocol_benchmarks(protocol).values():
        source = " or ".join(spec.hf_names) if spec.hf_path else "(--data-root)"
        lines.append(
            f"{spec.name:<16}{spec.title:<16}{source:<32}{spec.split or '(all)':<12}{spec.judge_mode:<8}{spec.notes}"
        )
    return "\n".join(lines)


def visplay_sources(args, root: str | None, limit) -> list[DataSource]:
    """The reference's benchmark copies under `root` (protocol_visplay.VISPLAY_SETS); --data NAME=PATH overrides."""
    from .protocol_visplay import VISPLAY_SETS

    names = [n.strip() for n in args.benchmarks.split(",") if n.strip()] if args.benchmarks else list(VISPLAY_SETS)
    for name in names:
        get_benchmark(name, "visplay")
    data = _pairs(args.data, "--data")
    if root is None and any(name not in data for name in names):
        raise DataError(
            "the visplay protocol reads the reference's benchmark copies from a local folder: pass --data-root DIR "
            "(MLLM_test/test.parquet, MMMU/, visnumbench/, hallusionbench/; docs/eval.md), or 'testkit'"
        )
    out = []
    for name in names:
        _, path, file_name = VISPLAY_SETS[name]
        source = data.get(name) or str(Path(root) / path)
        out.append(DataSource(name, source, None, None, limit, file_name if name not in data else None))
    return out


def resolve_sources(args, cfg: dict, run_recipe: dict | None, log=print) -> list[DataSource]:
    section = cfg.get("benchmarks") or {}
    if isinstance(section, list):
        section = {name: {} for name in section}
    names = [n.strip() for n in args.benchmarks.split(",") if n.strip()] if args.benchmarks else list(section)
    names = names or list(DEFAULT_BENCHMARKS)
    for name in names:
        get_benchmark(name)  # unknown names fail here, listing the known ones
    data, splits = _pairs(args.data, "--data"), _pairs(args.split, "--split")
    root = args.data_root or cfg.get("data_root") or os.environ.get("VISPLAY_EVAL_DATA")
    if root is None and run_recipe and (run_recipe.get("images") or {}).get("source") == "testkit":
        root = TESTKIT_SOURCE
        log(
            "[eval] the run uses the test kit's images: evaluating on the test kit's benchmark-shaped fixtures "
            "(a few synthetic items per benchmark, not the real benchmarks); pass --data-root to change"
        )
    if root == TESTKIT_SOURCE:
        root = str(testkit_data_root())
        if args.protocol == "visplay":
            root = str(Path(root) / "visplay")  # the same fixtures, in the reference's copies' layout
    limit = args.limit if args.limit is not None else cfg.get("limit")
    if args.protocol == "visplay":
        return visplay_sources(args, root, limit)
    sources = []
    for name in names:
        spec = get_benchmark(name)
        entry = section.get(name) or {}
        source = data.get(name) or entry.get("source")
        if source is None and root and (Path(root) / name).exists():
            source = str(Path(root) / name)
        sources.append(
            DataSource(
                benchmark=name,
                source=source or spec.hf_path,
                split=splits.get(name, entry.get("split", spec.split)),
                config=entry.get("config", spec.hf_config),
                limit=entry.get("limit", limit),
            )
        )
    return sources


def main(argv: list[str] | None = None) -> int:
    from .runner import Checkpoint, checkpoints_from_run, evaluate, generation_config_from_run, read_run

    args = build_parser().parse_args(argv)
    if args.list:
        print(list_benchmarks(args.protocol))
        return 0
    if not args.run and not args.model:
        print("error: give --run RUN_DIR and/or --model [LABEL=]PATH (see --help)", file=sys.stderr)
        return 2
    cfg = _load_config(args.config)
    gen_overrides = {**(cfg.get("generation") or {})}
    for key in (
        "engine",
        "max_new_tokens",
        "batch_size",
        "min_pixels",
        "max_pixels",
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "prompt_template",
        "trust_remote_code",
    ):
        if getattr(args, key) is not None:
            gen_overrides[key] = getattr(args, key)
    try:
        checkpoints, recipe = [], None
        if args.run:
            recipe, _ = read_run(args.run)
            checkpoints = checkpoints_from_run(args.run)
            gen_cfg = generation_config_from_run(args.run, **gen_overrides)
        else:
            gen_cfg = GenerationConfig(**gen_overrides)
        for spec in args.model:
            label, path = spec.split("=", 1) if "=" in spec else (_default_label(spec), spec)
            from verl_ext.evolve.backend import resolve_model

            checkpoints.append(Checkpoint(label, resolve_model(path)))
        labels = [c.label for c in checkpoints]
        if len(set(labels)) != len(labels):
            raise ValueError(f"checkpoint labels must be unique: {labels}")
        if args.base and args.base not in labels:
            raise ValueError(f"--base {args.base!r} is not one of {labels}")
        jc = {} if args.no_judge else dict(cfg.get("judge") or {})
        judge_cfg = None
        if not args.no_judge:
            extra = {k: v for k, v in jc.items() if k not in ("model", "base_url", "api_key_env")}
            if args.judge_concurrency:
                extra["concurrency"] = args.judge_concurrency
            if args.judge_attempts:
                extra["max_attempts"] = args.judge_attempts
            extra.pop("mmvet_prompt_file", None)
            judge_cfg = JudgeConfig.from_env(
                args.judge_model or jc.get("model"),
                args.judge_url or jc.get("base_url"),
                args.judge_api_key_env or jc.get("api_key_env"),
                **extra,
            )
            if judge_cfg is not None:
                judge_cfg.mmvet_prompt = official_mmvet_prompt(args.mmvet_grader_prompt or jc.get("mmvet_prompt_file"))
        sources = resolve_sources(args, cfg, recipe)
        suffix = "" if args.protocol == "official" else f"-{args.protocol}"  # one protocol never overwrites another
        out = (
            Path(args.out)
            if args.out
            else (Path(args.run) / f"eval{suffix}" if args.run else Path("evals") / f"{labels[0]}{suffix}")
        )
        results = evaluate(checkpoints, sources, out, gen_cfg, judge_cfg, base_label=args.base, protocol=args.protocol)
    except (DataError, JudgeConfigError, FileNotFoundError, KeyError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .table import render_markdown

    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
