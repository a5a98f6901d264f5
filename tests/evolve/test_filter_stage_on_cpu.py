"""The band-filter stage and its per-iteration statistics on a hand-made pseudo-label file."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.evolve.filter_stage import run_filter
from verl_ext.evolve.recipe import FilterConfig, StatsConfig
from verl_ext.visplay.records import PSEUDO_LABEL_COLUMNS, QUESTION_COLUMNS

# (question, pseudo_label, confidence, num_samples) with m = 10, band [0.3, 0.8]
ROWS = [
    ("How many red circles are there?", "3", 0.5, 10),  # kept
    ("How many blue squares are there?", "2", 0.3, 10),  # kept (3/10 is on the edge)
    ("What colour is the largest shape?", "red", 0.9, 10),  # too_easy
    ("Which shape is left of the triangle?", "B", 0.1, 10),  # too_hard
    ("What is the total area of the shapes?", None, 0.0, 10),  # no_answer
    (None, None, 0.0, 0),  # unparsable
    ("How many red circles are there?", "4", 0.8, 10),  # kept (edge), same text as row 0 on another image
]


def _write(path, rows, iteration=1, image_prefix="img"):
    n = len(rows)
    data = {
        "id": [f"{image_prefix}{i}/{iteration}/0" for i in range(n)],
        "source_image_id": [f"{image_prefix}{i}" for i in range(n)],
        "image": [bytes([i]) * 10 for i in range(n)],
        "question": [r[0] for r in rows],
        "question_type": ["numerical" if r[0] else None for r in rows],
        "pseudo_label": [r[1] for r in rows],
        "confidence": [r[2] for r in rows],
        "num_samples": [r[3] for r in rows],
        "iteration": [iteration] * n,
        "questioner_checkpoint": ["Q"] * n,
        "filter_reason": pa.array([None] * n, pa.string()),
    }
    assert list(data) == list(PSEUDO_LABEL_COLUMNS)
    pq.write_table(pa.table(data), path)


def _questions(path, rows):
    n = len(rows)
    data = {c: [None] * n for c in QUESTION_COLUMNS}
    data.update(id=[f"img{i}/1/0" for i in range(n)], source_image_id=[f"img{i % 4}" for i in range(n)],
                question=[r[0] for r in rows])  # fmt: skip
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in data.items()}), path)


def test_filter_outputs_and_stats(tmp_path):
    labels, questions, out = tmp_path / "l.parquet", tmp_path / "q.parquet", tmp_path / "o"
    _write(labels, ROWS)
    _questions(questions, ROWS)
    stats = run_filter(labels, questions, out, FilterConfig(0.3, 0.8), StatsConfig(diversity_sample=100),
                       iteration=1, seed=0)  # fmt: skip

    everything = pq.read_table(out / "all.parquet")
    assert "image" not in everything.column_names
    assert everything.column("filter_reason").to_pylist() == [
        "kept", "kept", "too_easy", "too_hard", "no_answer", "unparsable", "kept"
    ]  # fmt: skip
    train = pq.read_table(out / "train.parquet")
    assert train.column_names == list(PSEUDO_LABEL_COLUMNS)
    assert train.column("id").to_pylist() == ["img0/1/0", "img1/1/0", "img6/1/0"]
    assert train.column("image").to_pylist()[2] == bytes([6]) * 10  # images travel with their rows
    assert set(train.column("filter_reason").to_pylist()) == {"kept"}

    assert stats == json.loads((out / "stats.json").read_text())
    assert stats["counts"] == {
        "labelled_records": 7, "images": 4, "questions_generated": 7, "questions_parsed": 6,
        "questions_labelled": 6, "with_pseudo_label": 5, "kept": 3,
    }  # fmt: skip
    assert stats["question_parse_rate"] == pytest.approx(6 / 7, abs=1e-6)
    assert stats["filter"]["counts"] == {
        "kept": 3,
        "too_easy": 1,
        "too_hard": 1,
        "no_answer": 1,
        "unparsable": 1,
        "too_long": 0,
    }
    assert stats["filter"]["kept_fraction"] == pytest.approx(3 / 7, abs=1e-6)
    hist = stats["confidence"]
    assert hist["n"] == 6 and sum(hist["counts"]) == 6 and len(hist["edges"]) == 11
    assert hist["values"] == {"0": 1, "0.1": 1, "0.3": 1, "0.5": 1, "0.8": 1, "0.9": 1}
    assert stats["difficulty"] == pytest.approx(1 - (0.5 + 0.3 + 0.9 + 0.1 + 0.0 + 0.8) / 6, abs=1e-6)
    # Q_t writes new questions, so "the same question as at t-1" never occurs in a run: no agreement statistic.
    assert "agreement_with_previous" not in stats
    div = stats["diversity"]
    assert div["sampled"] == 6 and 1 <= div["num_clusters"] <= 6 and div["largest_cluster"] >= 2  # 2 identical texts
    assert 0 < div["mean_penalty"] <= 1


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a"], "question": ["q"]}), path)
    with pytest.raises(ValueError, match="missing columns .*pseudo_label"):
        run_filter(path, path, tmp_path / "o", FilterConfig(), StatsConfig(), iteration=1, seed=0)


def test_non_finite_confidences_are_no_answer_and_never_reach_json(tmp_path):
    """An infinite confidence crashed the histogram (OverflowError) and NaN reached stats.json as `"mean": NaN`."""
    rows = [("How many dots?", "3", 0.5, 10), ("Which is larger?", "A", float("inf"), 10),
            ("What colour?", "red", float("nan"), 10), ("How many lines?", "2", 0.6, 10)]  # fmt: skip
    labels, questions, out = tmp_path / "l.parquet", tmp_path / "q.parquet", tmp_path / "o"
    _write(labels, rows)
    _questions(questions, rows)
    stats = run_filter(labels, questions, out, FilterConfig(0.3, 0.8), StatsConfig(), iteration=1, seed=0)
    assert stats["confidence"]["n"] == 2 and stats["confidence"]["mean"] == pytest.approx(0.55)
    assert stats["filter"]["counts"]["no_answer"] == 2 and stats["filter"]["counts"]["kept"] == 2
    text = (out / "stats.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and json.loads(text)["difficulty"] == pytest.approx(0.45)


def test_json_writer_refuses_non_finite_numbers(tmp_path):
    from verl_ext.atomic_io import atomic_write_json

    with pytest.raises(ValueError, match="bad.json: refusing to write a non-finite number"):
        atomic_write_json(tmp_path / "bad.json", {"mean": float("nan")})
    assert not (tmp_path / "bad.json").exists()
