"""Synthetic images: deterministic, truthful scenes, the project's image-only parquet schema."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
from PIL import Image

from verl_ext.tiny.images import COLORS, KINDS, make_images, png_bytes, write_image_folder, write_image_parquet
from verl_ext.visplay.records import IMAGE_COLUMNS, missing_columns


def test_images_are_deterministic_and_prefix_stable():
    first = make_images(6, seed=3)
    again = make_images(9, seed=3)
    assert [png_bytes(im) for im, _ in first] == [png_bytes(im) for im, _ in again[:6]]
    assert [scene for _, scene in first] == [scene for _, scene in again[:6]]
    other = make_images(6, seed=4)
    assert [png_bytes(im) for im, _ in first] != [png_bytes(im) for im, _ in other]
    assert len({scene["id"] for _, scene in again}) == 9


def test_scenes_describe_the_images():
    images = make_images(12, seed=0, size=(96, 80))
    assert {scene["kind"] for _, scene in images} == set(KINDS)
    for image, scene in images:
        assert image.mode == "RGB" and image.size == (96, 80)
        json.dumps(scene)  # plain data
        if scene["kind"] == "count":
            assert len(scene["objects"]) == scene["count"] >= 1
            assert {(o["shape"], o["color"]) for o in scene["objects"]} == {(scene["shape"], scene["color"])}
        elif scene["kind"] == "mixed":
            assert sum(scene["shape_counts"].values()) == len(scene["objects"]) == sum(scene["color_counts"].values())
        else:
            values = scene["values"]
            assert len(values) == len(scene["colors"]) == len(scene["bars"])
            assert values[scene["max_index"]] == max(values) and values[scene["min_index"]] == min(values)
            heights = [bar[3] - bar[1] for bar in scene["bars"]]
            assert heights.index(max(heights)) == scene["max_index"]
        for obj in scene.get("objects", []):
            x0, y0, x1, y1 = obj["bbox"]
            assert 0 <= x0 < x1 < 96 and 0 <= y0 < y1 < 80
            assert image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == COLORS[obj["color"]]  # drawn where it says


def test_image_parquet_has_the_project_schema(image_parquet):
    table = pq.read_table(image_parquet)
    assert table.column_names == list(IMAGE_COLUMNS)
    assert not missing_columns(table.column_names, IMAGE_COLUMNS)
    assert str(table.schema.field("image").type) == "binary"
    rows = table.to_pylist()
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
    assert {r["source"] for r in rows} == {"synthetic"}
    for row, (image, scene) in zip(rows, make_images(8, seed=0), strict=True):
        decoded = Image.open(io.BytesIO(row["image"]))
        assert decoded.format == "PNG" and decoded.size == (64, 64)
        assert row["id"] == scene["id"] and row["image"] == png_bytes(image)
    assert [p.name for p in image_parquet.parent.iterdir()] == [image_parquet.name]  # no temp file left


def test_image_parquet_is_reproducible_with_optional_scenes(tmp_path):
    a = write_image_parquet(tmp_path / "a.parquet", n=4, seed=1)
    b = write_image_parquet(tmp_path / "b.parquet", n=4, seed=1, with_scene=True)
    assert pq.read_table(a).column("image").to_pylist() == pq.read_table(b).column("image").to_pylist()
    scenes = [json.loads(s) for s in pq.read_table(b).column("scene").to_pylist()]
    assert [s["id"] for s in scenes] == pq.read_table(b).column("id").to_pylist()
    write_image_parquet(a, n=2, seed=1)  # overwrite in place
    assert pq.read_table(a).num_rows == 2


def test_image_folder(image_folder):
    pngs = sorted(image_folder.glob("*.png"))
    lines = (image_folder / "scenes.jsonl").read_text().splitlines()
    assert len(pngs) == len(lines) == 8
    assert [p.stem for p in pngs] == sorted(json.loads(line)["id"] for line in lines)
    assert Image.open(pngs[0]).size == (64, 64)
    paths = write_image_folder(image_folder / "again", n=2, seed=0)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in pngs[:2]]
