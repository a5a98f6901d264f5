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
from verl_ext.image_io import ImageError

from .benchmarks import Benchmark, EvalItem, get_benchmark
from .cache import JsonlStore, digest, model_fingerprint
from .data import DataSource, load_items
from .generate import GenerationConfig, combine_images, generate_for_checkpoint, render_prompt
from .judge import JudgeClient, JudgeConfig, Verdict, judge_prompt
from .official import hallusion_accuracies
from .protocol_visplay import extract_answer as visplay_extract
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
    protocol: str = "official",
    log: Callable[[str], None] = print,
) -> dict:
    """Score every checkpoint on every benchmark (only new items are generated/scored/judged); write the results.
    `protocol`: official (each benchmark's own metric, macro average) or visplay (the reference's, micro average)."""
    from .table import write_tables

    out_dir = Path(out_dir)
    cache_root = out_dir / "cache" if protocol == "official" else out_dir / f"cache-{protocol}"
    started = time.monotonic()
    benches: list[_Bench] = []
    for source in sources:
        spec = get_benchmark(source.benchmark, protocol)
        items, summary = load_items(spec, source)
        prompts = [
            spec.prompt(it) if spec.prompt else render_prompt(it.question, gen_cfg, QUESTION_TYPE.get(it.answer_type))
            for it in items
        ]
        benches.append(_Bench(spec, source, items, summary, prompts))
        split = f" (split {source.split})" if source.split else ""
        log(f"[eval] {spec.title}: {summary['items']} items from {source.source}{split}")
        if summary["skipped"]:
            named = ", ".join(f"{s['id']} ({s['reason']})" for s in summary.get("skipped_items", []))
            log(f"[eval] {spec.title}: skipped {summary['skipped']} rows {summary.get('skip_reasons')}: {named}")

    results: dict = {
        "protocol": protocol,
        "average": "micro" if protocol == "visplay" else "macro",
        "rule_scored": {b.spec.name: b.spec.rule_scored for b in benches},
        "checkpoints": [],
        "base": base_label or (checkpoints[0].label if checkpoints else None),
        "benchmarks": [b.spec.name for b in benches],
        "titles": {b.spec.name: b.spec.title for b in benches},
        "data": {},  # filled at the end: an image that fails to decode while generating is counted there too
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
            for name, kinds in stores.items():
                for kind, store in kinds.items():
                    if store.corrupt:
                        log(
                            f"[eval] cache {ckpt.label}/{name}/{kind}: {store.corrupt} records failed their checksum;"
                            " not trusted, computed again"
                        )
            _fill_responses(ckpt, fp, benches, stores, gen_cfg, log)
            for b in benches:
                results["scores"][b.spec.name][ckpt.label] = _score(
                    ckpt, fp, b, stores[b.spec.name], gen_cfg, judge, judge_cfg, log
                )
    finally:
        if judge is not None:
            judge.close()
    results["data"] = {b.spec.name: {**b.source.describe(), **b.summary} for b in benches}
    results["seconds"] = round(time.monotonic() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / RESULTS_NAME, results)
    write_tables(results, out_dir)
    log(f"[eval] results: {out_dir / RESULTS_NAME}, table: {out_dir / 'table.md'}")
    return results


def _drop_item(b: _Bench, item: EvalItem, reason: str, log) -> None:
    """Take an item out of the evaluation (every checkpoint) with a counted, named reason."""
    index = next(i for i, it in enumerate(b.items) if it is item)
    del b.items[index], b.prompts[index]
    s = b.summary
    s["items"], s["skipped"] = s["items"] - 1, s["skipped"] + 1
    s.setdefault("skip_reasons", {})[reason] = s.get("skip_reasons", {}).get(reason, 0) + 1
    s.setdefault("skipped_items", []).append({"id": item.id, "reason": reason})
    log(f"[eval] {b.spec.title}: item {item.id} skipped: its image does not decode ({reason})")


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
    images, decodable = [], []
    for entry in pending:
        b, item = entry[0], entry[1]
        try:
            images.append(combine_images(item.images, gen_cfg))
            decodable.append(entry)
        except ImageError as exc:  # passed the header check at load time, fails to decode: skip it, name it
            _drop_item(b, item, exc.reason, log)
    pending = decodable
    if not pending:
        return
    responses = generate_for_checkpoint(ckpt.path, gen_cfg, [p for _, _, p, _ in pending], images, log)
    by_bench: dict[str, list[dict]] = {}
    for (b, item, _, key), response in zip(pending, responses, strict=True):
        by_bench.setdefault(b.spec.name, []).append({"key": key, "id": item.id, "response": response})
    for name, records in by_bench.items():
        stores[name]["responses"].put_many(records)
    log(f"[eval] {ckpt.label}: {len(pending)} responses in {time.monotonic() - started:.1f}s")


def _group_metrics(b: _Bench, scores: dict[str, float]) -> dict | None:
    """HallusionBench's aAcc/fAcc/qAcc over the items that have a score (item id -> 0..1)."""
    if b.spec.group_metrics != "hallusion":
        return None
    records = [{**it.meta, "correct": scores[it.id] >= 1.0} for it in b.items if it.id in scores]
    return hallusion_accuracies(records)


def _rule_entry(b: _Bench, responses: dict[str, str], rules: JsonlStore) -> dict | None:
    if not b.spec.rule_scored:
        return None  # judged only (MM-Vet): no rule number is reported for it
    scores: dict[str, float] = {}
    new_rules, parsed, guessed = [], 0, 0
    for item in b.items:
        response = responses[item.id]
        rkey = _rule_key(item, response)
        rec = rules.get(rkey)
        if rec is None:
            rec = {"key": rkey, "id": item.id, **score_response(item, response).to_dict()}
            new_rules.append(rec)
        scores[item.id] = float(rec["score"])
        parsed += rec["source"] != "none"
        guessed += bool(rec.get("guessed"))
    rules.put_many(new_rules)
    n = len(scores)
    entry = {
        "score": round(100.0 * sum(scores.values()) / n, 2) if n else None,
        "n": n,
        "total": n,
        "parsed": parsed,
        "new": len(new_rules),
    }
    if guessed:
        entry["guessed"] = guessed  # MMMU's official parser guessed a letter for these (no option named)
    metrics = _group_metrics(b, scores)
    if metrics:
        entry["metrics"] = metrics
    return entry


def _score(ckpt, fp, b: _Bench, stores, gen_cfg, judge, judge_cfg, log) -> dict:
    responses_store, verdicts = stores["responses"], stores["judge"]
    responses = {
        item.id: responses_store.get(_response_key(fp, b, item, prompt, gen_cfg))["response"]
        for item, prompt in zip(b.items, b.prompts, strict=True)
    }
    entry = {"rule": _rule_entry(b, responses, stores["rule"]), "judge": None}
    n = len(b.items)
    if judge is not None:
        mode = b.spec.judge_mode
        judge_jobs: list[tuple[str, str, str]] = []
        judge_keys: dict[str, str] = {}
        settled: dict[str, float] = {}  # items whose verdict needs no call (visplay: nothing was extracted)
        for item in b.items:
            if mode == "visplay":
                pred = visplay_extract(responses[item.id])
                if not pred:
                    settled[item.id] = 0.0
                    continue
                jprompt = judge_prompt(item, pred, mode)
            else:
                jprompt = judge_prompt(item, responses[item.id], mode, judge_cfg.mmvet_prompt)
            jkey = digest("judge", judge_cfg.cache_identity(), mode, jprompt)
            judge_keys[item.id] = jkey
            if jkey not in verdicts:
                judge_jobs.append((jkey, jprompt, mode))
        failed: dict[str, str] = {}

        def keep(key, verdict: Verdict):
            if verdict.score is None:
                failed[key] = verdict.error or verdict.raw
            else:
                verdicts.put(
                    {"key": key, "score": verdict.score, "raw": verdict.raw[:500], "attempts": verdict.attempts}
                )

        if judge_jobs:
            log(f"[eval] {ckpt.label} / {b.spec.title}: judging {len(judge_jobs)} new items with {judge_cfg.model}")
        judge.judge_many(list(dict.fromkeys(judge_jobs)), keep)
        scores = dict(settled)
        for item_id, key in judge_keys.items():
            if key in verdicts:
                scores[item_id] = float(verdicts.get(key)["score"])
        entry["judge"] = {
            "score": round(100.0 * sum(scores.values()) / len(scores), 2) if scores else None,
            "n": len(scores),
            "total": n,
            "failed": n - len(scores),
            "new": len(judge_jobs) - len(failed),
            "errors": sorted(set(failed.values()))[:5],
        }
        if mode == "score":
            entry["judge"]["prompt"] = "official grader prompt" if judge_cfg.mmvet_prompt else "paraphrased rubric"
        metrics = _group_metrics(b, scores)
        if metrics:
            entry["judge"]["metrics"] = metrics
    rule = entry["rule"]
    log(
        f"[eval] {ckpt.label} / {b.spec.title}: "
        + (f"rule {rule['score']} (n={n}, {rule['new']} new)" if rule else "judged only")
        + (
            f", judge {entry['judge']['score']} (n={entry['judge']['n']}, failed {entry['judge']['failed']})"
            if entry["judge"]
            else ""
        )
    )
    return entry
