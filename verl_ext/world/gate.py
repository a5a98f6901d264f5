"""The gate: before the main run, the oracle-label arm must gain on the endpoint on the dev split.

One seed, one iteration: Q_0 writes questions on the seed's unlabeled images, S_0 pseudo-labels them and the band
filter keeps the uncertain ones (the frozen-questioner arm's first iteration), then for each reasoner budget of the
scan the reasoner trains from S_0 on the kept questions with the oracle's labels and is evaluated on the balanced dev
set. The smallest budget whose endpoint gain reaches the threshold runs the main experiment; if none does, the
smallest budget runs it, and the write-up says the gate failed (without a positive control, VisPlay's result is not
a test of the method). Written to `gate.json`; a re-run resumes (the choice is recomputed from the stored scan, so a
changed rule applies to it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

GATE_SPLIT = "dev"


def _budget_cell(cfg, root: str, budget: int, base_model: str, kept: str) -> dict:
    """Train the oracle arm at `budget` and evaluate it on the dev split (one process of the scan)."""
    from verl_ext.local.models import configure_threads

    from . import arms as side
    from .analysis import bits, endpoint_mask
    from .experiment import eval_set, eval_settings, evaluate_cached, file_log, load_world_recipe, world_backend
    from .stats import paired_bootstrap

    configure_threads(1)
    root_path = Path(root)
    with file_log(root_path / f"budget_{budget}" / "log.txt") as log:
        started = time.monotonic()
        recipe = load_world_recipe(cfg, cfg.first_seed, base_model, budget=budget)
        model, summary = side.train_on_oracle_labels(
            recipe, world_backend(cfg), root_path / f"budget_{budget}", 1, Path(kept), base_model, log
        )
        items = eval_set(cfg, GATE_SPLIT)
        settings = eval_settings(cfg, recipe, GATE_SPLIT)
        res = evaluate_cached(model, items, settings, root_path / f"budget_{budget}" / "eval.json", log)
        base = json.loads((root_path / "base_eval.json").read_text())["result"]
    mask = endpoint_mask([it["template"] for it in items])

    def endpoint(r: dict, kind: str) -> list[list[float]]:
        real = [v for v, k in zip(bits(r["items"]["greedy"]), mask, strict=True) if k]
        if kind == "margin":
            swapped = [v for v, k in zip(bits(r["items"]["greedy_swapped"]), mask, strict=True) if k]
            real = [a - b for a, b in zip(real, swapped, strict=True)]
        return [real]

    gain = paired_bootstrap(endpoint(res, "endpoint"), endpoint(base, "endpoint"))
    margin_gain = paired_bootstrap(endpoint(res, "margin"), endpoint(base, "margin"))
    return {
        "budget": budget,
        "reasoner": {"steps": recipe.reasoner.steps, "batch": recipe.reasoner.grpo.rollout_batch_size},
        "gain": gain["mean"],
        "gain_ci": [gain["lo"], gain["hi"]],
        "margin_gain": margin_gain,
        "endpoint": sum(endpoint(res, "endpoint")[0]) / max(1, len(endpoint(res, "endpoint")[0])),
        "train_rows": summary.get("rows"),
        "seconds": round(time.monotonic() - started, 1),
    }


def run_gate(cfg, root: Path, base_model: str, log: Callable[[str], None] = print) -> dict:
    """The gate scan over `cfg.gate_budgets` (in `cfg.jobs` processes); writes and returns root/gate.json."""
    from verl_ext.atomic_io import atomic_write_json
    from verl_ext.evolve.images import prepare_images

    from . import arms as side
    from .experiment import call_readable, eval_set, eval_settings, evaluate_cached, load_world_recipe, world_backend
    from .stats import gate_choice

    root = Path(root)
    done = root / "gate.json"
    if done.is_file():
        cached = json.loads(done.read_text())
        if cached.get("budgets") == list(cfg.gate_budgets) and cached.get("threshold") == cfg.gate_threshold:
            log(f"[world] gate: from {done}")
            return {**cached, "choice": gate_choice(cached["scan"], cfg.gate_threshold)}
    started = time.monotonic()
    recipe = load_world_recipe(cfg, cfg.first_seed, base_model, budget=1)
    backend = world_backend(cfg)
    images = root / "images.parquet"
    if not images.is_file():
        root.mkdir(parents=True, exist_ok=True)
        prepare_images(recipe.images, images, recipe.seed)
    log(f"[world] gate: Q0 writes questions, S0 labels them, budgets {list(cfg.gate_budgets)} on the dev split")
    data_dir = root / "data"
    gen, _ = side.side_stage(
        recipe, backend, data_dir, 1, "generate", {"model": base_model, "images": str(images)}, log
    )
    questions = str(gen / "questions.parquet")
    pl, _ = side.side_stage(
        recipe, backend, data_dir, 1, "pseudo_label", {"model": base_model, "questions": questions}, log
    )
    filt, stats = side.side_stage(
        recipe, backend, data_dir, 1, "filter", {"labels": str(pl / "labels.parquet"), "questions": questions}, log
    )
    kept = str(filt / "train.parquet")
    items = eval_set(cfg, GATE_SPLIT)
    base = evaluate_cached(base_model, items, eval_settings(cfg, recipe, GATE_SPLIT), root / "base_eval.json", log)
    budgets = list(cfg.gate_budgets)
    if cfg.jobs > 1 and len(budgets) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = [
                pool.submit(call_readable, f"gate budget {b}", _budget_cell, cfg, str(root), b, base_model, kept)
                for b in budgets
            ]
            scan = [f.result() for f in futures]
    else:
        scan = [_budget_cell(cfg, str(root), b, base_model, kept) for b in budgets]
    for cell in scan:
        log(f"[world] gate: budget {cell['budget']}x, oracle endpoint gain {cell['gain']:+.3f} {cell['gain_ci']}")
    result = {
        "split": GATE_SPLIT,
        "seed": cfg.first_seed,
        "budgets": budgets,
        "threshold": cfg.gate_threshold,
        "data": {"counts": stats.get("counts"), "kept_fraction": stats.get("kept_fraction")},
        "base_dev": {
            "items": base["n"],
            "greedy": base["accuracy"]["greedy"],
            "greedy_swapped": base["accuracy"].get("greedy_swapped"),
        },  # fmt: skip
        "scan": scan,
        "choice": gate_choice(scan, cfg.gate_threshold),
        "seconds": round(time.monotonic() - started, 1),
    }
    atomic_write_json(done, result)
    return result


def render_gate(gate: dict) -> str:
    """The gate's scan as markdown (the first table of results.md)."""
    from .results import _table, gate_table

    table = gate_table({"gate": gate})
    return "\n".join([f"# {table.title}", "", table.note, "", *_table(table.header, table.rows), ""])


def gate_only(cfg, out: str | Path, log: Callable[[str], None] = print) -> dict:
    """The base model and the gate, without the main run: out/gate/gate.json and out/gate/gate.md."""
    from verl_ext.atomic_io import atomic_write_text

    from .experiment import build_base

    out = Path(out).resolve()
    gate = run_gate(cfg, out / "gate", build_base(cfg, log), log)
    atomic_write_text(out / "gate" / "gate.md", render_gate(gate))
    log(f"[world] gate {'passed' if gate['choice']['passed'] else 'NOT passed'}: {out / 'gate' / 'gate.md'}")
    return gate
