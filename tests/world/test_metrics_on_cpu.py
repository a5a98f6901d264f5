"""The oracle's measurements of a loop iteration, the mean +- spread over seeds, and the report (no models)."""

import json

import pytest

from verl_ext.world.grammar import TEMPLATES
from verl_ext.world.metrics import (
    aggregate,
    label_metrics,
    pooled_precision_by_confidence,
    question_metrics,
    spread,
    template_entropy,
)
from verl_ext.world.scenes import image_id, make_scene


def _shape_image(n_objects_min=2):
    """An unlabeled shapes image id and its scene, with at least two objects."""
    for i in range(100):
        scene = make_scene("unlabeled", 0, i)
        if scene["kind"] == "shapes" and len(scene["objects"]) >= n_objects_min:
            return image_id("unlabeled", 0, i), scene
    raise AssertionError("no scene")


def test_question_metrics_counts_grammar_drift_and_own_answers():
    img, scene = _shape_image()
    n = len(scene["objects"])
    questions = {
        "source_image_id": [img] * 5,
        "question": [
            "How many shapes are there?",
            "How many shapes are there?",
            "How many dogs?",
            None,
            "How many bars are there?",
        ],  # fmt: skip
        "questioner_answer": [str(n), str(n + 1), "2", None, "3"],
    }
    m = question_metrics(questions)
    assert m["generated"] == 5 and m["parsed"] == 4 and m["parse_rate"] == 0.8
    assert m["oracle_status"]["ok"] == 2 and m["oracle_status"]["no_template"] == 1
    assert m["oracle_status"]["wrong_kind"] == 1
    assert m["oracle_parsable_share"] == 0.5 and m["in_grammar_share"] == 0.75
    assert m["templates"] == {"count_all": 2, "bar_count": 1} and m["distinct_templates"] == 2
    assert m["questioner_answer_accuracy"] == 0.5


def test_label_metrics_precision_kept_all_and_by_confidence():
    img, scene = _shape_image()
    n = len(scene["objects"])
    labels = {
        "source_image_id": [img] * 6,
        "question": ["How many shapes are there?"] * 4 + ["How many dogs?", None],
        "pseudo_label": [str(n), str(n), str(n + 1), str(n), "1", None],
        "confidence": [0.5, 0.5, 0.25, 1.0, 0.5, None],
        "filter_reason": ["kept", "kept", "kept", "too_easy", "kept", "unparsable"],
    }
    m = label_metrics(labels, (0.25, 0.75))
    assert m["labelled"] == 5 and m["labelled_oracle_ok"] == 4
    assert m["kept"] == 4 and m["kept_oracle_ok"] == 3
    assert m["precision_kept"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["precision_all"] == 0.75
    assert m["precision_by_confidence"] == {
        "0.25": {"n": 1, "precision": 0.0, "in_band": True},
        "0.5": {"n": 2, "precision": 1.0, "in_band": True},
        "1": {"n": 1, "precision": 1.0, "in_band": False},
    }


def test_spread_aggregate_and_entropy():
    assert spread([0.2, 0.4, None]) == {"mean": 0.3, "std": pytest.approx(0.141421, abs=1e-6), "min": 0.2,
                                        "max": 0.4, "n": 2}  # fmt: skip
    assert spread([None])["mean"] is None and spread([0.5])["std"] == 0.0
    runs = [
        {"iterations": [{"t": 0, "a": {"x": 0.1}}, {"t": 1, "a": {"x": 0.3}}]},
        {"iterations": [{"t": 0, "a": {"x": 0.3}}, {"t": 1, "a": {}}]},
    ]
    agg = aggregate(runs, ["a.x"])
    assert [r["t"] for r in agg] == [0, 1]
    assert agg[0]["a.x"]["mean"] == 0.2 and agg[1]["a.x"]["n"] == 1
    from collections import Counter

    assert template_entropy(Counter({"a": 5})) == 0.0
    assert template_entropy(Counter({t.id: 1 for t in TEMPLATES})) == 1.0
    assert template_entropy(Counter()) is None

    def run(precision):
        cell = {"0.5": {"n": 2, "precision": precision, "in_band": True}}
        return {"iterations": [{"t": 1, "loop": {"labels": {"precision_by_confidence": cell}}}]}

    pooled = pooled_precision_by_confidence([run(1.0), run(0.0)])
    assert pooled == {1: {"0.5": {"n": 4, "in_band": True, "precision": 0.5}}}


def test_report_writes_json_markdown_plot_and_html(tmp_path, world_seed):
    from verl_ext.world.experiment import ExperimentConfig
    from verl_ext.world.results import write_outputs

    cfg = ExperimentConfig(seeds=2, iterations=2)
    results = write_outputs(cfg, [world_seed(1, 0.01), world_seed(2, 0.03)], tmp_path, wall_seconds=42.0)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"] == [1, 2] and saved == json.loads(json.dumps(results))
    final = saved["summary"][-1]
    assert final["t"] == 2 and final["accuracy.visplay.greedy"]["mean"] == pytest.approx(0.34)
    assert final["accuracy.oracle.greedy"]["mean"] == pytest.approx(0.38)
    md = (tmp_path / "results.md").read_text()
    assert (
        "| 2 | 0.300 ± 0.000 | 0.380 ± 0.057 | 0.340 ± 0.028 | 0.320 ± 0.014 |" in md
    )  # base, oracle, VisPlay, frozen
    assert "| 0.5 | 0.50 [0.30, 0.70] (n=20) | 0.50 [0.30, 0.70] (n=20) |" in md  # precision, pooled, Wilson
    assert (tmp_path / "coevolution.png").read_bytes()[:4] == b"\x89PNG"
    # no loop run directory (tmp_path/seed_1/visplay): report.html is the world section alone
    html = (tmp_path / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and '<section id="world">' in html and 'id="stage-table"' not in html


def test_time_line_names_a_cached_warm_up_by_its_build_time():
    from verl_ext.world.results import time_line

    results = {"config": {"jobs": 3}, "seed_set": {"warmup_seconds": 483.4}, "seconds": {"wall": 1196.0}}
    cached = time_line({**results, "seconds": {"wall": 1196.0, "base_model": 0.1}})
    assert "warm-up 483 s when built, taken from the cache" in cached and "Wall time 1196 s" in cached
    built = time_line({**results, "seconds": {"wall": 1700.0, "base_model": 490.0}})
    assert "base model (warm-up) 490 s" in built and "cache" not in built
    assert "base model (warm-up) –" in time_line({"seconds": {}})
