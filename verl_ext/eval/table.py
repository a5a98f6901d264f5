"""The results table: benchmark x checkpoint, rule and judge scores, the average, deltas to the base, items scored.

Written as `table.md` (for people) and `table.csv` (for tools) next to `results.json`; `table_rows` is shared with
the HTML report. The average is the macro mean over the benchmarks every checkpoint has a score for, so its deltas
compare like with like.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from verl_ext.atomic_io import atomic_write_text

SCORERS = ("rule", "judge")


def _labels(results: dict) -> list[str]:
    return [c["label"] for c in results.get("checkpoints", [])]


def _cell(results: dict, bench: str, label: str, scorer: str) -> dict | None:
    """The scorer's entry (its score may be None: every judge call failed), or None when it did not run."""
    entry = results.get("scores", {}).get(bench, {}).get(label, {})
    return (entry.get(scorer) if entry else None) or None


def table_rows(results: dict) -> list[dict]:
    """One row per (benchmark or "average", scorer): {benchmark, title, scorer, cells: {label: {score, delta, n,
    total, failed}}}. Scorers with no score anywhere (judge off) are left out."""
    labels = _labels(results)
    base = results.get("base") or (labels[0] if labels else None)
    titles = results.get("titles", {})
    rows = []
    for scorer in SCORERS:
        if not any(_cell(results, b, lab, scorer) for b in results.get("benchmarks", []) for lab in labels):
            continue
        for bench in results.get("benchmarks", []):
            cells = {}
            base_cell = _cell(results, bench, base, scorer)
            for lab in labels:
                c = _cell(results, bench, lab, scorer)
                if c is None:
                    cells[lab] = None
                    continue
                scored = c.get("score") is not None and base_cell is not None and base_cell.get("score") is not None
                delta = round(c["score"] - base_cell["score"], 2) if scored and lab != base else None
                cells[lab] = {
                    "score": c["score"],
                    "delta": delta,
                    "n": c.get("n"),
                    "total": c.get("total"),
                    "failed": c.get("failed", 0),
                }
            rows.append({"benchmark": bench, "title": titles.get(bench, bench), "scorer": scorer, "cells": cells})
        # Average over the benchmarks that every checkpoint has.
        complete = [
            r
            for r in rows
            if r["scorer"] == scorer
            and all(r["cells"].get(lab) and r["cells"][lab]["score"] is not None for lab in labels)
        ]
        if complete:
            cells = {}
            for lab in labels:
                mean = sum(r["cells"][lab]["score"] for r in complete) / len(complete)
                cells[lab] = {
                    "score": round(mean, 2),
                    "delta": None,
                    "n": sum(r["cells"][lab]["n"] for r in complete),
                    "total": sum(r["cells"][lab]["total"] for r in complete),
                    "failed": 0,
                }
            if base in cells:
                for lab in labels:
                    if lab != base:
                        cells[lab]["delta"] = round(cells[lab]["score"] - cells[base]["score"], 2)
            title = f"average ({len(complete)} benchmarks)"
            rows.append({"benchmark": "average", "title": title, "scorer": scorer, "cells": cells})
    return rows


def _fmt(cell: dict | None) -> str:
    if cell is None or cell["score"] is None:
        return "–"
    text = f"{cell['score']:.1f}"
    if cell.get("delta") is not None:
        text += f" ({cell['delta']:+.1f})"
    return text


def _items(row: dict, labels: list[str]) -> str:
    parts = []
    for lab in labels:
        c = row["cells"].get(lab)
        if c is None:
            parts.append("–")
        elif c.get("failed"):
            parts.append(f"{c['n']}/{c['total']}")
        else:
            parts.append(str(c["n"]))
    return parts[0] if len(set(parts)) == 1 else " / ".join(parts)


def render_markdown(results: dict) -> str:
    labels = _labels(results)
    rows = table_rows(results)
    base = results.get("base")
    head = ["benchmark", "scorer", *[f"{lab} (base)" if lab == base and lab != "base" else lab for lab in labels]]
    head.append("items")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = f"**{r['title']}**" if r["benchmark"] == "average" else r["title"]
        lines.append(
            "| "
            + " | ".join([name, r["scorer"], *[_fmt(r["cells"].get(lab)) for lab in labels], _items(r, labels)])
            + " |"
        )
    notes = [
        "",
        "Scores in %, (delta to the base model). items: items scored per checkpoint; for the judge, items with a "
        "verdict / items (failed judge calls are counted, never guessed).",
    ]
    judge = results.get("judge")
    if judge:
        notes.append(f"Judge: {judge['model']} at {judge['base_url']}.")
    else:
        notes.append("Judge: off (set --judge-model/--judge-url or VISPLAY_JUDGE_MODEL/VISPLAY_JUDGE_URL).")
    gen = results.get("generation") or {}
    notes.append(f"Greedy decoding, engine {gen.get('engine')}, max {gen.get('max_new_tokens')} new tokens.")
    return "\n".join(lines + notes) + "\n"


def render_csv(results: dict) -> str:
    labels = _labels(results)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["benchmark", "scorer", *[f"{lab}{suffix}" for lab in labels for suffix in ("", "_delta", "_n")]])
    for r in table_rows(results):
        values = []
        for lab in labels:
            c = r["cells"].get(lab)
            if c is None:
                values += ["", "", ""]
            else:
                values += ["" if c["score"] is None else c["score"], "" if c["delta"] is None else c["delta"], c["n"]]
        w.writerow([r["benchmark"], r["scorer"], *values])
    return buf.getvalue()


def write_tables(results: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    md, csv_path = out_dir / "table.md", out_dir / "table.csv"
    atomic_write_text(md, render_markdown(results))
    atomic_write_text(csv_path, render_csv(results))
    return md, csv_path
