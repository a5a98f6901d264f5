"""Deterministic synthetic images (shapes, colours, counts, bar charts) with a scene description per image.

Stand-ins for unlabeled images in tests and the CPU default run: `make_images` returns PIL images and their scenes,
`write_image_parquet` the image-only parquet of `verl_ext.visplay.records.IMAGE_COLUMNS`, `write_image_folder` PNGs.
"""

from __future__ import annotations

import io
import json
import os
import random
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

SOURCE = "synthetic"
KINDS = ("count", "mixed", "bar_chart")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "orange": (245, 140, 20),
    "purple": (140, 60, 180),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
BACKGROUNDS = {"white": (255, 255, 255), "beige": (245, 235, 215), "light blue": (215, 230, 250)}
SHAPES = ("circle", "square", "triangle", "diamond")


def image_id(index: int, seed: int = 0) -> str:
    return f"{SOURCE}-{seed}-{index:05d}"


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "diamond":
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _place_objects(rng: random.Random, size: tuple[int, int], specs: list[tuple[str, str]]) -> list[dict]:
    """Non-overlapping boxes on a grid of cells, one object per cell, so counts are unambiguous."""
    width, height = size
    cols = rows = 3 if len(specs) <= 9 else 4
    cell_w, cell_h = width // cols, height // rows
    cells = rng.sample(range(cols * rows), len(specs))
    objects = []
    for (shape, color), cell in zip(specs, cells, strict=True):
        cx, cy = (cell % cols) * cell_w, (cell // cols) * cell_h
        side = rng.randint(max(4, min(cell_w, cell_h) // 2), max(5, min(cell_w, cell_h) - 2))
        x0 = cx + rng.randint(0, max(0, cell_w - side - 1))
        y0 = cy + rng.randint(0, max(0, cell_h - side - 1))
        objects.append({"shape": shape, "color": color, "bbox": [x0, y0, x0 + side, y0 + side]})
    return objects


def _scene(rng: random.Random, kind: str, size: tuple[int, int]) -> dict:
    background = rng.choice(sorted(BACKGROUNDS))
    if kind == "count":
        shape, color = rng.choice(SHAPES), rng.choice(sorted(COLORS))
        count = rng.randint(1, 7)
        objects = _place_objects(rng, size, [(shape, color)] * count)
        return {
            "kind": kind,
            "background": background,
            "shape": shape,
            "color": color,
            "count": count,
            "objects": objects,
        }
    if kind == "mixed":
        specs = [(rng.choice(SHAPES), rng.choice(sorted(COLORS))) for _ in range(rng.randint(2, 6))]
        objects = _place_objects(rng, size, specs)
        shape_counts: dict[str, int] = {}
        color_counts: dict[str, int] = {}
        for shape, color in specs:
            shape_counts[shape] = shape_counts.get(shape, 0) + 1
            color_counts[color] = color_counts.get(color, 0) + 1
        return {
            "kind": kind,
            "background": background,
            "objects": objects,
            "shape_counts": shape_counts,
            "color_counts": color_counts,
        }
    if kind == "bar_chart":
        n = rng.randint(3, 5)
        colors = rng.sample(sorted(COLORS), n)
        values = [rng.randint(1, 10) for _ in range(n)]
        return {
            "kind": kind,
            "background": background,
            "colors": colors,
            "values": values,
            "max_index": values.index(max(values)),
            "min_index": values.index(min(values)),
        }
    raise ValueError(f"unknown kind {kind!r}")


def _render(scene: dict, size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, BACKGROUNDS[scene["background"]])
    draw = ImageDraw.Draw(image)
    if scene["kind"] == "bar_chart":
        width, height = size
        n = len(scene["values"])
        margin, top = max(2, width // 16), max(2, height // 16)
        slot = (width - 2 * margin) / n
        unit = (height - 2 * top) / 10
        base = height - top
        draw.line([(margin, base), (width - margin, base)], fill=COLORS["black"])
        bars = []
        for i, (value, color) in enumerate(zip(scene["values"], scene["colors"], strict=True)):
            x0 = round(margin + i * slot + slot * 0.15)
            x1 = round(margin + (i + 1) * slot - slot * 0.15)
            y0 = round(base - value * unit)
            draw.rectangle([x0, y0, x1, base - 1], fill=COLORS[color])
            bars.append([x0, y0, x1, base - 1])
        scene["bars"] = bars
    else:
        for obj in scene["objects"]:
            _draw_shape(draw, obj["shape"], tuple(obj["bbox"]), COLORS[obj["color"]])
    return image


def make_images(n: int, seed: int = 0, size: tuple[int, int] = (64, 64)) -> list[tuple[Image.Image, dict]]:
    """`n` RGB images with their scenes; image i depends only on (seed, i, size), so prefixes agree across n.

    A scene holds `id`, `kind` ("count" | "mixed" | "bar_chart"), `background` and the ground truth of its kind
    (count: shape, color, count, objects; mixed: objects, shape_counts, color_counts;
    bar_chart: colors, values, bars, max_index, min_index). Objects carry shape, color and bbox [x0, y0, x1, y1].
    """
    size = (int(size[0]), int(size[1]))
    out = []
    for i in range(n):
        rng = random.Random(f"visplay-testkit/{seed}/{i}")
        scene = _scene(rng, KINDS[i % len(KINDS)], size)
        image = _render(scene, size)
        out.append((image, {"id": image_id(i, seed), **scene}))
    return out


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp over `path` (same folder, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_image_parquet(
    path, n: int, seed: int = 0, size: tuple[int, int] = (64, 64), with_scene: bool = False
) -> Path:
    """Write `n` synthetic images as the project's image-only parquet (columns `id`, `source`, `image` = PNG bytes).

    `with_scene=True` adds a `scene` column (JSON text) holding each image's ground truth, for tests only.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    images = make_images(n, seed=seed, size=size)
    columns = {
        "id": pa.array([scene["id"] for _, scene in images], pa.string()),
        "source": pa.array([SOURCE] * n, pa.string()),
        "image": pa.array([png_bytes(image) for image, _ in images], pa.binary()),
    }
    if with_scene:
        columns["scene"] = pa.array([json.dumps(scene, sort_keys=True) for _, scene in images], pa.string())
    table = pa.table(columns)
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def write_image_folder(folder, n: int, seed: int = 0, size: tuple[int, int] = (64, 64)) -> list[Path]:
    """Write `n` synthetic images as `<id>.png` into `folder`, plus `scenes.jsonl` (one scene per line, in order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    lines = []
    for image, scene in make_images(n, seed=seed, size=size):
        target = folder / f"{scene['id']}.png"
        data = png_bytes(image)
        _atomic_write(target, lambda tmp, data=data: Path(tmp).write_bytes(data))
        paths.append(target)
        lines.append(json.dumps(scene, sort_keys=True))
    text = "".join(line + "\n" for line in lines)
    _atomic_write(folder / "scenes.jsonl", lambda tmp: Path(tmp).write_text(text))
    return paths
