"""The results table: benchmark x checkpoint, rule and judge scores, the average, deltas to the base, items scored.

Written as `table.md` (for people) and `table.csv` (for tools) next to `results.json`; `table_rows` is shared with
the HTML report. The average is over the benchmarks every checkpoint has a score for, so its deltas compare like with
like: the macro mean under the official protocol, the micro mean (items pooled) under the visplay protocol, as the
reference reports it. A benchmark scored only by a judge (MM-Vet) has no rule row; HallusionBench's fAcc and qAcc
are rows of their own, outside the average. The notes say which protocol produced the numbers.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from verl_ext.atomic_io import atomic_write_text

SCORERS = ("rule", "judge")
PROTOCOL_NOTES = {
    "official": "Protocol: official (each benchmark's own answer rules, docs/eval.md; macro average; MM-Vet judged "
    "only).",
    "visplay": "Protocol: visplay (the reference implementation's data copies, solver prompt, boxed extraction, "
    "binary judge on the extracted answer; micro average over items), comparable with the paper's table.",
}


def _labels(results: dict) -> list[str]:
    return [c["label"] for c in results.get("checkpoints", [])]


def _cell(results: dict, bench: str, label: str, scorer: str) -> dict | None:
    """The scorer's entry (its score may be None: every judge call failed), or None when it did not run."""
    entry = results.get("scores", {}).get(bench, {}).get(label, {})
    return (entry.get(scorer) if entry else None) or None


def _metric_cell(cell: dict | None, metric: str) -> dict | None:
    value = ((cell or {}).get("metrics") or {}).get(metric)
    return None if cell is None or value is None else {**cell, "score": value}


def table_rows(results: dict) -> list[dict]:
    """One row per (benchmark or "average", scorer): {benchmark, title, scorer, cells: {label: {score, delta, n,
    total, failed}}, in_average}. Scorers with no score anywhere (judge off) are left out."""
    labels = _labels(results)
    base = results.get("base") or (labels[0] if labels else None)
    titles = results.get("titles", {})
    rule_scored = results.get("rule_scored", {})
    micro = results.get("average") == "micro"
    rows = []
    for scorer in SCORERS:
        if not any(_cell(results, b, lab, scorer) for b in results.get("benchmarks", []) for lab in labels):
            continue
        for bench in results.get("benchmarks", []):
            if scorer == "rule" and rule_scored.get(bench) is False:
                continue  # judged only: no rule number exists for it
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
            rows.append(
                {
                    "benchmark": bench,
                    "title": titles.get(bench, bench),
                    "scorer": scorer,
                    "cells": cells,
                    "in_average": True,
                }
            )
            metrics = sorted(
                {m for lab in labels for m in ((_cell(results, bench, lab, scorer) or {}).get("metrics") or {})}
            )
            for metric in metrics:  # HallusionBench: aAcc is the row above; fAcc, qAcc follow, outside the average
                if metric == "aAcc":
                    continue
                mcells = {}
                base_m = _metric_cell(_cell(results, bench, base, scorer), metric)
                for lab in labels:
                    c = _metric_cell(_cell(results, bench, lab, scorer), metric)
                    delta = None
                    if c is not None and base_m is not None and lab != base:
                        delta = round(c["score"] - base_m["score"], 2)
                    mcells[lab] = (
                        None
                        if c is None
                        else {
                            **{k: c.get(k) for k in ("n", "total")},
                            "score": c["score"],
                            "delta": delta,
                            "failed": c.get("failed", 0),
                        }
                    )
                title = f"{titles.get(bench, bench)} {metric}"
                rows.append(
                    {
                        "benchmark": f"{bench}:{metric}",
                        "title": title,
                        "scorer": scorer,
                        "cells": mcells,
                        "in_average": False,
                    }
                )
        # Average over the benchmarks that every checkpoint has.
        complete = [
            r
            for r in rows
            if r["scorer"] == scorer
            and r["in_average"]
            and all(r["cells"].get(lab) and r["cells"][lab]["score"] is not None for lab in labels)
        ]
        if complete:
            cells = {}
            for lab in labels:
                if micro:  # items pooled: sum of correct over sum of items
                    pooled = sum(r["cells"][lab]["n"] for r in complete)
                    mean = sum(r["cells"][lab]["score"] * r["cells"][lab]["n"] for r in complete) / max(1, pooled)
                else:
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
            kind = "micro average" if micro else "average"
            title = f"{kind} ({len(complete)} benchmarks, {results.get('protocol', 'official')} protocol)"
            rows.append(
                {"benchmark": "average", "title": title, "scorer": scorer, "cells": cells, "in_average": False}
            )
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
        PROTOCOL_NOTES.get(results.get("protocol", "official"), f"Protocol: {results.get('protocol')}."),
    ]
    judge = results.get("judge")
    if judge:
        notes.append(f"Judge: {judge['model']} at {judge['base_url']}.")
        if "mmvet" in results.get("benchmarks", []) and results.get("protocol", "official") == "official":
            notes.append(
                f"MM-Vet: judged only, graded 0-1 with the {judge.get('mmvet_prompt', 'paraphrased rubric')}."
            )
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
