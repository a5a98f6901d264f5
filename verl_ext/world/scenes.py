"""The procedural world: seeded scenes (shapes on a grid, or a bar chart) and their rendering to 112x112 images.

A scene is plain JSON data and the whole ground truth of its image. Scene `i` of split `s` and seed `k` depends only
on (s, k, i), so the labeled seed set, the held-out eval set and the unlabeled pool never share an image.
"""

from __future__ import annotations

import io
import random
import re

from PIL import Image, ImageDraw

SIZE = 112  # pixels a side: 4 x 4 merged Qwen2.5-VL image tokens of 28 x 28 pixels
GRID = 4  # objects sit in the cells of a 4 x 4 grid, one cell per image token
CELL = SIZE // GRID
COLORS = {
    "red": (220, 40, 40),
    "green": (30, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 20),
    "purple": (140, 60, 180),
    "orange": (245, 135, 20),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
SIDE = {"small": 12, "large": 24}  # pixels
KINDS = ("shapes", "shapes", "chart")  # scene kind of index i: KINDS[i % 3]
MAX_OBJECTS = 6
MAX_BAR = 8
BAR_UNIT = 12  # pixels per unit of bar value
BACKGROUND = (255, 255, 255)
SPLITS = ("seed", "eval", "dev", "unlabeled")  # dev: for sizing pilots, so that the eval set stays unseen
_ID = re.compile(r"world-(?P<split>[a-z]+)-(?P<seed>\d+)-(?P<index>\d+)")


def image_id(split: str, seed: int, index: int) -> str:
    return f"world-{split}-{seed}-{index:05d}"


def parse_image_id(text: str) -> tuple[str, int, int] | None:
    """(split, seed, index) of a world image id, None for anything else."""
    m = _ID.fullmatch(str(text))
    if m is None or m["split"] not in SPLITS:
        return None
    return m["split"], int(m["seed"]), int(m["index"])


def _shapes_scene(rng: random.Random) -> dict:
    n = rng.randint(1, MAX_OBJECTS)
    cells = rng.sample(range(GRID * GRID), n)
    objects = []
    for cell in cells:
        objects.append(
            {
                "shape": rng.choice(SHAPES),
                "color": rng.choice(sorted(COLORS)),
                "size": rng.choice(SIZES),
                "col": cell % GRID,
                "row": cell // GRID,
            }
        )
    objects.sort(key=lambda o: (o["row"], o["col"]))
    return {"kind": "shapes", "objects": objects}


def _chart_scene(rng: random.Random) -> dict:
    n = rng.randint(3, GRID)
    colors = rng.sample(sorted(COLORS), n)
    return {"kind": "chart", "bars": [{"color": c, "value": rng.randint(1, MAX_BAR)} for c in colors]}


def make_scene(split: str, seed: int, index: int) -> dict:
    """Scene `index` of (split, seed); its kind is KINDS[index % 3] (two shape scenes to one chart)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"visplay-world/{split}/{seed}/{index}")
    kind = KINDS[index % len(KINDS)]
    scene = _shapes_scene(rng) if kind == "shapes" else _chart_scene(rng)
    return {"id": image_id(split, seed, index), **scene}


def scene_for_id(text: str) -> dict | None:
    """The scene behind a world image id (regenerated, never stored): the oracle's view of an unlabeled image."""
    parsed = parse_image_id(text)
    return None if parsed is None else make_scene(*parsed)


def render(scene: dict) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if scene["kind"] == "chart":
        base = SIZE - 6
        draw.line([(0, base), (SIZE - 1, base)], fill=(0, 0, 0))
        for i, bar in enumerate(scene["bars"]):
            x0 = i * CELL + 5
            draw.rectangle([x0, base - bar["value"] * BAR_UNIT, x0 + CELL - 10, base - 1], fill=COLORS[bar["color"]])
        return image
    for obj in scene["objects"]:
        side = SIDE[obj["size"]]
        cx, cy = obj["col"] * CELL + CELL // 2, obj["row"] * CELL + CELL // 2
        x0, y0, x1, y1 = cx - side // 2, cy - side // 2, cx + side // 2 - 1, cy + side // 2 - 1
        fill = COLORS[obj["color"]]
        if obj["shape"] == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif obj["shape"] == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
