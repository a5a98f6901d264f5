"""The run-level statistics: stats.json with one entry per iteration and, with matplotlib, the stats.png figure."""

import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_ext.evolve.filter_stage import run_filter, write_run_stats
from verl_ext.evolve.recipe import FilterConfig, StatsConfig
from verl_ext.visplay.records import PSEUDO_LABEL_COLUMNS


def iteration_stats(tmp_path, iteration: int, confidences: list[float], bins: int = 10) -> dict:
    n = len(confidences)
    data = {c: [None] * n for c in PSEUDO_LABEL_COLUMNS}
    data.update(id=[f"i{k}/{iteration}/0" for k in range(n)], source_image_id=[f"i{k}" for k in range(n)],
                image=[b"x"] * n, question=[f"how many shapes of kind {k} are there" for k in range(n)],
                question_type=["numerical"] * n, pseudo_label=["1"] * n, confidence=confidences, num_samples=[10] * n,
                iteration=[iteration] * n)  # fmt: skip
    types = {"image": pa.binary(), "confidence": pa.float64(), "num_samples": pa.int64(), "iteration": pa.int64()}
    labels = tmp_path / f"labels{iteration}.parquet"
    pq.write_table(pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in data.items()}), labels)
    return run_filter(labels, None, tmp_path / f"f{iteration}", FilterConfig(0.3, 0.8), StatsConfig(100, bins),
                      iteration=iteration, seed=0)  # fmt: skip


def test_stats_png_is_written_next_to_stats_json(tmp_path):
    pytest.importorskip("matplotlib")
    per_iteration = [iteration_stats(tmp_path, 1, [0.2, 0.5, 0.9]), iteration_stats(tmp_path, 2, [0.4, 0.5], bins=4)]
    path = tmp_path / "run" / "stats.json"
    path.parent.mkdir()
    png = write_run_stats(per_iteration, path)
    assert png == tmp_path / "run" / "stats.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 2 * image.size[1] > 0  # three panels side by side
        assert len(set(image.convert("L").getdata())) > 2  # something is drawn
    assert json.loads(path.read_text()) == {"iterations": per_iteration}
    assert sorted(p.name for p in path.parent.iterdir()) == ["stats.json", "stats.png"]  # no temporary file left


def test_missing_statistics_still_draw(tmp_path):
    pytest.importorskip("matplotlib")
    stats = iteration_stats(tmp_path, 1, [0.5, 0.6])
    assert "question_parse_rate" not in stats  # no questions file: this iteration has no parse rate
    stats["difficulty"] = None
    assert write_run_stats([stats], tmp_path / "stats.json").is_file()


def test_without_matplotlib_only_the_json(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    stats = iteration_stats(tmp_path, 1, [0.5])
    assert write_run_stats([stats], tmp_path / "stats.json") is None
    assert (tmp_path / "stats.json").is_file() and not (tmp_path / "stats.png").exists()
