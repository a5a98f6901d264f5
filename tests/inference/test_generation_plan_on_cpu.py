"""Generation load and memory: shards balanced by question count, a fresh seeded image subset per iteration, and each
worker reading only its shard's rows."""

import argparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.inference import offline as infer


def _args(images, n, shards=8, per_iteration=None, iteration=1, seed=1):
    return argparse.Namespace(
        images=str(images), num_questions=n, shards=shards, images_per_iteration=per_iteration, iteration=iteration,
        seed=seed,
    )  # fmt: skip


@pytest.fixture
def big_image_set(tmp_path):
    path = tmp_path / "images.parquet"
    pq.write_table(pa.table({"id": [f"img{i}" for i in range(47_000)], "image": [b"x"] * 47_000}), path)
    return path


def test_47k_images_8000_questions_are_balanced_over_8_shards(big_image_set):
    chosen, counts, ranges = infer.generation_plan(_args(big_image_set, 8000))
    per_shard = [sum(counts[a:b]) for a, b in ranges]
    assert sum(per_shard) == 8000 and len(per_shard) == 8
    assert max(per_shard) - min(per_shard) <= 1, per_shard  # was [5875, 2125, 0, 0, 0, 0, 0, 0]


def test_a_fresh_seeded_subset_per_iteration(big_image_set):
    first, counts, _ = infer.generation_plan(_args(big_image_set, 8000, per_iteration=1000, iteration=1))
    again, _, _ = infer.generation_plan(_args(big_image_set, 8000, per_iteration=1000, iteration=1))
    second, _, _ = infer.generation_plan(_args(big_image_set, 8000, per_iteration=1000, iteration=2))
    assert first == again  # reproducible (resume)
    assert len(first) == 1000 and counts == [8] * 1000  # the reference's 1000 images x 8 questions
    assert first != second and first != list(range(1000))  # not the same first N images every iteration
    assert first == sorted(set(first)) and all(0 <= i < 47_000 for i in first)


def test_split_weighted():
    assert infer.split_weighted([1] * 16, 3) == infer.split(16, 3)  # equal weights: the old split, unchanged
    ranges = infer.split_weighted([3, 3, 1, 1, 1, 1, 1, 1, 1, 1], 2)
    assert [sum([3, 3, 1, 1, 1, 1, 1, 1, 1, 1][a:b]) for a, b in ranges] == [7, 7]
    assert infer.split_weighted([5, 1], 4) == [(0, 1), (1, 2)]  # never an empty shard
    assert infer.split_weighted([], 3) == infer.split(0, 3)


def test_read_rows_returns_only_the_asked_rows(tmp_path, monkeypatch):
    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(1000)], "image": [bytes([i % 256]) for i in range(1000)]}),
                   path, row_group_size=100)  # fmt: skip
    rows = [3, 250, 251, 999]
    out = infer.read_rows(path, rows, ["id", "image"])
    assert out["id"] == ["3", "250", "251", "999"] and out["image"][1] == bytes([250])
    # the whole file is never materialised
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("read the whole table"))
    assert infer.read_rows(path, [0], ["id"])["id"] == ["0"]


def test_read_rows_skips_the_row_groups_it_does_not_need(tmp_path, monkeypatch):
    path = tmp_path / "images.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(640)], "image": [b"x"] * 640}), path, row_group_size=64)
    read = []
    original = pq.ParquetFile.read_row_group
    monkeypatch.setattr(
        pq.ParquetFile, "read_row_group", lambda self, g, **kw: read.append(g) or original(self, g, **kw)
    )
    assert infer.read_rows(path, [130, 140, 600], ["id"])["id"] == ["130", "140", "600"]
    assert read == [2, 9]  # rows 128..191 and 576..639 only
