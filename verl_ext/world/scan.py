"""The reasoner-budget scan: the same runner at several budgets (multiples of the recipe's reasoner rollouts per
stage), the base, oracle-label and VisPlay arms, one experiment directory per budget, and a table of the endpoint
gains with their intervals per budget. `python -m verl_ext.world --gpu` runs it at 1x / 8x / 32x on one GPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

GPU_BUDGETS = (1, 8, 32)
SCAN_ARMS = ("base", "oracle", "visplay")


def gpu_config(cfg):
    """The GPU variant of a config: perception variant, one seed, the config's T, no gate (the scan is the gate), the
    budgets of the scan in parallel processes on the one GPU."""
    return dataclasses.replace(cfg, variant="perception", arms=SCAN_ARMS, gate=False, seeds=1, jobs=1)


def _run_budget(cfg, out: str, budget: int) -> dict:
    from .experiment import file_log, run_experiment

    with file_log(Path(out) / f"budget_{budget}" / "log.txt") as log:
        cfg = dataclasses.replace(cfg, budget=budget, gate=False)
        return run_experiment(cfg, Path(out) / f"budget_{budget}", log)


def scan_rows(per_budget: dict[int, dict]) -> list[dict]:
    """Per budget and trained arm: the endpoint gain and the margin gain over the base at the final t."""
    rows = []
    for budget, results in sorted(per_budget.items()):
        claims = [c for c in results.get("claims") or [] if c["t"] > 0]
        if not claims:
            continue
        final = claims[-1]
        for arm, cell in sorted((final.get("arms") or {}).items()):
            if arm == "base":
                continue
            rows.append({"budget": budget, "t": final["t"], "arm": arm, "endpoint_gain": cell.get("endpoint_gain"),
                         "margin_gain": cell.get("margin_gain")})  # fmt: skip
    return rows


def render_scan(rows: list[dict]) -> str:
    from .results import ARM_LABELS, fmt_interval

    lines = ["# Reasoner-budget scan", "", "| budget | t | arm | endpoint gain vs base | margin gain vs base |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['budget']}x | {r['t']} | {ARM_LABELS[r['arm']]} | "
            f"{fmt_interval(r['endpoint_gain'], signed=True)} | {fmt_interval(r['margin_gain'], signed=True)} |"
        )
    return "\n".join(lines) + "\n"


def run_scan(cfg, out: str | Path, budgets=GPU_BUDGETS, jobs: int = 3, log: Callable[[str], None] = print) -> dict:
    """Every budget (in `jobs` processes), then out/scan.json and out/scan.md."""
    from verl_ext.atomic_io import atomic_write_json, atomic_write_text

    from .experiment import build_base, call_readable

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    build_base(cfg, log)  # once, before the budgets fork
    if jobs > 1 and len(budgets) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        log(f"[world] budgets {list(budgets)} in {jobs} processes; logs in {out}/budget_<k>/log.txt")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {b: pool.submit(call_readable, f"budget {b}", _run_budget, cfg, str(out), b) for b in budgets}
            per_budget = {b: f.result() for b, f in futures.items()}
    else:
        per_budget = {b: _run_budget(cfg, str(out), b) for b in budgets}
    rows = scan_rows(per_budget)
    scan = {"budgets": list(budgets), "config": dataclasses.asdict(cfg), "rows": rows,
            "wall": {str(b): (r.get("seconds") or {}).get("wall") for b, r in per_budget.items()}}  # fmt: skip
    atomic_write_json(out / "scan.json", scan)
    atomic_write_text(out / "scan.md", render_scan(rows))
    log(f"[world] scan done: {out / 'scan.md'}")
    return scan
