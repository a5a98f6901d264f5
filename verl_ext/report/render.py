"""The run report as one self-contained HTML file: inline SVG charts, images as data URIs, a few lines of script.

Sections: run status, the co-evolution plot (question difficulty 1 - mean p against reasoner accuracy, per
iteration), the benchmark table, per-iteration question statistics (confidence histograms with the band, filter
reasons, parse rates, diversity), training curves, and a gallery of sampled questions with their votes. Callers can
put sections of their own at the top (the controlled world puts its ground-truth results there); those can stand alone.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from pathlib import Path

import jinja2

from verl_ext.atomic_io import atomic_write_text
from verl_ext.visplay.records import FILTER_REASONS

from . import svg
from .collect import RunData, collect

REASON_COLORS = {
    "kept": "#2ca02c",
    "too_easy": "#1f77b4",
    "too_hard": "#d62728",
    "no_answer": "#ff7f0e",
    "unparsable": "#7f7f7f",
    "too_long": "#9467bd",
}
STAGE_ORDER = ("questioner", "questioner_merge", "generate", "pseudo_label", "filter", "reasoner", "reasoner_merge")


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _num(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))
    return str(v)


# --------------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------------


def _eval_average_by_iteration(results: dict | None, scorer: str) -> dict[int, float]:
    """iteration -> macro-average benchmark score (0..1) of that iteration's checkpoint, from eval results."""
    if not results:
        return {}
    from verl_ext.eval.table import table_rows

    avg = next((r for r in table_rows(results) if r["benchmark"] == "average" and r["scorer"] == scorer), None)
    if avg is None:
        return {}
    out = {}
    for ckpt in results.get("checkpoints", []):
        cell = avg["cells"].get(ckpt["label"])
        if cell is not None and ckpt.get("iteration") is not None:
            out[int(ckpt["iteration"])] = cell["score"] / 100.0
    return out


def _train_accuracy(data: RunData) -> dict[int, float]:
    """iteration -> the reasoner stage's mean training accuracy against the pseudo-labels."""
    pts = data.curves.get("reasoner", {}).get("visplay/accuracy")
    out: dict[int, list[float]] = {}
    for t, _, v in pts or []:
        out.setdefault(t, []).append(v)
    if out:
        return {t: sum(v) / len(v) for t, v in out.items()}
    res = {}
    for key, rec in (data.manifest.get("stages") or {}).items():  # pruned checkpoints: the stage summary's mean
        if key.endswith(":reasoner") and _get(rec, "summary", "reward", "accuracy") is not None:
            res[int(key.split(":")[0])] = float(rec["summary"]["reward"]["accuracy"])
    return res


TREND_TOLERANCE = 0.005  # a change smaller than this (on a 0..1 scale) is reported as unchanged


def _trend(values: dict[int, float], what: str, first_label: str = "") -> tuple[str, int]:
    """One sentence on how `values` (iteration -> 0..1) moved from the first iteration to the last, and its sign
    (+1 rose, -1 fell, 0 unchanged or not measured)."""
    points = sorted((t, v) for t, v in values.items() if v is not None and not math.isnan(v))
    if len(points) < 2:
        if points:
            return f"{what}: {points[0][1]:.3f} at t = {points[0][0]}, a single point (no trend yet).", 0
        return f"{what}: not measured.", 0
    (t0, v0), (t1, v1) = points[0], points[-1]
    delta = v1 - v0
    sign = 0 if abs(delta) < TREND_TOLERANCE else (1 if delta > 0 else -1)
    verb = {1: "rose", -1: "fell", 0: "did not change"}[sign]
    path = ", ".join(f"{v:.3f}" for _, v in points)
    steps = [b - a for (_, a), (_, b) in zip(points, points[1:], strict=False)]
    monotonic = all(d >= -TREND_TOLERANCE for d in steps) or all(d <= TREND_TOLERANCE for d in steps)
    shape = "" if len(points) < 3 or monotonic else " (not monotonic)"
    return (
        f"{what} {verb} from {v0:.3f} at t = {t0}{first_label} to {v1:.3f} at t = {t1} "
        f"({delta:+.3f}; per iteration: {path}){shape}.",
        sign,
    )


def coevolution_summary(data: RunData) -> list[str]:
    """What this run shows about the paper's co-evolution signature, computed from its numbers: the sign of the
    difficulty trend and of the accuracy trend, and a verdict that claims only what both show."""
    difficulty = {s["iteration"]: s.get("difficulty") for s in data.iterations}
    text, d_sign = _trend(difficulty, "Question difficulty (1 − mean p)")
    sentences = [text]
    rule = _eval_average_by_iteration(data.eval_results, "rule")
    train = _train_accuracy(data)
    if rule:
        text, a_sign = _trend(rule, "Reasoner benchmark average (rule scoring)", " (base model)" if 0 in rule else "")
        measured = "benchmark accuracy"
    elif train:
        text, a_sign = _trend(train, "Reasoner training accuracy against its own pseudo-labels")
        text = text[:-1] + " (agreement with its pseudo-labels, not correctness; make eval measures accuracy)."
        measured = "training accuracy against pseudo-labels"
    else:
        text, a_sign = "Reasoner accuracy: not measured yet.", 0
        measured = ""
    sentences.append(text)
    if len([v for v in difficulty.values() if v is not None]) < 2 or not measured:
        sentences.append("Too few measurements to say whether this run shows the paper's signature.")
    elif d_sign > 0 and a_sign > 0:
        sentences.append(f"Both rose: this run shows the paper's signature ({measured}).")
    else:
        parts = [
            {1: "difficulty rose", -1: "difficulty fell", 0: "difficulty did not change"}[d_sign],
            {1: f"{measured} rose", -1: f"{measured} fell", 0: f"{measured} did not change"}[a_sign],
        ]
        sentences.append(f"This run does not show the paper's signature: {' and '.join(parts)}.")
    return sentences


def coevolution_chart(data: RunData) -> str:
    its = [s["iteration"] for s in data.iterations]
    rule = _eval_average_by_iteration(data.eval_results, "rule")
    judge = _eval_average_by_iteration(data.eval_results, "judge")
    train = _train_accuracy(data)
    xs = sorted(set(its) | set(rule) | set(judge) | set(train) | ({0} if rule else set()))
    difficulty = {s["iteration"]: s.get("difficulty") for s in data.iterations}
    lines = [  # (label, values by iteration, colour, dashed); empty series are left out
        ("question difficulty 1 − mean p (Q_t's questions, S_t−1's votes)", difficulty, "#d62728", False),
        ("reasoner S_t: benchmark average, rule", rule, "#1f77b4", False),
        ("reasoner S_t: benchmark average, judge", judge, "#17becf", False),
        ("reasoner S_t: training accuracy vs pseudo-labels", train, "#9467bd", True),
    ]
    series = []
    for i, (label, values, color, dash) in enumerate(lines):
        if i == 0 or values:
            line = {"label": label, "x": xs, "y": [values.get(x) for x in xs], "color": color}
            series.append({**line, "dash": True} if dash else line)
    return svg.line_chart(
        "coevolution",
        "Co-evolution: question difficulty and reasoner accuracy",
        series,
        x_label="iteration t (0 = base model)",
        y_label="0 … 1",
        y_range=(0.0, 1.0),
        x_ticks=xs,
        x_tick_labels=[str(x) for x in xs],
        width=720,
        height=360,
    )


def rates_chart(data: RunData) -> str:
    its = [s["iteration"] for s in data.iterations]
    specs = [
        ("question parse rate", lambda s: s.get("question_parse_rate")),
        ("answer parse rate", lambda s: s.get("answer_parse_rate")),
        ("kept fraction", lambda s: _get(s, "filter", "kept_fraction")),
        ("diversity: clusters / questions", lambda s: _get(s, "diversity", "unique_fraction")),
    ]
    series = [{"label": label, "x": its, "y": [get(s) for s in data.iterations]} for label, get in specs]
    series = [s for s in series if any(v is not None for v in s["y"])]
    return svg.line_chart(
        "rates",
        "Parse rates, kept fraction, diversity",
        series,
        x_label="iteration t",
        y_label="fraction",
        y_range=(0.0, 1.0),
        x_ticks=its,
        width=720,
        height=330,
    )


def reasons_chart(data: RunData) -> str:
    cats = [f"t={s['iteration']}" for s in data.iterations]
    groups = [
        {
            "label": r,
            "values": [_get(s, "filter", "counts", r) or 0 for s in data.iterations],
            "color": REASON_COLORS[r],
        }
        for r in FILTER_REASONS
    ]
    return svg.bar_chart(
        "filter-reasons",
        "Kept and dropped questions, by reason",
        cats,
        groups,
        y_label="questions",
        x_label="iteration",
        stacked=True,
        width=720,
    )


def histogram_chart(stats: dict) -> str:
    h = stats.get("confidence") or {}
    band = (_get(stats, "band", "low"), _get(stats, "band", "high"))
    return svg.histogram(
        f"confidence-{stats['iteration']}",
        f"t={stats['iteration']}: confidence p (n={h.get('n', 0)}, mean {_num(h.get('mean'))})",
        h.get("edges") or [],
        h.get("counts") or [],
        band=band if None not in band else None,
        x_label="confidence p = |largest group| / m",
    )


def curve_charts(data: RunData) -> list[str]:
    charts = []
    for role, curves in data.curves.items():
        if not curves:
            continue
        # One x axis over the whole run: each iteration's steps follow the previous iteration's.
        max_step: dict[int, int] = {}
        for pts in curves.values():
            for t, step, _ in pts:
                max_step[t] = max(max_step.get(t, 0), step)
        offset, acc = {}, 0
        for t in sorted(max_step):
            offset[t] = acc
            acc += max_step[t]
        series = []
        for key, pts in curves.items():
            series.append({"label": key, "x": [offset[t] + s for t, s, _ in pts], "y": [v for _, _, v in pts]})
        vlines = [(offset[t] + 0.5, f"t={t}") for t in sorted(offset)]
        xs = [x for s in series for x in s["x"]]
        charts.append(
            svg.line_chart(
                f"curves-{role}",
                f"{role} stage: training metrics per step",
                series,
                x_label="training step (all iterations)",
                y_label="value",
                vlines=vlines,
                x_ticks=svg.integer_ticks(min(xs), max(xs)),
                width=720,
                height=320,
                markers=len(series[0]["x"]) <= 60,
            )
        )
    return charts


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def benchmark_table(results: dict | None) -> dict | None:
    if not results:
        return None
    from verl_ext.eval.table import table_rows

    labels = [c["label"] for c in results.get("checkpoints", [])]
    rows = []
    for r in table_rows(results):
        cells = []
        for lab in labels:
            c = r["cells"].get(lab)
            if c is None or c["score"] is None:
                failed = f": all {c['total']} judge calls failed" if c else ""
                cells.append({"text": "–", "delta": None, "title": f"no score{failed}"})
                continue
            title = f"{c['n']} of {c['total']} items scored" + (f", {c['failed']} failed" if c.get("failed") else "")
            cells.append({"text": f"{c['score']:.1f}", "delta": c["delta"], "title": title})
        rows.append({"title": r["title"], "scorer": r["scorer"], "avg": r["benchmark"] == "average", "cells": cells})
    return {
        "labels": labels,
        "base": results.get("base"),
        "rows": rows,
        "judge": results.get("judge"),
        "generation": results.get("generation") or {},
    }


def iteration_rows(data: RunData) -> list[dict]:
    rows = []
    for s in data.iterations:
        c = s.get("counts") or {}
        d = s.get("diversity") or {}
        rows.append(
            {
                "t": s["iteration"],
                "generated": c.get("questions_generated"),
                "parsed": c.get("questions_parsed"),
                "labelled": c.get("questions_labelled"),
                "kept": c.get("kept"),
                "qparse": _num(s.get("question_parse_rate")),
                "aparse": _num(s.get("answer_parse_rate")),
                "difficulty": _num(s.get("difficulty")),
                "band": f"{_num(_get(s, 'band', 'low'))} – {_num(_get(s, 'band', 'high'))}",
                "reasons": ", ".join(f"{r} {n}" for r, n in (_get(s, "filter", "counts") or {}).items() if n),
                "clusters": f"{_num(d.get('num_clusters'))} / {_num(d.get('sampled'))}",
                "penalty": _num(d.get("mean_penalty")),
            }
        )
    return rows


def skipped_note(summary: dict) -> str:
    """What a stage skipped, by reason, and the first files it named: "skipped corrupt 2, too_large 1 (a.png, ...)"."""
    skipped = summary.get("skipped") or {}
    if not isinstance(skipped, dict) or not skipped:
        return ""
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items()))
    examples = [str(e) for e in (summary.get("skipped_examples") or [])][:3]
    return f"skipped {counts}" + (
        f" ({', '.join(examples)}{', ...' if len(examples) == 3 else ''})" if examples else ""
    )


def stage_rows(data: RunData) -> list[dict]:
    stages = data.manifest.get("stages") or {}
    rows = []
    prep = [(k, stages[k]) for k in ("0:images", "0:warmup") if k in stages]
    if prep:
        rows.append(
            {
                "t": 0,
                "cells": [
                    {
                        "name": k.split(":")[1],
                        "state": r.get("state"),
                        "seconds": r.get("seconds"),
                        "note": skipped_note(r.get("summary") or {}),
                    }
                    for k, r in prep
                ],
            }
        )
    for t in range(1, data.total_iterations + 1):
        cells = []
        for name in STAGE_ORDER:
            r = stages.get(f"{t}:{name}") or {}
            cells.append(
                {
                    "name": name,
                    "state": r.get("state", "pending"),
                    "seconds": r.get("seconds"),
                    "note": skipped_note(r.get("summary") or {}),
                }
            )
        rows.append({"t": t, "cells": cells})
    return rows


# --------------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 16px 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; } th { background: #f5f5f5; }
td.l, th.l { text-align: left; } tr.avg td { font-weight: 600; background: #fafafa; }
.up { color: #2a7d2a; } .down { color: #b22; } .note { color: #666; font-size: 13px; }
.done { background: #e8f5e9; } .failed { background: #fdecea; } .running { background: #fff8e1; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } svg.chart { background: #fff; border: 1px solid #eee; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px; font-size: 12.5px; }
.card.kept { border-left: 5px solid #2ca02c; } .card.dropped { border-left: 5px solid #d62728; }
.card img { width: 100%; max-height: 220px; object-fit: contain; image-rendering: pixelated; background: #f3f3f3; }
.card .q { font-weight: 600; margin: 6px 0; }
.card .raw { color: #777; font-family: monospace; white-space: pre-wrap; }
.tag { display: inline-block; padding: 1px 6px; border-radius: 8px; background: #eee; margin-right: 4px; }
.filters button { margin-right: 6px; } .filters button.on { font-weight: 700; }
h3 { font-size: 15px; margin-top: 20px; } #world td { white-space: nowrap; }
"""

# Both pages (the run report, extra sections alone) open with this head.
HEAD = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ style }}</style>
</head>
<body>
<h1>{{ title }}</h1>
"""

TEMPLATE = (
    HEAD
    + r"""<div class="meta">{{ run_dir }} · backend {{ backend }} · """
    + r"""{{ done_iterations }} of {{ total_iterations }} iterations
finished · written {{ now }}</div>
{% if sections %}{% for s in sections %}{{ s }}{% endfor %}
<p class="note">The rest of this page is the run report of the loop run {{ run_dir }}.</p>{% endif %}

<h2 id="status">Stages</h2>
<table id="stage-table"><tr><th class="l">t</th>
<th class="l" colspan="{{ stage_cols }}">stage: state (seconds)</th></tr>
{% for row in stages %}<tr><td class="l">{{ row.t }}</td>
{% for c in row.cells %}<td class="l {{ c.state }}">{{ c.name }}:
{{ c.state }}{% if c.seconds is not none %} ({{ '%.0f' % c.seconds }}s){% endif %}{% if c.note %}
<br><span class="note">{{ c.note }}</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>

<h2 id="coevolution">Co-evolution</h2>
<p class="note">The paper's signature is question difficulty (1 − mean confidence of S<sub>t−1</sub>'s votes on
Q<sub>t</sub>'s questions) rising while the reasoner's accuracy rises. This run:</p>
<ul id="coevolution-summary">{% for sentence in narrative %}<li>{{ sentence }}</li>{% endfor %}</ul>
{% if not has_eval %}<p class="note">No evaluation yet: run <code>make eval RUN={{ run_dir }}</code> for benchmark
accuracy.</p>{% endif %}
<div class="charts">{{ coevolution }}</div>

<h2 id="benchmarks">Benchmarks</h2>
{% if table %}
<table id="benchmark-table"><tr><th class="l">benchmark</th><th class="l">scorer</th>
{% for lab in table.labels %}<th>{{ lab }}{% if lab == table.base and lab != "base" %} (base){% endif %}</th>
{% endfor %}</tr>
{% for r in table.rows %}<tr class="{{ 'avg' if r.avg else '' }}"><td class="l">{{ r.title }}</td><td class="l">
{{ r.scorer }}</td>{% for c in r.cells %}<td title="{{ c.title }}">{{ c.text }}{% if c.delta is not none %}
<span class="{{ 'up' if c.delta > 0 else ('down' if c.delta < 0 else '') }}">({{ '%+.1f' % c.delta }})</span>
{% endif %}</td>{% endfor %}</tr>{% endfor %}</table>
<p class="note">Scores in %, delta to the base model in brackets; hover a cell for the number of items scored.
Greedy decoding ({{ table.generation.engine }}, max {{ table.generation.max_new_tokens }} new tokens).
{% if table.judge %}Judge: {{ table.judge.model }}.{% else %}Judge: off (rule scoring only).{% endif %}</p>
{% else %}<p class="note">No <code>eval/results.json</code> in this run yet
(<code>make eval RUN={{ run_dir }}</code>).</p>
{% endif %}

<h2 id="iterations">Questions per iteration</h2>
{% if iteration_rows %}
<table id="iteration-table"><tr><th>t</th><th>generated</th><th>parsed</th><th>labelled</th><th>kept</th>
<th>question parse rate</th><th>answer parse rate</th><th>difficulty</th><th>band</th><th class="l">filter reasons</th>
<th>clusters / sampled</th><th>mean rep. penalty</th></tr>
{% for r in iteration_rows %}<tr><td>{{ r.t }}</td><td>{{ r.generated }}</td><td>{{ r.parsed }}</td>
<td>{{ r.labelled }}</td><td>{{ r.kept }}</td><td>{{ r.qparse }}</td><td>{{ r.aparse }}</td><td>{{ r.difficulty }}</td>
<td>{{ r.band }}</td><td class="l">{{ r.reasons }}</td><td>{{ r.clusters }}</td><td>{{ r.penalty }}</td>
</tr>{% endfor %}</table>
<div class="charts">{% for h in histograms %}{{ h }}{% endfor %}</div>
<div class="charts">{{ reasons }}{{ rates }}</div>
{% else %}<p class="note">No finished iteration yet.</p>{% endif %}

<h2 id="training">Training curves</h2>
{% if curves %}<div class="charts">{% for c in curves %}{{ c }}{% endfor %}</div>
{% else %}<p class="note">No training logs found
(iter_t/&lt;role&gt;/metrics.jsonl or logs/iter_t/&lt;role&gt;.log).</p>
{% endif %}

<h2 id="gallery">Gallery</h2>
<p class="note">A seeded sample per iteration: about half kept, the rest spread over the drop reasons. Votes are the
reasoner's m extracted answers (∅: no parsable answer).</p>
<div class="filters"><button data-show="all" class="on">all ({{ gallery|length }})</button>
<button data-show="kept">kept ({{ kept_count }})</button>
<button data-show="dropped">dropped ({{ gallery|length - kept_count }})</button></div>
<div class="gallery" id="gallery-grid">
{% for g in gallery %}{% set status = 'kept' if g.kept else 'dropped' %}
<div class="card {{ status }}" data-status="{{ status }}" data-iteration="{{ g.iteration }}">
{% if g.image_uri %}<img src="{{ g.image_uri }}" alt="image of {{ g.id }}">{% else %}<div class="note">(image not
available)</div>{% endif %}
<div><span class="tag">t={{ g.iteration }}</span><span class="tag">{{ g.reason }}</span>{% if g.question_type %}
<span class="tag">{{ g.question_type }}</span>{% endif %}</div>
{% if g.question %}<div class="q">{{ g.question }}</div>
{% else %}<div class="raw">{{ (g.raw_output or '(no output)')[:300] }}</div>{% endif %}
<div>pseudo-label <b>{{ g.pseudo_label if g.pseudo_label is not none else '–' }}</b>, confidence
<b>{{ '%.2f' % g.confidence if g.confidence is not none else '–' }}</b> (m={{ g.num_samples }}{% if g.num_unparsed %},
unparsed {{ g.num_unparsed }}{% endif %})</div>
{% if g.votes %}<div class="votes">votes: {% for a, n in g.votes %}<span class="tag">{{ a }} ×{{ n }}</span>
{% endfor %}</div>{% endif %}
</div>{% endfor %}
</div>
<script>
document.querySelectorAll(".filters button").forEach(function (button) {
  button.addEventListener("click", function () {
    var show = button.getAttribute("data-show");
    document.querySelectorAll(".filters button").forEach(function (b) { b.classList.toggle("on", b === button); });
    document.querySelectorAll("#gallery-grid .card").forEach(function (card) {
      card.hidden = show !== "all" && card.getAttribute("data-status") !== show;
    });
  });
});
</script>
</body>
</html>
"""
)


SECTIONS_PAGE = (
    HEAD
    + r"""<div class="meta">written {{ now }} · no loop run directory to report on</div>
{% for s in sections %}{{ s }}{% endfor %}
</body>
</html>
"""
)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render_html(data: RunData, sections: Sequence[str] = ()) -> str:
    """The run report; `sections`, HTML fragments from the report's callers (the controlled world's results, say),
    go at the top."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    markup = jinja2.utils.markupsafe.Markup  # the charts are built from escaped text already
    stages = stage_rows(data)
    page = env.from_string(TEMPLATE).render(
        title=f"VisPlay run report: {data.name}",
        style=markup(STYLE),
        sections=[markup(section) for section in sections],
        run_dir=str(data.run_dir),
        backend=data.manifest.get("backend") or data.recipe.get("backend") or "?",
        done_iterations=len(data.iterations),
        total_iterations=data.total_iterations,
        now=_now(),
        stages=stages,
        stage_cols=max((len(r["cells"]) for r in stages), default=1),
        has_eval=data.eval_results is not None,
        coevolution=markup(coevolution_chart(data)),
        narrative=coevolution_summary(data),
        table=benchmark_table(data.eval_results),
        iteration_rows=iteration_rows(data),
        histograms=[markup(histogram_chart(s)) for s in data.iterations],
        reasons=markup(reasons_chart(data)) if data.iterations else "",
        rates=markup(rates_chart(data)) if data.iterations else "",
        curves=[markup(c) for c in curve_charts(data)],
        gallery=data.gallery,
        kept_count=sum(g.kept for g in data.gallery),
    )
    return page


def render_sections_page(title: str, sections: Sequence[str]) -> str:
    """A page with the given HTML sections alone (no loop run to report on)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    markup = jinja2.utils.markupsafe.Markup
    return env.from_string(SECTIONS_PAGE).render(
        title=title, style=markup(STYLE), now=_now(), sections=[markup(section) for section in sections]
    )


def write_report(
    run_dir: str | Path | None,
    out: str | Path | None = None,
    *,
    eval_dir: str | Path | None = None,
    gallery_per_iteration: int = 12,
    seed: int = 0,
    sections: Sequence[str] = (),
    title: str | None = None,
) -> Path:
    """Write the report of `run_dir` (default `run_dir/report.html`) and return its path.

    `sections`, HTML fragments (trusted markup the caller rendered), go at the top; with no `run_dir` the page holds
    them alone under `title`, and `out` is required.
    """
    if run_dir is None:
        if not sections or out is None or title is None:
            raise ValueError("without a run directory, give sections, a title and an output path")
        path, page = Path(out), render_sections_page(title, sections)
    else:
        data = collect(run_dir, eval_dir=eval_dir, gallery_per_iteration=gallery_per_iteration, seed=seed)
        path, page = Path(out) if out else data.run_dir / "report.html", render_html(data, sections)
    atomic_write_text(path, page)
    return path


__all__ = ["render_html", "render_sections_page", "write_report"]
