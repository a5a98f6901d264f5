"""What a finished stage wrote, and a check that it is still there unchanged before a resumed run builds on it.

A stage's marker (`.stage.json`) records each output file's size and SHA-256. On every run the loop compares sizes
(a stat per file: a truncated, grown or deleted file is caught at once); `--verify` also re-hashes every file (a
flipped bit is caught too). A mismatch names the stage, the file and what differs; the caller turns it into the
command that redoes the stage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CHUNK = 1 << 20


class CorruptOutputError(RuntimeError):
    """A finished stage's output no longer matches what the stage wrote. `stage` is its key (`t:name`)."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage

    def __reduce__(self):  # picklable with both arguments: it crosses process pools (the world's parallel seeds)
        return type(self), (self.stage, str(self))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, int]:
    """Relative path -> size of every file below `root`, sorted, without the names in `exclude`."""
    files = {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
    return {name: size for name, size in files.items() if name not in exclude}


def hash_files(root: Path, names) -> dict[str, str]:
    return {name: sha256_file(root / name) for name in names}


def read_marker(stage: str, marker_path: Path) -> dict:
    try:
        marker = json.loads(marker_path.read_text())
    except FileNotFoundError as exc:
        raise CorruptOutputError(stage, f"stage {stage}: its marker {marker_path} is missing") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptOutputError(
            stage, f"stage {stage}: its marker {marker_path} is not readable JSON ({exc})"
        ) from exc
    if not isinstance(marker, dict):
        raise CorruptOutputError(stage, f"stage {stage}: its marker {marker_path} holds no record")
    return marker


def verify_output(stage: str, output_dir: Path, marker_name: str, full: bool = False) -> int:
    """Check `output_dir` against its marker: every recorded file present with its size, and with `full` its
    SHA-256 (markers written before hashes were recorded are checked by size only). Returns the files checked."""
    marker = read_marker(stage, output_dir / marker_name)
    sizes, hashes = marker.get("files") or {}, marker.get("sha256") or {}
    for name, size in sizes.items():
        path = output_dir / name
        if not path.is_file():
            raise CorruptOutputError(stage, f"stage {stage}: {path} is missing")
        actual = path.stat().st_size
        if actual != size:
            raise CorruptOutputError(stage, f"stage {stage}: {path} has {actual} bytes, the stage wrote {size}")
        if full and name in hashes and sha256_file(path) != hashes[name]:
            raise CorruptOutputError(stage, f"stage {stage}: {path} changed since the stage wrote it (SHA-256)")
    return len(sizes)
