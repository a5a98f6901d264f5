"""Benchmark data from a local parquet file or folder, a JSON/JSONL release with image files, or a Hugging Face name.

`load_items(spec, source)` returns the benchmark's `EvalItem`s with image cells made loadable (relative image paths
resolved against the data folder). Source resolution, first hit wins: an existing file or folder; `hf:NAME` or any
other string: `datasets.load_dataset(NAME, config, split=split)` (the hub, or the local HF cache when offline); the
registry's default name falls back to the benchmark's mirrors (lmms-lab-encoder/X, then lmms-lab/X).

An item is skipped, with a counted reason and its id in the summary, never aborting the run, when an image path
leaves the data folder (`../..`, an absolute path: `outside_data`) or an image does not decode
(`verl_ext.image_io.screen_image`: missing, corrupt, too_large, bad_aspect).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_ext.image_io import screen_image

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
    file_name: str | None = None  # only rows whose `file_name` column is this (the reference's MLLM_test copy)

    def describe(self) -> dict:
        out = {"source": self.source, "split": self.split, "config": self.config, "limit": self.limit}
        if self.file_name:
            out["file_name"] = self.file_name
        return out


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


class OutsideDataError(DataError):
    """An image path that leaves the data folder (`../..`, an absolute path)."""


def contained_path(base_dir: Path | None, relative: str | os.PathLike) -> Path:
    """`base_dir/relative`, refused (OutsideDataError) when it is absolute or resolves outside `base_dir` (symlinks
    followed). Without a data folder (rows from the hub) a path cell has nothing to be relative to: refused too."""
    path = Path(relative)
    if path.is_absolute() or base_dir is None:
        raise OutsideDataError(f"image path {str(relative)!r} is absolute or has no data folder")
    root = base_dir.resolve()
    resolved = (root / path).resolve()
    if resolved != root and root not in resolved.parents:
        raise OutsideDataError(f"image path {str(relative)!r} leaves the data folder")
    return resolved


def resolve_image(cell: Any, base_dir: Path | None) -> Any:
    """An image cell as `verl_ext.image_io.load_image` takes it: bytes, a PIL image, or a path inside the data folder
    (OutsideDataError otherwise)."""
    if cell is None:
        return None
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path")
        if not cell:
            return None
    if isinstance(cell, str | os.PathLike):
        return str(contained_path(base_dir, cell))
    return cell


def _usable_images(images: list, base_dir: Path | None) -> tuple[list, str | None]:
    """(resolved image cells, None) or ([], the reason the item cannot be used)."""
    out = []
    for cell in images:
        if cell is None:
            continue
        try:
            resolved = resolve_image(cell, base_dir)
        except OutsideDataError:
            return [], "outside_data"
        reason = "missing" if resolved is None else screen_image(resolved)
        if reason:
            return [], reason
        out.append(resolved)
    return (out, None) if out else ([], "missing")


def _rows_from(spec: Benchmark, source: DataSource) -> tuple[list[dict], Path | None]:
    """The rows of a source; the registry's default hub name falls back to the benchmark's mirrors."""
    names = (source.source,)
    if source.source in spec.hf_names:  # the name given first, then the other mirrors
        names += tuple(n for n in spec.hf_names if n != source.source)
    errors = []
    for name in names:
        try:
            return load_rows(name, source.split, source.config)
        except DataError as exc:
            errors.append(str(exc))
    raise DataError(" | ".join(errors))


def load_items(spec: Benchmark, source: DataSource) -> tuple[list[EvalItem], dict]:
    """The benchmark's items (first `limit` in dataset order) and a summary: rows, items, skipped, the reasons counted
    (`skip_reasons`) and the skipped items named (`skipped_items`: id and reason, the first 20)."""
    rows, base_dir = _rows_from(spec, source)
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    skipped, reasons, named = 0, {}, []
    if source.file_name is not None:  # the row index stays the file's (the reference's dataset_index)
        rows = [(i, r) for i, r in enumerate(rows) if r.get("file_name") == source.file_name]
    else:
        rows = list(enumerate(rows))
    for index, row in rows:
        item = spec.adapter(row, index)
        reason = "not_in_split" if item is None else None
        if item is not None:
            item.images, reason = _usable_images(item.images, base_dir)
        if reason:
            skipped += 1
            reasons[reason] = reasons.get(reason, 0) + 1
            if len(named) < 20:
                named.append({"id": item.id if item is not None else str(index), "reason": reason})
            continue
        if item.id in seen:  # ids key the cache: make repeats unique, deterministically
            seen[item.id] += 1
            item.id = f"{item.id}#{seen[item.id]}"
        else:
            seen[item.id] = 0
        items.append(item)
        if source.limit is not None and len(items) >= source.limit:
            break
    if not items:
        raise DataError(f"{spec.name}: no usable item in {source.source} (rows: {len(rows)}, skipped: {reasons})")
    summary = {"rows": len(rows), "items": len(items), "skipped": skipped}
    if skipped:
        summary.update(skip_reasons=reasons, skipped_items=named)
    return items, summary


def testkit_data_root(cache_dir: str | Path | None = None) -> Path:
    """The test kit's benchmark fixtures, written once into a cache folder (offline stand-ins for CI and demos)."""
    import hashlib

    from verl_ext.atomic_io import seal_dir, seal_problem
    from verl_ext.tiny import benchmarks as kit

    digest = hashlib.sha256(Path(kit.__file__).read_bytes()).hexdigest()[:12]  # a changed kit writes a new folder
    cache = Path(cache_dir or os.environ.get("VISPLAY_CACHE", Path.home() / ".cache" / "visplay"))
    root = cache / f"eval-fixtures-{digest}"
    if seal_problem(root) is not None:  # not built, not finished, or a file changed since: rebuilt, not trusted
        kit.write_benchmark_suite(root, kit.BENCHMARK_NAMES)
        kit.write_visplay_suite(root / "visplay")
        seal_dir(root)
    return root
