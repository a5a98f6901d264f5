"""The world's held-out labeled eval set and the unlabeled pool the loop learns from (images only: their scenes are
regenerated from the ids, for measurement). The labeled seed set of the warm-up is in `seedset`.
"""

from __future__ import annotations

import random
from pathlib import Path

from .grammar import TEMPLATES, instantiate
from .scenes import SIZE, image_id, make_scene, png_bytes, render

SOURCE = "world"


def eval_items(n: int, seed: int = 0, split: str = "eval") -> list[dict]:
    """The held-out labeled eval set: `n` questions, each on its own image, the 18 templates in turn (balanced).
    `split="dev"` gives a disjoint set of the same make, for sizing pilots.

    Each item: id (the image's), image (PNG bytes), scene, template, type, question, answer, reasoning."""
    items = []
    index = 0  # the next unused image of the split
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        while True:  # the next image the template applies to (a colour question needs a single circle, ...)
            scene = make_scene(split, seed, index)
            index += 1
            rng = random.Random(f"visplay-world/{split}-questions/{seed}/{scene['id']}")
            item = instantiate(template, scene, rng)
            if item is not None:
                break
        items.append({"id": scene["id"], "image": png_bytes(render(scene)), "scene": scene, **item})
    return items


def write_unlabeled_parquet(path: str | Path, n: int, seed: int) -> Path:
    """`n` unlabeled world images as the loop's image parquet (columns id, source, image): no scene, no label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = [image_id("unlabeled", seed, i) for i in range(n)]
    images = [png_bytes(render(make_scene("unlabeled", seed, i))) for i in range(n)]
    table = pa.table({"id": ids, "source": [SOURCE] * n, "image": images})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


__all__ = ["SIZE", "eval_items", "write_unlabeled_parquet"]
