"""Inline SVG charts (line, grouped bars, histogram with a band) as strings: no plotting library, no JavaScript.

Each chart is an `<svg class="chart" data-chart=NAME>` with a title, axes, ticks and a legend; every mark carries a
`<title>` so hovering shows its value. Missing values (None/NaN) break a line instead of being drawn as zero; a line's
points may carry error bars (a spread such as the std over seeds).
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
FONT = "font-family='system-ui, sans-serif'"


def _ok(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = [round(math.floor(lo / step) * step, 10)]
    while ticks[-1] < hi - step * 1e-9:  # the last tick is at or above hi: every value stays inside the frame
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def integer_ticks(lo: float, hi: float, n: int = 6) -> list[int]:
    """Ticks for a count axis (steps, iterations): whole numbers only."""
    return sorted({int(t) for t in _nice_ticks(lo, hi, n) if float(t).is_integer() and lo <= t <= hi}) or [int(lo)]


def _fmt(v: float) -> str:
    if abs(v) >= 1000 or (v and abs(v) < 0.01):
        return f"{v:.2g}"
    return f"{v:.2f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


class _Frame:
    def __init__(self, name, title, width, height, x_range, y_range, x_label, y_label, legend_rows=0):
        self.name, self.title = name, title
        self.w, self.h = width, height
        self.left, self.right, self.top = 56, 16, 34
        self.bottom = 44 + 18 * legend_rows
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.x_label, self.y_label = x_label, y_label
        self.parts: list[str] = []

    def x(self, v: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (v - self.x0) / span * (self.w - self.left - self.right)

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.h - self.bottom - (v - self.y0) / span * (self.h - self.top - self.bottom)

    def axes(self, x_ticks, y_ticks, x_tick_labels=None):
        p = self.parts
        bx, by = self.left, self.h - self.bottom
        for t in y_ticks:
            yy = self.y(t)
            p.append(f"<line x1='{bx}' y1='{yy:.1f}' x2='{self.w - self.right}' y2='{yy:.1f}' stroke='#e5e5e5'/>")
            p.append(f"<text x='{bx - 6}' y='{yy + 4:.1f}' text-anchor='end' font-size='11' {FONT}>{_fmt(t)}</text>")
        for i, t in enumerate(x_ticks):
            xx = self.x(t)
            label = x_tick_labels[i] if x_tick_labels else _fmt(t)
            p.append(f"<line x1='{xx:.1f}' y1='{by}' x2='{xx:.1f}' y2='{by + 4}' stroke='#555'/>")
            p.append(
                f"<text x='{xx:.1f}' y='{by + 16}' text-anchor='middle' font-size='11' {FONT}>"
                f"{escape(str(label))}</text>"
            )
        p.append(f"<line x1='{bx}' y1='{by}' x2='{self.w - self.right}' y2='{by}' stroke='#555'/>")
        p.append(f"<line x1='{bx}' y1='{self.top}' x2='{bx}' y2='{by}' stroke='#555'/>")
        p.append(
            f"<text x='{(bx + self.w - self.right) / 2:.1f}' y='{by + 32}' text-anchor='middle' font-size='12' "
            f"{FONT}>{escape(self.x_label)}</text>"
        )
        p.append(
            f"<text transform='translate(14,{(self.top + by) / 2:.1f}) rotate(-90)' text-anchor='middle' "
            f"font-size='12' {FONT}>{escape(self.y_label)}</text>"
        )

    def legend(self, entries: list[tuple[str, str, str]]):
        """(label, colour, kind: line|dash|box) in rows under the x-axis label."""
        x, y = self.left, self.h - self.bottom + 50
        for label, color, kind in entries:
            width = 26 + 7 * len(label)
            if x + width > self.w - self.right and x > self.left:
                x, y = self.left, y + 18
            if kind == "box":
                self.parts.append(f"<rect x='{x}' y='{y - 9}' width='14' height='10' fill='{color}' opacity='0.8'/>")
            else:
                dash = " stroke-dasharray='5,3'" if kind == "dash" else ""
                self.parts.append(
                    f"<line x1='{x}' y1='{y - 4}' x2='{x + 16}' y2='{y - 4}' stroke='{color}' "
                    f"stroke-width='2.5'{dash}/>"
                )
            self.parts.append(f"<text x='{x + 20}' y='{y}' font-size='11' {FONT}>{escape(label)}</text>")
            x += width

    def render(self) -> str:
        head = (
            f"<svg class='chart' data-chart='{escape(self.name)}' xmlns='http://www.w3.org/2000/svg' "
            f"viewBox='0 0 {self.w} {self.h}' width='{self.w}' height='{self.h}' role='img' "
            f"aria-label='{escape(self.title)}'>"
        )
        title = (
            f"<text x='{self.w / 2:.1f}' y='20' text-anchor='middle' font-size='14' font-weight='600' {FONT}>"
            f"{escape(self.title)}</text>"
        )
        return head + title + "".join(self.parts) + "</svg>"


def _legend_rows(labels: list[str], width: int, left: int = 56, right: int = 16) -> int:
    rows, x = 1, left
    for label in labels:
        w = 26 + 7 * len(label)
        if x + w > width - right and x > left:
            rows, x = rows + 1, left
        x += w
    return rows


def line_chart(
    name: str,
    title: str,
    series: list[dict],
    *,
    x_label: str = "",
    y_label: str = "",
    y_range: tuple[float, float] | None = None,
    x_ticks: list | None = None,
    x_tick_labels: list[str] | None = None,
    vlines: list[tuple[float, str]] = (),
    width: int = 640,
    height: int = 320,
    markers: bool = True,
) -> str:
    """`series`: [{"label", "x": [...], "y": [...], "err"?: [...], "color"?, "dash"?}]. Points with a missing y break
    the line; `err` draws y ± err as an error bar at each point where it is given and positive."""
    xs = [x for s in series for x, y in zip(s["x"], s["y"], strict=True) if _ok(y)]
    ys = [v for s in series for y, e in _with_err(s) if _ok(y) for v in ((y - e, y + e) if e else (y,))]
    if not xs:
        return empty_chart(name, title, "no data", width)
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y_range is None:
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
        ticks = _nice_ticks(lo - pad, hi + pad)
        y_range = (ticks[0], ticks[-1])
    else:
        ticks = _nice_ticks(*y_range)
    labels = [s["label"] for s in series]
    f = _Frame(name, title, width, height, (x0, x1), y_range, x_label, y_label, _legend_rows(labels, width))
    f.axes(
        x_ticks if x_ticks is not None else _nice_ticks(x0, x1, 6),
        [t for t in ticks if y_range[0] <= t <= y_range[1]],
        x_tick_labels,
    )
    for vx, vlabel in vlines:
        xx = f.x(vx)
        f.parts.append(
            f"<line x1='{xx:.1f}' y1='{f.top}' x2='{xx:.1f}' y2='{f.h - f.bottom}' stroke='#999' "
            f"stroke-dasharray='2,3'><title>{escape(vlabel)}</title></line>"
        )
        f.parts.append(
            f"<text x='{xx + 3:.1f}' y='{f.top + 10}' font-size='10' fill='#777' {FONT}>{escape(vlabel)}</text>"
        )
    legend = []
    for i, s in enumerate(series):
        color = s.get("color") or PALETTE[i % len(PALETTE)]
        dash = " stroke-dasharray='6,4'" if s.get("dash") else ""
        segments, current = [], []
        for x, y in zip(s["x"], s["y"], strict=True):
            if _ok(y):
                current.append((f.x(x), f.y(y), x, y))
            elif current:
                segments.append(current)
                current = []
        if current:
            segments.append(current)
        err_text = {}
        for x, (y, e) in zip(s["x"], _with_err(s), strict=True):
            if _ok(y) and e:
                err_text[x] = f" ± {_fmt(e)}"
                f.parts.append(_error_bar(f, f.x(x), y, e, color))
        for seg in segments:
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b, _, _ in seg)
            f.parts.append(
                f"<polyline class='series' data-series='{escape(s['label'])}' points='{pts}' fill='none' "
                f"stroke='{color}' stroke-width='2.2'{dash}/>"
            )
            if markers:
                for a, b, x, y in seg:
                    f.parts.append(
                        f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3.5' fill='{color}'><title>"
                        f"{escape(s['label'])}: x={_fmt(x)}, {_fmt(y)}{err_text.get(x, '')}</title></circle>"
                    )
        legend.append((s["label"], color, "dash" if s.get("dash") else "line"))
    f.legend(legend)
    return f.render()


def _with_err(series: dict) -> list[tuple[float | None, float]]:
    """(y, err) per point of a line; err is 0 where the series has none (or a missing or negative one)."""
    errs = series.get("err") or [None] * len(series["y"])
    return [(y, e if _ok(e) and e > 0 else 0.0) for y, e in zip(series["y"], errs, strict=True)]


def _error_bar(f: _Frame, xx: float, y: float, err: float, color: str) -> str:
    """A vertical bar from y - err to y + err with caps, clipped to the frame."""
    lo, hi = f.y(max(y - err, f.y0)), f.y(min(y + err, f.y1))
    return (
        f"<path class='errbar' d='M{xx - 4:.1f},{lo:.1f}h8M{xx:.1f},{lo:.1f}V{hi:.1f}M{xx - 4:.1f},{hi:.1f}h8' "
        f"stroke='{color}' stroke-width='1.5' fill='none' opacity='0.8'/>"
    )


def bar_chart(
    name: str,
    title: str,
    categories: list[str],
    groups: list[dict],
    *,
    y_label: str = "",
    x_label: str = "",
    width: int = 640,
    height: int = 300,
    stacked: bool = False,
) -> str:
    """Grouped (or stacked) vertical bars: `groups` = [{"label", "values": one per category, "color"?}]."""
    if not categories or not groups:
        return empty_chart(name, title, "no data", width)
    values = [[v or 0 for v in g["values"]] for g in groups]
    top = max((sum(col) for col in zip(*values, strict=True)), default=0) if stacked else max(map(max, values))
    ticks = _nice_ticks(0, top or 1)
    labels = [g["label"] for g in groups]
    f = _Frame(
        name, title, width, height, (0, len(categories)), (0, ticks[-1]), x_label, y_label, _legend_rows(labels, width)
    )
    f.axes([i + 0.5 for i in range(len(categories))], ticks, categories)
    slot = (f.x(1) - f.x(0)) * 0.8
    for c in range(len(categories)):
        base = 0.0
        for g, (group, vals) in enumerate(zip(groups, values, strict=True)):
            color = group.get("color") or PALETTE[g % len(PALETTE)]
            v = vals[c]
            if stacked:
                x, w, y0, y1 = f.x(c) + (f.x(1) - f.x(0)) * 0.1, slot, base, base + v
                base += v
            else:
                w = slot / len(groups)
                x, y0, y1 = f.x(c) + (f.x(1) - f.x(0)) * 0.1 + g * w, 0.0, v
            h = f.y(y0) - f.y(y1)
            f.parts.append(
                f"<rect class='bar' x='{x:.1f}' y='{f.y(y1):.1f}' width='{max(w - 1, 1):.1f}' "
                f"height='{max(h, 0):.1f}' fill='{color}'><title>{escape(categories[c])} / "
                f"{escape(group['label'])}: {_fmt(v)}</title></rect>"
            )
    f.legend([(g["label"], g.get("color") or PALETTE[i % len(PALETTE)], "box") for i, g in enumerate(groups)])
    return f.render()


def histogram(
    name: str,
    title: str,
    edges: list[float],
    counts: list[int],
    *,
    band: tuple[float, float] | None = None,
    x_label: str = "",
    y_label: str = "questions",
    width: int = 420,
    height: int = 280,
    color: str = "#1f77b4",
) -> str:
    """Bars over [edges[i], edges[i+1]); the band [low, high] shaded and bounded by dashed lines."""
    if not counts or not any(counts):
        return empty_chart(name, title, "no data", width, height)
    ticks = _nice_ticks(0, max(counts), 4)
    entries = [("questions", color, "box")] + ([("kept band", "#2ca02c", "dash")] if band else [])
    f = _Frame(
        name,
        title,
        width,
        height,
        (edges[0], edges[-1]),
        (0, ticks[-1]),
        x_label,
        y_label,
        _legend_rows([e[0] for e in entries], width),
    )
    if band:
        lo, hi = band
        f.parts.append(
            f"<rect class='band' x='{f.x(lo):.1f}' y='{f.top}' width='{f.x(hi) - f.x(lo):.1f}' "
            f"height='{f.h - f.bottom - f.top}' fill='#2ca02c' opacity='0.12'>"
            f"<title>band {_fmt(lo)} ≤ p ≤ {_fmt(hi)}</title></rect>"
        )
    f.axes(_nice_ticks(edges[0], edges[-1], 5), ticks)
    for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True):
        x, w = f.x(a), f.x(b) - f.x(a)
        f.parts.append(
            f"<rect class='bar' x='{x + 0.5:.1f}' y='{f.y(c):.1f}' width='{max(w - 1, 1):.1f}' "
            f"height='{f.y(0) - f.y(c):.1f}' fill='{color}' opacity='0.85'><title>p in "
            f"[{_fmt(a)}, {_fmt(b)}): {c}</title></rect>"
        )
    if band:
        for v in band:
            f.parts.append(
                f"<line class='band-edge' x1='{f.x(v):.1f}' y1='{f.top}' x2='{f.x(v):.1f}' "
                f"y2='{f.h - f.bottom}' stroke='#2ca02c' stroke-width='2' stroke-dasharray='5,3'/>"
            )
    f.legend(entries)
    return f.render()


def empty_chart(name: str, title: str, message: str, width: int = 640, height: int = 120) -> str:
    return (
        f"<svg class='chart empty' data-chart='{escape(name)}' xmlns='http://www.w3.org/2000/svg' "
        f"viewBox='0 0 {width} {height}' width='{width}' height='{height}'><text x='{width / 2}' y='20' "
        f"text-anchor='middle' font-size='14' font-weight='600' {FONT}>{escape(title)}</text><text "
        f"x='{width / 2}' y='{height / 2 + 10}' text-anchor='middle' font-size='12' fill='#888' {FONT}>"
        f"{escape(message)}</text></svg>"
    )
