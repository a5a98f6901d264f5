"""Benchmark data from a local parquet file or folder, a JSON/JSONL release with image files, or a Hugging Face name.

`load_items(spec, source)` returns the benchmark's `EvalItem`s with image cells made loadable (relative image paths
resolved against the data folder). Source resolution, first hit wins: an existing file or folder; `hf:NAME` or any
other string: `datasets.load_dataset(NAME, config, split=split)` (the hub, or the local HF cache when offline).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .benchmarks import Benchmark, EvalItem

logger = logging.getLogger(__name__)

TESTKIT_SOURCE = "testkit"  # --data-root testkit: the test kit's benchmark-shaped fixtures (offline, CI)


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class DataSource:
    """Where one benchmark's rows come from (`source` as given, `split`/`config` as the registry or config says)."""

    benchmark: str
    source: str
    split: str | None
    config: str | None = None
    limit: int | None = None

    def describe(self) -> dict:
        return {"source": self.source, "split": self.split, "config": self.config, "limit": self.limit}


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


def _parquet_rows(files: list[Path]) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for f in files:
        rows.extend(pq.read_table(f).to_pylist())
    return rows


def _json_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{n}: not JSON ({exc})") from exc
        return rows
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):  # {"data": [...]} (VisNumBench) or {id: row}
        data = data.get("data", data.get("rows", list(data.values())))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of rows or {{'data': [...]}}")
    return data


def _pick(files: list[Path], split: str | None, config: str | None) -> list[Path]:
    """The files of one split (and config) in an HF-style snapshot: `<config>/<split>-0000x-of-0000y.parquet`,
    `data/<split>-*.parquet` or `<split>/*.parquet`. With no match and a single candidate set, that set."""
    if config:
        in_config = [f for f in files if config in f.parts[:-1]]
        files = in_config or files
    if not split:
        return files
    chosen = [f for f in files if f.name.split("-")[0].split(".")[0] == split or split in f.parts[:-1]]
    if chosen:
        return chosen
    if len(files) == 1:
        return files
    raise DataError(f"no file for split {split!r} among {[f.name for f in files][:10]}")


def load_rows(source: str, split: str | None = None, config: str | None = None) -> tuple[list[dict], Path | None]:
    """Rows of a benchmark as dicts, and the folder relative image paths are resolved against (None for HF)."""
    if source.startswith("hf:"):
        return load_hf_rows(source[3:], split, config), None
    path = Path(os.path.expanduser(source))
    if path.is_file():
        if path.suffix == ".parquet":
            return _parquet_rows([path]), path.parent
        if path.suffix in (".json", ".jsonl"):
            return _json_rows(path), path.parent
        raise DataError(f"{path}: expected .parquet, .json or .jsonl")
    if path.is_dir():
        parquet = sorted(path.rglob("*.parquet"))
        if parquet:
            return _parquet_rows(_pick(parquet, split, config)), path
        jsons = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())
        jsons = [p for p in jsons if not p.name.startswith(".")]
        if not jsons:
            raise DataError(f"{path}: no parquet, JSON or JSONL file")
        picked = _pick(jsons, split, config) if len(jsons) > 1 else jsons
        rows = []
        for f in picked:
            rows.extend(_json_rows(f))
        return rows, path
    if source.startswith((".", "/", "~")):
        raise DataError(f"{source}: no such file or folder")
    return load_hf_rows(source, split, config), None


def load_hf_rows(name: str, split: str | None, config: str | None) -> list[dict]:
    """Rows through `datasets.load_dataset` (images decoded by its Image feature). `split=None`: all splits."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets comes with verl
        raise DataError(f"{name}: loading a Hugging Face dataset needs `pip install datasets`") from exc
    try:
        loaded = datasets.load_dataset(name, config, split=split)
    except Exception as exc:
        hint = " (offline: HF_DATASETS_OFFLINE=1 is set; pass a local copy with --data NAME=PATH)"
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        raise DataError(f"{name}: load_dataset failed: {type(exc).__name__}: {exc}{hint if offline else ''}") from exc
    parts = list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]
    return [dict(row) for part in parts for row in part]


# --------------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------------


def resolve_image(cell: Any, base_dir: Path | None) -> Any:
    """An image cell as `verl_ext.image_io.load_image` takes it: bytes, a PIL image, or an absolute path."""
    if cell is None:
        return None
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path")
        if not cell:
            return None
    if isinstance(cell, str | os.PathLike):
        path = Path(cell)
        if not path.is_absolute() and base_dir is not None:
            candidates = [base_dir / path, *(p / path for p in base_dir.parents[:2])]
            path = next((c for c in candidates if c.exists()), base_dir / path)
        return str(path)
    return cell


def load_items(spec: Benchmark, source: DataSource) -> tuple[list[EvalItem], dict]:
    """The benchmark's items (first `limit` in dataset order) and a summary (rows, skipped, duplicate ids)."""
    rows, base_dir = load_rows(source.source, source.split, source.config)
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    skipped = 0
    for index, row in enumerate(rows):
        item = spec.adapter(row, index)
        if item is None or not any(img is not None for img in item.images):
            skipped += 1
            continue
        item.images = [resolve_image(img, base_dir) for img in item.images if img is not None]
        if item.id in seen:  # ids key the cache: make repeats unique, deterministically
            seen[item.id] += 1
            item.id = f"{item.id}#{seen[item.id]}"
        else:
            seen[item.id] = 0
        items.append(item)
        if source.limit is not None and len(items) >= source.limit:
            break
    if not items:
        raise DataError(f"{spec.name}: no usable item in {source.source} (rows: {len(rows)}, skipped: {skipped})")
    return items, {"rows": len(rows), "items": len(items), "skipped": skipped}


def testkit_data_root(cache_dir: str | Path | None = None) -> Path:
    """The test kit's benchmark fixtures, written once into a cache folder (offline stand-ins for CI and demos)."""
    import hashlib

    from verl_ext.tiny import benchmarks as kit

    digest = hashlib.sha256(Path(kit.__file__).read_bytes()).hexdigest()[:12]  # a changed kit writes a new folder
    cache = Path(cache_dir or os.environ.get("VISPLAY_CACHE", Path.home() / ".cache" / "visplay"))
    root = cache / f"eval-fixtures-{digest}"
    marker = root / ".complete"
    if not marker.is_file():
        kit.write_benchmark_suite(root, kit.BENCHMARK_NAMES)
        marker.write_text("ok\n")
    return root
