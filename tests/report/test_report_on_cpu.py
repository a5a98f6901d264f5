"""The run report's content: one self-contained HTML file with the co-evolution plot, the benchmark table,
per-iteration histograms with the band, filter reasons, rates, training curves from both log formats, and a gallery
of embedded images with votes; an unfinished run renders too."""

import base64
import io
import json
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from verl_ext.report.__main__ import main
from verl_ext.report.collect import collect, parse_verl_console
from verl_ext.report.render import write_report


class Page(HTMLParser):
    """Tags and attributes of a page, for structural assertions."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def test_parse_verl_console_lines():
    rows = parse_verl_console(
        "(TaskRunner pid=1) step:4 - critic/score/mean:0.5 - actor/pg_loss:-0.01 - name:abc\nnoise\nstep:5 - x:1"
    )
    assert rows == [{"step": 4, "critic/score/mean": 0.5, "actor/pg_loss": -0.01}, {"step": 5, "x": 1.0}]


def test_collect_reads_every_part(report_run):
    data = collect(report_run)
    assert [s["iteration"] for s in data.iterations] == [1, 2] and data.total_iterations == 2
    assert set(data.curves["reasoner"]) == {"reward", "visplay/accuracy", "visplay/format"}
    assert data.curves["reasoner"]["reward"] == [
        (1, 1, pytest.approx(0.3)),
        (1, 2, pytest.approx(0.4)),
    ]  # the train_runtime row has no reward
    assert set(data.curves["questioner"]) == {"critic/score/mean", "visplay/confidence"}
    assert [p[1] for p in data.curves["questioner"]["critic/score/mean"]] == [1, 2, 3]
    assert data.eval_results["base"] == "base"
    by_it = {t: [g for g in data.gallery if g.iteration == t] for t in (1, 2)}
    assert all(0 < len(v) <= 12 for v in by_it.values())
    assert any(g.kept for g in data.gallery) and any(not g.kept for g in data.gallery)
    voted = [g for g in by_it[1] if g.question is not None and g.pseudo_label is not None]
    assert voted and all(sum(n for _, n in g.votes) == 4 for g in voted) and all(g.image_uri for g in voted)
    assert all(("∅", 1) in g.votes for g in voted)
    assert all(g.raw_output for g in data.gallery if g.question is None)  # unparsable: the raw output instead


def test_report_is_one_self_contained_page(report_run, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["--run", str(report_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    html = out.read_text()
    page = Page(html)

    # self-contained: nothing fetched from anywhere
    assert not page.find("link") and not [a for a in page.find("script") if a.get("src")]
    srcs = [a["src"] for a in page.find("img")]
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert not re.search(r"""(src|href)=["']https?://""", html)

    charts = {a["data-chart"] for a in page.find("svg")}
    assert {"coevolution", "rates", "filter-reasons", "confidence-1", "confidence-2"} <= charts
    assert {"curves-questioner", "curves-reasoner"} <= charts

    # co-evolution: difficulty per iteration, accuracy from the eval (rule and judge) and from training
    coev = html[html.index("data-chart='coevolution'") :].split("</svg>", 1)[0]
    series = re.findall(r"data-series='([^']+)'", coev)
    assert any(s.startswith("question difficulty") for s in series)
    assert {"reasoner S_t: benchmark average, rule", "reasoner S_t: benchmark average, judge"} <= set(series)
    assert any("training accuracy" in s for s in series)
    assert coev.count("<circle") >= 2 + 3 + 3 + 1

    # histogram: the band is drawn
    hist = html[html.index("data-chart='confidence-1'") :].split("</svg>", 1)[0]
    assert "class='band'" in hist and hist.count("class='band-edge'") == 2 and "class='bar'" in hist

    # benchmark table with deltas; rule and judge rows; failed judge calls visible per cell
    assert "MMStar" in html and "MATH-Vision" in html and "(+4.0)" in html and "(+7.5)" in html
    assert "49 of 50 items scored, 1 failed" in html
    assert html.count('<tr class="avg">') == 2  # rule and judge averages

    # gallery: cards with status, images decode
    cards = page.find("div", **{"class": "card kept"}) + page.find("div", **{"class": "card dropped"})
    assert cards and len(cards) >= len(srcs)
    header, payload = srcs[0].split(",", 1)
    assert Image.open(io.BytesIO(base64.b64decode(payload))).size[0] > 0
    assert "votes:" in html and "pseudo-label" in html


def test_unfinished_run_and_no_eval_still_render(tmp_path, build_run):
    run = build_run(tmp_path / "run", stop_after="2:pseudo_label")
    path = write_report(run)
    html = path.read_text()
    assert path == run / "report.html"
    assert "1 of 2 iterations" in html and "pending" in html and "No <code>eval/results.json</code>" in html
    assert "data-chart='confidence-1'" in html and "data-chart='confidence-2'" not in html


def _run_data(difficulties, train=None, eval_results=None):
    from types import SimpleNamespace

    curves = {"reasoner": {"visplay/accuracy": [(t, 0, v) for t, v in (train or {}).items()]}} if train else {}
    return SimpleNamespace(
        iterations=[{"iteration": t + 1, "difficulty": d} for t, d in enumerate(difficulties)],
        eval_results=eval_results,
        curves=curves,
        manifest={},
    )


def test_coevolution_text_is_computed_from_the_numbers():
    from verl_ext.report.render import coevolution_summary

    # Difficulty fell and accuracy stayed flat: the text says so and claims nothing else.
    text = " ".join(coevolution_summary(_run_data([0.469, 0.417], train={1: 0.2, 2: 0.2})))
    assert "Question difficulty (1 − mean p) fell from 0.469 at t = 1 to 0.417 at t = 2 (-0.052" in text
    assert "training accuracy against its own pseudo-labels did not change" in text
    assert "does not show the paper's signature: difficulty fell and" in text
    assert "harder" not in text and "more accurate" not in text and "shows the paper's signature" not in text

    text = " ".join(coevolution_summary(_run_data([0.3, 0.5, 0.4], train={1: 0.1, 2: 0.2, 3: 0.3})))
    assert (
        "rose from 0.300 at t = 1 to 0.400 at t = 3 (+0.100; per iteration: 0.300, 0.500, 0.400) (not monotonic)"
        in text
    )
    assert "Both rose: this run shows the paper's signature (training accuracy against pseudo-labels)." in text

    text = " ".join(coevolution_summary(_run_data([0.4])))
    assert "a single point" in text and "not measured yet" in text and "Too few measurements" in text


def test_report_states_the_trends_of_its_own_run(report_run, tmp_path):
    from verl_ext.report.render import _eval_average_by_iteration

    html = write_report(report_run, tmp_path / "r.html").read_text()
    data = collect(report_run)
    summary = html[html.index('id="coevolution-summary"') :].split("</ul>", 1)[0]
    d = [s["difficulty"] for s in data.iterations]
    word = "rose" if d[-1] - d[0] >= 0.005 else "fell" if d[-1] - d[0] <= -0.005 else "did not change"
    assert f"Question difficulty (1 − mean p) {word} from {d[0]:.3f}" in summary
    rule = _eval_average_by_iteration(data.eval_results, "rule")
    first, last = rule[min(rule)], rule[max(rule)]
    assert "Reasoner benchmark average (rule scoring)" in summary and f"{first:.3f} at t = 0 (base model)" in summary
    assert f"to {last:.3f} at t = {max(rule)}" in summary
    assert "agreement with t−1" not in html


def test_skipped_images_are_named_in_the_stage_table(tmp_path, build_run):
    from verl_ext.report.render import skipped_note

    assert skipped_note({}) == "" and skipped_note({"skipped": {}}) == ""
    summary = {
        "skipped": {"too_large": 1, "corrupt": 2},
        "skipped_examples": ["b.png (corrupt)", "big.png (too_large)"],
    }
    note = skipped_note(summary)
    assert note == "skipped corrupt 2, too_large 1 (b.png (corrupt), big.png (too_large))"
    assert skipped_note({**summary, "skipped_examples": [f"{i}.png" for i in range(5)]}).endswith("2.png, ...)")

    run_dir = build_run(tmp_path / "run")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"].setdefault("0:images", {"state": "done", "seconds": 1.0})["summary"] = summary
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    html = write_report(run_dir).read_text()
    assert "skipped corrupt 2, too_large 1 (b.png (corrupt), big.png (too_large))" in html
