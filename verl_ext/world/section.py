"""The controlled world's results (the results.json of `python -m verl_ext.world`) as a section of the run report: the
co-evolution against ground truth as inline SVG charts and the results tables that results.md holds, as HTML.
"""

from __future__ import annotations

import jinja2

from verl_ext.report import svg

from .results import (
    ARM_LABELS,
    ARMS,
    QUESTION_CURVES,
    blind_baseline,
    curve,
    findings,
    results_tables,
    setup_line,
    time_line,
)

ARM_COLORS = {"visplay": "#1f77b4", "oracle": "#2ca02c", "base": "#ff7f0e", "frozen": "#17becf"}
QUESTION_COLORS = ("#d62728", "#9467bd", "#8c564b", "#e377c2")

SECTION = r"""<section id="world">
<h2 id="world-results">Controlled world (ground truth)</h2>
<p class="note">{{ setup }} {{ timing }}</p>
<p>Blind baseline (the seed set's most common answer per template, never looking at the image):
<b id="world-blind">{{ blind }}</b>.</p>
{% if findings %}<ul id="world-findings">{% for f in findings %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
<div class="charts">{% for c in charts %}{{ c }}{% endfor %}</div>
{% for t in tables %}<h3>{{ t.title }}</h3>
{% if t.note %}<p class="note">{{ t.note }}</p>{% endif %}
<table id="world-{{ t.id }}"><tr>{% for h in t.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in t.rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}</section>
"""


def _present(series: list[dict]) -> list[dict]:
    return [s for s in series if any(y is not None for y in s["y"])]


def accuracy_chart(results: dict) -> str:
    """Greedy accuracy of each arm per iteration (mean, error bar: std over seeds), VisPlay's sampled accuracy and
    the blind baseline."""
    summary = results.get("summary") or []
    ts = [rec["t"] for rec in summary]
    series = []
    for arm in ARMS:
        mean, std = curve(summary, f"accuracy.{arm}.greedy", ts)
        series.append(
            {"label": f"{ARM_LABELS[arm]}, greedy", "x": ts, "y": mean, "err": std, "color": ARM_COLORS[arm]}
        )
    mean, std = curve(summary, "accuracy.visplay.sampled", ts)
    series.append(
        {"label": "VisPlay, sampled", "x": ts, "y": mean, "err": std, "color": ARM_COLORS["visplay"], "dash": True}
    )
    blind, _ = curve(summary, "prior_accuracy", ts)
    series.append({"label": "blind baseline", "x": ts, "y": blind, "color": "#7f7f7f", "dash": True})
    return svg.line_chart(
        "world-accuracy",
        "Greedy accuracy on the balanced eval set (mean ± std over seeds)",
        _present(series),
        x_label="iteration t (0 = base model)",
        y_label="accuracy",
        x_ticks=ts,
        width=720,
        height=360,
    )


def questions_chart(results: dict) -> str:
    """The questions of Q_t as the oracle sees them: difficulty, kept pseudo-label precision, oracle-parsable share."""
    summary = results.get("summary") or []
    ts = [rec["t"] for rec in summary if rec["t"] > 0]
    series = []
    for (key, label), color in zip(QUESTION_CURVES.items(), QUESTION_COLORS, strict=True):
        mean, std = curve(summary, key, ts)
        series.append({"label": label, "x": ts, "y": mean, "err": std, "color": color})
    return svg.line_chart(
        "world-questions",
        "Questions of Q_t: difficulty under S_t−1 and under the fixed S_0, pseudo-label precision",
        _present(series),
        x_label="iteration t",
        y_label="0 … 1",
        y_range=(0.0, 1.0),
        x_ticks=ts,
        width=720,
        height=360,
    )


def world_section(results: dict) -> str:
    """The section as an HTML fragment (`<section id="world">`)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    markup = jinja2.utils.markupsafe.Markup  # the charts are built from escaped text already
    return env.from_string(SECTION).render(
        setup=setup_line(results),
        blind=blind_baseline(results),
        findings=findings(results),
        timing=time_line(results),
        charts=[markup(accuracy_chart(results)), markup(questions_chart(results))],
        tables=results_tables(results),
    )
