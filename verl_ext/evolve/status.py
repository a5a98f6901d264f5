"""`visplay status RUN`: the stage table of a run directory, read from its manifest (and its resolved recipe, so that
stages not started yet are listed too). Reads only; safe while the loop runs."""

from __future__ import annotations

from pathlib import Path

import yaml

from .manifest import MANIFEST_NAME, PENDING, Manifest
from .recipe import RecipeError, parse_recipe
from .stages import build_plan

SUMMARY_WIDTH = 70


def _summary(summary) -> str:
    if not isinstance(summary, dict):
        return "" if summary is None else str(summary)
    parts = []
    for key, value in summary.items():
        if isinstance(value, (dict, list)):
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    text = " ".join(parts)
    return text if len(text) <= SUMMARY_WIDTH else text[: SUMMARY_WIDTH - 1] + "…"


def _seconds(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def planned_keys(run_dir: Path) -> list[str]:
    """Every stage key of the run's resolved recipe (`RUN/recipe.yaml`), in plan order; [] when it is unreadable."""
    path = run_dir / "recipe.yaml"
    if not path.is_file():
        return []
    try:
        recipe = parse_recipe(yaml.safe_load(path.read_text()), env={}, source=str(path))
        return [spec.key for spec in build_plan(recipe, run_dir)]
    except (RecipeError, yaml.YAMLError, ValueError, KeyError, TypeError):
        return []


def format_status(run_dir: str | Path) -> str:
    """The stage table: stage, state, attempts, time, summary; then the next stage to run and the report's path."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / MANIFEST_NAME).is_file():
        raise FileNotFoundError(f"{run_dir}: no {MANIFEST_NAME} (not an evolution run, or not started yet)")
    manifest = Manifest(run_dir)
    keys = planned_keys(run_dir)
    keys += [k for k in manifest.stages if k not in keys]
    rows = [("stage", "state", "tries", "time", "summary")]
    next_key = None
    for key in keys:
        rec = manifest.get(key) or {}
        state = rec.get("state", PENDING)
        if state != "done" and next_key is None:
            next_key = key
        tries = str(rec.get("attempts", "-"))
        rows.append((key, state, tries, _seconds(rec.get("seconds")), _summary(rec.get("summary"))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"run {run_dir} (recipe {manifest.data.get('recipe', '?')}, backend {manifest.data.get('backend', '?')})"]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -------")
    failed = [k for k in keys if (manifest.get(k) or {}).get("state") == "failed"]
    for key in failed:
        error = ((manifest.get(key) or {}).get("error") or "").strip().splitlines()
        lines.append(f"failed {key}: {error[-1] if error else '(no error recorded)'}")
    if next_key is None:
        lines.append("all stages done")
    else:
        lines.append(f"next: {next_key} (re-run the same `make evolve` / `visplay evolve` command to resume)")
    for name in ("report.html", "stats.json"):
        if (run_dir / name).is_file():
            lines.append(f"{name}: {run_dir / name}")
    return "\n".join(lines)
