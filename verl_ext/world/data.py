"""The unlabeled pool the loop learns from (images only: their scenes are regenerated from the ids, for measurement).
The labeled seed set of the warm-up is in `seedset`, the held-out eval set in `evalset`.
"""

from __future__ import annotations

from pathlib import Path

from .scenes import SIZE, image_id, make_scene, png_bytes, render

SOURCE = "world"


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


__all__ = ["SIZE", "write_unlabeled_parquet"]
