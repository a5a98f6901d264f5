"""The controlled world's section of the run report: its tables hold the numbers of results.json (read back from the
HTML), its charts show each arm with its spread, missing values render as "–", the markdown and the HTML agree, and
both `python -m verl_ext.world report` and the world experiment's own report write it."""

import copy
import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from verl_ext.report.__main__ import main as report_main
from verl_ext.world.__main__ import main
from verl_ext.world.experiment import ExperimentConfig, SeedPaths
from verl_ext.world.results import (
    ARM_LABELS,
    ARMS,
    LOOP,
    QUESTION_CURVES,
    loop_key,
    render_markdown,
    summarize,
    write_outputs,
)
from verl_ext.world.section import world_section

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = {  # table id -> column header -> the summary metric its cells show
    "world-accuracy": {ARM_LABELS[arm]: f"accuracy.{arm}.greedy" for arm in ARMS},
    "world-swapped": {ARM_LABELS[arm]: f"accuracy.{arm}.greedy_swapped" for arm in ARMS},
}
LABEL_ARM = {label: arm for arm, label in ARM_LABELS.items()}


class Page(HTMLParser):
    """Tables (id -> rows of cell texts, the header row first), chart marks (data-chart -> Counter of "tag.class")
    and element texts by id."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.charts: dict[str, Counter] = {}
        self.texts: dict[str, str] = {}
        self._table = self._cell = self._chart = self._text_id = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "svg":
            self._chart = self.charts.setdefault(a["data-chart"], Counter())
        elif self._chart is not None:
            self._chart[f"{tag}.{a.get('class', '')}"] += 1
        elif tag == "b" and a.get("id"):
            self._text_id = a["id"]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "svg":
            self._chart = None
        elif tag == "b":
            self._text_id = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._text_id:
            self.texts[self._text_id] = self.texts.get(self._text_id, "") + data

    def world_tables(self) -> dict[str, list[list[str]]]:
        return {k: v for k, v in self.tables.items() if k and k.startswith("world-")}

    def cells(self, table_id: str) -> dict[tuple[str, str], str]:
        """(first cell of the row, column header) -> cell text."""
        header, *rows = self.tables[table_id]
        return {(row[0], h): c for row in rows for h, c in zip(header[1:], row[1:], strict=True)}


def assert_cell(text: str, cell: dict | None) -> None:
    """A "mean ± std" cell shows the spread's numbers, to the digits it prints; "–" where there is no mean."""
    mean = (cell or {}).get("mean")
    if mean is None or math.isnan(mean):
        assert text == "–"
        return
    shown_mean, _, shown_std = text.partition(" ± ")
    tolerance = 0.5 * 10 ** -len(shown_mean.partition(".")[2]) + 1e-9
    assert float(shown_mean) == pytest.approx(mean, abs=tolerance), text
    if cell["n"] > 1 and cell.get("std") is not None:
        assert float(shown_std) == pytest.approx(cell["std"], abs=tolerance), text
    else:
        assert not shown_std, text


def markdown_tables(md: str) -> list[list[list[str]]]:
    """Every markdown table as rows of cell texts, the header row first."""
    tables: list[list[list[str]]] = []
    current = None
    for line in md.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        if current is None:
            current = []
            tables.append(current)
        if not line.startswith("|---"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
    return tables


def test_tables_show_the_numbers_of_the_results(world_results):
    page = Page(world_section(world_results))
    by_t = {rec["t"]: rec for rec in world_results["summary"]}
    for table_id, columns in COLUMNS.items():
        header = page.tables[table_id][0]
        assert set(columns) <= set(header), f"{table_id}: a column is missing"
        for (t, name), text in page.cells(table_id).items():
            assert_cell(text, by_t[int(t)][columns[name]])
    assert sorted({t for t, _ in page.cells("world-accuracy")}) == ["0", "1", "2"]
    assert " ± " in page.cells("world-accuracy")[("2", ARM_LABELS["visplay"])]  # the seeds differ there

    header, *rows = page.tables["world-loop"]
    assert header[2:] == list(LOOP.values())
    assert sorted({(r[0], r[1]) for r in rows}) == sorted(
        (t, ARM_LABELS[a]) for t in "12" for a in ("frozen", "visplay")
    )
    for t, label, *cells in rows:  # t = 0 has no questions
        for key, text in zip(LOOP, cells, strict=True):
            assert_cell(text, by_t[int(t)][loop_key(key, LABEL_ARM[label])])

    assert_cell(page.texts["world-blind"], world_results["summary"][0]["prior_accuracy"])
    for arm in ("visplay", "frozen"):
        pooled = world_results["precision_by_confidence"][arm]
        for (p, column), text in page.cells(f"world-precision-{arm}").items():
            t = column.removeprefix("t=")
            assert p == "0.5"
            assert text.startswith(f"{pooled[t]['0.5']['mean']:.2f} [") and text.endswith("(n=20)")

    html = world_section(world_results)
    assert str(world_results["seeds"]) in html and f"{world_results['seconds']['wall']:.0f} s" in html


def test_endpoint_and_recovery_tables_show_the_claims(world_results):
    page = Page(world_section(world_results))
    header, *rows = page.tables["world-endpoint"]
    assert header[:3] == ["t", "arm", "endpoint"]
    claims = {c["t"]: c for c in world_results["claims"]}
    for t, label, endpoint, gain, *_ in rows:
        cell = claims[int(t)]["arms"][LABEL_ARM[label]]
        assert endpoint.startswith(f"{cell['endpoint']['mean']:.3f} [")
        if label != ARM_LABELS["base"]:
            assert gain.startswith(f"{cell['endpoint_gain']['mean']:+.3f} [")
    # the made-up seeds: oracle gains 2x VisPlay's on the endpoint items, so VisPlay recovers half of it
    recovery = {row[0]: row[1] for row in page.tables["world-recovery"][1:]}
    assert recovery["2"].startswith("0.500 [")
    findings = world_section(world_results).split('<ul id="world-findings">')[1].split("</ul>")[0]
    assert "Recovery fraction of VisPlay at t = 2: 0.500 [" in findings and "Perception gain of VisPlay" in findings


def test_charts_show_each_arm_with_its_spread(world_results):
    page = Page(world_section(world_results))
    summary = world_results["summary"]

    def spread_points(keys, recs):
        return sum(1 for rec in recs for k in keys if (rec[k]["std"] or 0) > 0)

    accuracy = page.charts["world-accuracy"]
    assert accuracy["polyline.series"] == len(ARMS) + 2  # each arm's greedy, VisPlay sampled, the blind baseline
    keys = [f"accuracy.{arm}.greedy" for arm in ARMS] + ["accuracy.visplay.sampled"]
    assert accuracy["path.errbar"] == spread_points(keys, summary) > 0
    questions = page.charts["world-questions"]
    assert questions["polyline.series"] == len(QUESTION_CURVES)
    assert questions["path.errbar"] == spread_points(QUESTION_CURVES, [r for r in summary if r["t"] > 0]) > 0


def test_markdown_and_html_show_the_same_tables(world_results):
    html_tables = list(Page(world_section(world_results)).world_tables().values())
    assert html_tables == markdown_tables(render_markdown(world_results))
    # endpoint, recovery, the questioner (VisPlay - frozen), accuracy, swapped, loop, precision x 2 arms, by family
    assert len(html_tables) == 9


def test_missing_values_render_as_a_dash(world_results):
    results = copy.deepcopy(world_results)
    s = results["summary"]
    for rec in s:  # an arm absent
        for kind in ("greedy", "sampled", "greedy_swapped"):
            del rec[f"accuracy.oracle.{kind}"]
    s[1]["accuracy.visplay.greedy"]["mean"] = float("nan")
    s[2]["accuracy.visplay.sampled"]["std"] = None
    s[0]["prior_accuracy"] = {"mean": None, "std": None, "n": 0}
    results["seconds"]["wall"] = None
    results = json.loads(json.dumps(results))  # as read back from results.json, NaN included

    html = world_section(results)
    page = Page(html)
    cells = page.cells("world-accuracy")
    oracle = [c for (_, column), c in cells.items() if column == ARM_LABELS["oracle"]]
    assert oracle and set(oracle) == {"–"}
    assert cells[("1", ARM_LABELS["visplay"])] == "–"
    assert page.cells("world-swapped")[("1", ARM_LABELS["oracle"])] == "–"
    assert page.texts["world-blind"] == "–" and "Wall time –" in html
    assert "nan" not in html.lower()
    assert page.charts["world-accuracy"]["polyline.series"] > 0  # the rest still drawn
    md = render_markdown(results)
    assert "nan" not in md.lower() and "Wall time –" in md


def test_a_single_seed_smoke_run_and_an_empty_summary_render(world_seed):
    cfg = ExperimentConfig(seeds=1, iterations=1, arms=("base", "visplay", "frozen"))
    results = summarize(cfg, [world_seed(1, 0.01, iterations=1, oracle=False)])
    page = Page(world_section(results))
    cells = page.cells("world-accuracy")
    assert sorted({t for t, _ in cells}) == ["0", "1"]
    assert not any(" ± " in c for table in page.world_tables().values() for row in table[1:] for c in row)
    assert cells[("1", ARM_LABELS["oracle"])] == "–" and cells[("0", ARM_LABELS["oracle"])] != "–"
    assert {r[0] for r in page.tables["world-loop"][1:]} == {"1"}
    recovery = page.tables["world-recovery"][1]
    assert recovery == ["1", "–", "–"]  # no oracle arm, nothing to recover
    assert page.charts["world-questions"]["circle."] == len(QUESTION_CURVES)  # one point each, no spread
    assert page.charts["world-questions"]["path.errbar"] == 0

    empty = Page(world_section({"summary": []}))
    assert all(len(rows) == 1 for rows in empty.world_tables().values())  # headers only
    assert set(empty.charts) == {"world-accuracy", "world-questions"}


def test_cli_writes_the_world_section_alone_or_on_top_of_a_run(world_results, report_run, tmp_path):
    path = tmp_path / "world" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(world_results))
    proc = subprocess.run(
        [sys.executable, "-m", "verl_ext.world", "report", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    alone = path.with_name("report.html")
    assert proc.returncode == 0 and proc.stdout.strip() == str(alone), proc.stderr
    page = Page(alone.read_text())
    assert set(COLUMNS) <= set(page.tables) and "stage-table" not in page.tables

    out = tmp_path / "full.html"
    assert main(["report", str(path), "--run", str(report_run), "--out", str(out)]) == 0
    html = out.read_text()
    assert html.index('<section id="world">') < html.index('id="stage-table"')
    assert {"world-accuracy", "world-questions", "coevolution"} <= set(Page(html).charts)


@pytest.mark.parametrize("content", [None, "directory", "{not json", '{"seeds": [1]}', "[]"])
def test_cli_bad_world_results_exit_2(tmp_path, capsys, content):
    path = tmp_path / "results.json"
    if content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err
    assert not out.exists()


def test_report_cli_needs_a_run(capsys):
    with pytest.raises(SystemExit) as exit_info:
        report_main([])
    assert exit_info.value.code == 2 and "--run" in capsys.readouterr().err


def test_world_report_puts_the_section_on_top_of_the_first_seeds_run(tmp_path, report_run, world_seed):
    cfg = ExperimentConfig(seeds=2, first_seed=3, iterations=2)
    run_dir = SeedPaths(tmp_path / "seed_3").run_dir
    shutil.copytree(report_run, run_dir)
    write_outputs(cfg, [world_seed(3, 0.01), world_seed(4, 0.03)], tmp_path, wall_seconds=1.0)
    html = (tmp_path / "report.html").read_text()
    page = Page(html)
    assert set(COLUMNS) <= set(page.tables) and "stage-table" in page.tables
    assert html.index('<section id="world">') < html.index('id="stage-table"') and str(run_dir) in html
