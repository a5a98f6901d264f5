"""The image stage: turn a recipe's image source (folder, parquet, HF dataset, test kit, world) into one parquet of
encoded images.

Columns are `records.IMAGE_COLUMNS`; ids are stable (relative path, row index or dataset index), so re-runs and
resumed runs see the same images in the same order. A seeded subsample applies `images.max_images`. Every image is
screened by the decoder all stages share (`image_io.screen_image`): unreadable, empty, corrupt, oversized or badly
proportioned images are skipped, counted by reason and named (the first few) in the stage summary.
"""

from __future__ import annotations

import importlib
import io
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.visplay.records import IMAGE_COLUMNS

from .recipe import ImagesConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("image", pa.binary())])
assert tuple(SCHEMA.names) == IMAGE_COLUMNS


def _to_bytes(value) -> bytes:
    """Encoded image bytes from bytes, an HF `{"bytes", "path"}` struct, or a PIL image."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return Path(value["path"]).read_bytes()
    if hasattr(value, "save"):  # PIL.Image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue()
    raise TypeError(f"cannot read an image from {type(value).__name__}")


def _iter_folder(cfg: ImagesConfig) -> Iterator[tuple[str, callable]]:
    root = Path(cfg.path)
    if not root.is_dir():
        raise FileNotFoundError(f"images.path: {root} is not a directory (images.source is folder)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    for p in files:
        yield _printable(p.relative_to(root).as_posix()), (lambda p=p: p.read_bytes())


def _printable(name: str) -> str:
    """A file name as valid UTF-8 (names in other encodings keep their bytes as \\x escapes): parquet needs UTF-8."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _iter_parquet(cfg: ImagesConfig) -> Iterator[tuple[str, callable]]:
    path = Path(cfg.path)
    if not path.is_file():
        raise FileNotFoundError(f"images.path: {path} is not a file (images.source is parquet)")
    names = pq.read_schema(path).names
    if cfg.image_column not in names:
        raise ValueError(f"images.image_column: {cfg.image_column!r} is not a column of {path} (columns: {names})")
    cols = [cfg.image_column] + (["id"] if "id" in names and cfg.image_column != "id" else [])
    table = pq.read_table(path, columns=cols)
    ids = table.column("id").to_pylist() if "id" in cols else [str(i) for i in range(table.num_rows)]
    images = table.column(cfg.image_column)
    for i, rid in enumerate(ids):
        yield str(rid), (lambda i=i: _to_bytes(images[i].as_py()))


def _iter_hf(cfg: ImagesConfig) -> Iterator[tuple[str, callable]]:
    import datasets

    ds = datasets.load_dataset(cfg.path, split=cfg.split)
    if cfg.image_column not in ds.column_names:
        raise ValueError(
            f"images.image_column: {cfg.image_column!r} is not a column of {cfg.path} ({ds.column_names})"
        )
    ds = ds.cast_column(cfg.image_column, datasets.Image(decode=False))
    for i in range(len(ds)):
        yield f"{cfg.split}/{i}", (lambda i=i: _to_bytes(ds[i][cfg.image_column]))


def prepare_images(cfg: ImagesConfig, out_path: str | Path, seed: int) -> dict:
    """Write the image parquet; returns a summary for the manifest."""
    if cfg.source == "testkit":  # synthetic images of the test kit: the offline CPU default
        from verl_ext.tiny.images import write_image_parquet

        write_image_parquet(out_path, n=cfg.max_images, seed=seed)
        return {"images": cfg.max_images, "source": "testkit"}
    if cfg.source == "generator":  # `module:function(path, n, seed)` writes the parquet (the controlled world's)
        module, function = cfg.path.split(":")
        getattr(importlib.import_module(module), function)(out_path, n=cfg.max_images, seed=seed)
        return {"images": cfg.max_images, "source": cfg.path}
    source = {"folder": _iter_folder, "parquet": _iter_parquet, "hf": _iter_hf}[cfg.source]
    entries = list(source(cfg))
    if not entries:
        raise ValueError(f"images.path: no images found in {cfg.path} ({cfg.source})")
    ids = [rid for rid, _ in entries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"images.path: {cfg.path} has duplicate image ids")
    if cfg.max_images is not None and len(entries) > cfg.max_images:
        picked = sorted(random.Random(seed).sample(range(len(entries)), cfg.max_images))
        entries = [entries[i] for i in picked]
    label = Path(cfg.path).name if cfg.source != "hf" else cfg.path
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    skipped: Counter = Counter()
    examples: list[str] = []
    written = 0
    with pq.ParquetWriter(out_path, SCHEMA, write_page_checksum=True) as writer:
        for start in range(0, len(entries), 64):
            rows = []
            for rid, load in entries[start : start + 64]:
                data, reason = _screened(load)
                if reason is not None:
                    skipped[reason] += 1
                    if len(examples) < MAX_NAMED_SKIPS:
                        examples.append(f"{rid} ({reason})")
                    continue
                rows.append((rid, data))
            written += len(rows)
            table = {"id": [r for r, _ in rows], "source": [label] * len(rows), "image": [d for _, d in rows]}
            writer.write_table(pa.table(table, schema=SCHEMA))
    if not written:
        raise ValueError(f"images.path: none of the {len(entries)} images in {cfg.path} is usable: {dict(skipped)}")
    summary = {"images": written, "source": cfg.source}
    if skipped:
        summary.update(skipped=dict(sorted(skipped.items())), skipped_examples=examples)
    return summary


MAX_NAMED_SKIPS = 10


def _screened(load) -> tuple[bytes | None, str | None]:
    """(encoded bytes, None) for a usable image, else (None, reason)."""
    from verl_ext.image_io import screen_image

    try:
        data = load()
    except (OSError, TypeError, ValueError):  # unreadable file, no image in the cell
        return None, "unreadable"
    return (None, reason) if (reason := screen_image(data)) is not None else (data, None)
