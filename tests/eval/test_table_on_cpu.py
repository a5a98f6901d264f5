"""The results table: deltas to the base, the average over benchmarks every checkpoint has, items scored, and a
judge whose calls all failed shown as such (no score, 0/N items) instead of vanishing."""

import csv
import io

from verl_ext.eval.table import render_csv, render_markdown, table_rows


def results(judge_scores):
    def entry(rule, judge):
        out = {"rule": {"score": rule, "n": 10, "total": 10}}
        out["judge"] = (
            None
            if judge is False
            else {"score": judge, "n": 0 if judge is None else 9, "total": 10, "failed": 10 if judge is None else 1}
        )
        return out

    return {
        "checkpoints": [{"label": "base"}, {"label": "iter_1"}],
        "base": "base",
        "benchmarks": ["a", "b", "c"],
        "titles": {"a": "Bench A", "b": "Bench B", "c": "Bench C"},
        "judge": {"model": "j", "base_url": "http://x/v1"},
        "generation": {"engine": "hf", "max_new_tokens": 8},
        "scores": {
            "a": {"base": entry(10.0, judge_scores[0]), "iter_1": entry(20.0, judge_scores[1])},
            "b": {"base": entry(30.0, None), "iter_1": entry(50.0, None)},
            "c": {"base": entry(40.0, False)},  # iter_1 not evaluated on c
        },
    }


def test_rows_deltas_and_average():
    rows = {(r["benchmark"], r["scorer"]): r for r in table_rows(results((60.0, 70.0)))}
    assert rows[("a", "rule")]["cells"]["iter_1"] == {"score": 20.0, "delta": 10.0, "n": 10, "total": 10, "failed": 0}
    assert rows[("c", "rule")]["cells"]["iter_1"] is None
    avg = rows[("average", "rule")]
    assert avg["title"] == "average (2 benchmarks, official protocol)"  # c lacks iter_1: left out of the average
    assert avg["cells"]["base"]["score"] == 20.0 and avg["cells"]["iter_1"]["delta"] == 15.0
    assert rows[("b", "judge")]["cells"]["base"]["score"] is None  # every judge call failed
    assert rows[("average", "judge")]["title"] == "average (1 benchmarks, official protocol)"


def test_markdown_and_csv():
    md = render_markdown(results((60.0, 70.0)))
    assert "| Bench A | rule | 10.0 | 20.0 (+10.0) | 10 |" in md
    assert "| Bench B | judge | – | – | 0/10 |" in md  # failures are visible, not hidden
    assert "| Bench A | judge | 60.0 | 70.0 (+10.0) | 9/10 |" in md
    assert "| Bench C | rule | 40.0 | – | 10 / – |" in md
    rows = list(csv.DictReader(io.StringIO(render_csv(results((60.0, 70.0))))))
    assert rows[0] == {
        "benchmark": "a",
        "scorer": "rule",
        "base": "10.0",
        "base_delta": "",
        "base_n": "10",
        "iter_1": "20.0",
        "iter_1_delta": "10.0",
        "iter_1_n": "10",
    }
    assert [r["benchmark"] for r in rows if r["scorer"] == "judge"] == ["a", "b", "c", "average"]


def test_micro_average_pools_items_and_judged_only_benchmarks_have_no_rule_row():
    res = results([50.0, 60.0])
    res["protocol"], res["average"] = "visplay", "micro"
    res["scores"]["a"]["base"]["rule"]["n"] = 30  # a: 10.0 on 30 items, b: 30.0 on 10 items
    res["scores"]["c"]["iter_1"] = res["scores"]["c"]["base"]
    res["scores"]["c"]["base"]["rule"]["n"] = 10
    rows = {(r["benchmark"], r["scorer"]): r for r in table_rows(res)}
    base = rows[("average", "rule")]["cells"]["base"]
    assert base["score"] == round((10.0 * 30 + 30.0 * 10 + 40.0 * 10) / 50, 2)  # pooled, not (10+30+40)/3
    assert rows[("average", "rule")]["title"] == "micro average (3 benchmarks, visplay protocol)"
    assert "Protocol: visplay" in render_markdown(res)

    res = results([50.0, 60.0])
    res["rule_scored"] = {"a": False}  # judged only (MM-Vet)
    res["scores"]["a"]["base"]["rule"] = res["scores"]["a"]["iter_1"]["rule"] = None
    res["scores"]["a"]["base"]["judge"]["metrics"] = {"aAcc": 50.0, "fAcc": 40.0, "qAcc": 30.0}
    res["scores"]["a"]["iter_1"]["judge"]["metrics"] = {"aAcc": 60.0, "fAcc": 45.0, "qAcc": 20.0}
    rows = {(r["benchmark"], r["scorer"]): r for r in table_rows(res)}
    assert ("a", "rule") not in rows and ("a", "judge") in rows
    assert rows[("a:fAcc", "judge")]["cells"]["iter_1"]["delta"] == 5.0 and not rows[("a:qAcc", "judge")]["in_average"]
    assert rows[("average", "rule")]["title"].startswith("average (1 benchmarks")  # b only (c lacks iter_1)
