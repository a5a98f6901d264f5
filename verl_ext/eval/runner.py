"""Evaluate checkpoints on benchmarks: greedy responses, rule scores and judge verdicts, each cached per item.

`checkpoints_from_run(run_dir)` lists the base model and every finished iteration's reasoner S_t of an evolution
run; `evaluate(...)` fills the caches under `out_dir/cache/` for whatever is missing and writes `results.json`,
`table.md` and `table.csv` (see `table.py`). A model is loaded only when one of its items has no cached response.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from verl_ext.atomic_io import atomic_write_json

from .benchmarks import Benchmark, EvalItem, get_benchmark
from .cache import JsonlStore, digest, model_fingerprint
from .data import DataSource, load_items
from .generate import GenerationConfig, combine_images, generate_for_checkpoint, render_prompt
from .judge import JudgeClient, JudgeConfig, judge_prompt
from .scoring import SCORER_VERSION, score_response

RESULTS_NAME = "results.json"
QUESTION_TYPE = {"choice": "multiple choice", "math": "numerical"}  # the reasoner template's question_type


@dataclass(frozen=True)
class Checkpoint:
    label: str  # "base", "iter_1", ... or a name given on the command line
    path: str
    iteration: int | None = None  # 0 for the base model of a run

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.path)


def read_run(run_dir: str | Path) -> tuple[dict, dict]:
    """(recipe, manifest) of a run directory, as plain dicts (empty when missing)."""
    import yaml

    run_dir = Path(run_dir)
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text()) if (run_dir / "recipe.yaml").is_file() else {}
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").is_file() else {}
    return recipe or {}, manifest or {}


def checkpoints_from_run(run_dir: str | Path) -> list[Checkpoint]:
    """The base model (after the format warm-up, when the run has one) and S_t for every finished iteration t."""
    from verl_ext.evolve.backend import resolve_model
    from verl_ext.evolve.stages import RunLayout

    run_dir = Path(run_dir).resolve()
    recipe, manifest = read_run(run_dir)
    if not manifest:
        raise FileNotFoundError(f"{run_dir}: no manifest.json (not an evolution run directory)")
    stages = manifest.get("stages", {})
    layout = RunLayout(run_dir)

    def done(key: str) -> bool:
        return stages.get(key, {}).get("state") == "done"

    if done("0:warmup") and layout.output(0, "warmup", "model").is_dir():
        base = str(layout.output(0, "warmup", "model"))
    else:
        base = resolve_model(str((recipe.get("model") or {}).get("base") or ""))
        if not base:
            raise ValueError(f"{run_dir}: recipe.yaml names no model.base")
    out = [Checkpoint("base", base, 0)]
    iterations = int(manifest.get("iterations") or recipe.get("iterations") or 0)
    for t in range(1, iterations + 1):
        path = layout.output(t, "reasoner_merge", "model")
        if done(f"{t}:reasoner_merge") and path.is_dir():
            out.append(Checkpoint(f"iter_{t}", str(path), t))
    return out


def generation_config_from_run(run_dir: str | Path, **overrides) -> GenerationConfig:
    """Decoding settings of a run: its pixel bounds, reasoner prompt and reasoner response length."""
    recipe, _ = read_run(run_dir)
    images = recipe.get("images") or {}
    reasoner = (recipe.get("reasoner") or {}).get("grpo") or {}
    cfg = GenerationConfig(
        min_pixels=int(images.get("min_pixels", GenerationConfig.min_pixels)),
        max_pixels=int(images.get("max_pixels", GenerationConfig.max_pixels)),
        max_new_tokens=int(reasoner.get("max_response_length", GenerationConfig.max_new_tokens)),
        trust_remote_code=bool((recipe.get("model") or {}).get("trust_remote_code", False)),
        prompt_template=(recipe.get("prompts") or {}).get("reasoner"),
    )
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    return cfg


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


@dataclass
class _Bench:
    spec: Benchmark
    source: DataSource
    items: list[EvalItem]
    summary: dict
    prompts: list[str]


def _response_key(ckpt_fp: str, bench: _Bench, item: EvalItem, prompt: str, gen: GenerationConfig) -> str:
    return digest("response", ckpt_fp, bench.source.source, bench.source.split, item.id, prompt, gen.output_key())


def _rule_key(item: EvalItem, response: str) -> str:
    return digest("rule", SCORER_VERSION, item.answer_type, item.answer, item.choices, response)


def evaluate(
    checkpoints: list[Checkpoint],
    sources: list[DataSource],
    out_dir: str | Path,
    gen_cfg: GenerationConfig,
    judge_cfg: JudgeConfig | None = None,
    *,
    base_label: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Score every checkpoint on every benchmark (only new items are generated/scored/judged); write the results."""
    from .table import write_tables

    out_dir = Path(out_dir)
    cache_root = out_dir / "cache"
    started = time.monotonic()
    benches: list[_Bench] = []
    for source in sources:
        spec = get_benchmark(source.benchmark)
        items, summary = load_items(spec, source)
        prompts = [render_prompt(it.question, gen_cfg, QUESTION_TYPE.get(it.answer_type)) for it in items]
        benches.append(_Bench(spec, source, items, summary, prompts))
        split = f" (split {source.split})" if source.split else ""
        log(f"[eval] {spec.title}: {summary['items']} items from {source.source}{split}")

    results: dict = {
        "checkpoints": [],
        "base": base_label or (checkpoints[0].label if checkpoints else None),
        "benchmarks": [b.spec.name for b in benches],
        "titles": {b.spec.name: b.spec.title for b in benches},
        "data": {b.spec.name: {**b.source.describe(), **b.summary} for b in benches},
        "generation": {**asdict(gen_cfg), "engine": gen_cfg.resolved_engine()},
        "judge": judge_cfg.describe() if judge_cfg else None,
        "scores": {b.spec.name: {} for b in benches},
    }
    judge = JudgeClient(judge_cfg) if judge_cfg else None
    try:
        for ckpt in checkpoints:
            fp = ckpt.fingerprint
            results["checkpoints"].append({**asdict(ckpt), "fingerprint": fp})
            ckpt_dir = cache_root / f"{ckpt.label}-{fp}"
            stores = {
                b.spec.name: {
                    kind: JsonlStore(ckpt_dir / b.spec.name / f"{kind}.jsonl")
                    for kind in ("responses", "rule", "judge")
                }
                for b in benches
            }
            _fill_responses(ckpt, fp, benches, stores, gen_cfg, log)
            for b in benches:
                results["scores"][b.spec.name][ckpt.label] = _score(
                    ckpt, fp, b, stores[b.spec.name], gen_cfg, judge, judge_cfg, log
                )
    finally:
        if judge is not None:
            judge.close()
    results["seconds"] = round(time.monotonic() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / RESULTS_NAME, results)
    write_tables(results, out_dir)
    log(f"[eval] results: {out_dir / RESULTS_NAME}, table: {out_dir / 'table.md'}")
    return results


def _fill_responses(ckpt, fp, benches, stores, gen_cfg, log) -> None:
    """Generate every missing response of this checkpoint in one engine session, caching per benchmark."""
    pending: list[tuple[_Bench, EvalItem, str, str]] = []
    for b in benches:
        store = stores[b.spec.name]["responses"]
        for item, prompt in zip(b.items, b.prompts, strict=True):
            key = _response_key(fp, b, item, prompt, gen_cfg)
            if key not in store:
                pending.append((b, item, prompt, key))
    total = sum(len(b.items) for b in benches)
    if not pending:
        log(f"[eval] {ckpt.label}: all {total} responses cached")
        return
    log(f"[eval] {ckpt.label}: generating {len(pending)} of {total} responses ({ckpt.path})")
    started = time.monotonic()
    images = [combine_images(item.images, gen_cfg) for _, item, _, _ in pending]
    responses = generate_for_checkpoint(ckpt.path, gen_cfg, [p for _, _, p, _ in pending], images, log)
    by_bench: dict[str, list[dict]] = {}
    for (b, item, _, key), response in zip(pending, responses, strict=True):
        by_bench.setdefault(b.spec.name, []).append({"key": key, "id": item.id, "response": response})
    for name, records in by_bench.items():
        stores[name]["responses"].put_many(records)
    log(f"[eval] {ckpt.label}: {len(pending)} responses in {time.monotonic() - started:.1f}s")


def _score(ckpt, fp, b: _Bench, stores, gen_cfg, judge, judge_cfg, log) -> dict:
    responses, rules, verdicts = stores["responses"], stores["rule"], stores["judge"]
    rule_scores, new_rules, parsed = [], [], 0
    judge_jobs: list[tuple[str, str, str]] = []
    judge_keys: list[str] = []
    for item, prompt in zip(b.items, b.prompts, strict=True):
        response = responses.get(_response_key(fp, b, item, prompt, gen_cfg))["response"]
        rkey = _rule_key(item, response)
        rec = rules.get(rkey)
        if rec is None:
            result = score_response(item, response)
            rec = {"key": rkey, "id": item.id, **result.to_dict()}
            new_rules.append(rec)
        rule_scores.append(float(rec["score"]))
        parsed += rec["source"] != "none"
        if judge is not None:
            jprompt = judge_prompt(item, response, b.spec.judge_mode)
            jkey = digest("judge", judge_cfg.cache_identity(), b.spec.judge_mode, jprompt)
            judge_keys.append(jkey)
            if jkey not in verdicts:
                judge_jobs.append((jkey, jprompt, b.spec.judge_mode))
    rules.put_many(new_rules)
    n = len(rule_scores)
    entry = {
        "rule": {
            "score": round(100.0 * sum(rule_scores) / n, 2) if n else None,
            "n": n,
            "total": n,
            "parsed": parsed,
            "new": len(new_rules),
        },
        "judge": None,
    }
    if judge is not None:
        failed: dict[str, str] = {}

        def keep(key, verdict):
            if verdict.score is None:
                failed[key] = verdict.error or verdict.raw
            else:
                verdicts.put(
                    {"key": key, "score": verdict.score, "raw": verdict.raw[:500], "attempts": verdict.attempts}
                )

        if judge_jobs:
            log(f"[eval] {ckpt.label} / {b.spec.title}: judging {len(judge_jobs)} new items with {judge_cfg.model}")
        judge.judge_many(judge_jobs, keep)
        scores = [verdicts.get(k)["score"] for k in judge_keys if k in verdicts]
        entry["judge"] = {
            "score": round(100.0 * sum(scores) / len(scores), 2) if scores else None,
            "n": len(scores),
            "total": n,
            "failed": n - len(scores),
            "new": len(judge_jobs) - len(failed),
            "errors": sorted(set(failed.values()))[:5],
        }
    log(
        f"[eval] {ckpt.label} / {b.spec.title}: rule {entry['rule']['score']} (n={n}, {len(new_rules)} new)"
        + (
            f", judge {entry['judge']['score']} (n={entry['judge']['n']}, failed {entry['judge']['failed']})"
            if entry["judge"]
            else ""
        )
    )
    return entry
