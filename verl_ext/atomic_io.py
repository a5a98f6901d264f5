"""Atomic file writes shared by every layer (the loop's manifest, eval tables, reports): a reader sees the old or the
new content of a file, never a part, even after a crash or SIGKILL mid-write.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new content, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Strict JSON: NaN and infinities are refused (ValueError naming the file), never written as `NaN`/`Infinity`,
    which other JSON readers reject; a caller turns a non-finite number into null where it enters."""
    try:
        text = json.dumps(data, indent=2, sort_keys=True, default=str, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"{path}: refusing to write a non-finite number into JSON ({exc})") from exc
    atomic_write_text(path, text + "\n")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------------
# Sealed directories: a cache entry records its files' hashes when built and is checked before use
# --------------------------------------------------------------------------------------------------

SEAL_NAME = ".sealed.json"


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def seal_dir(root: str | os.PathLike) -> None:
    """Record the size and SHA-256 of every file below `root` in `root/.sealed.json` (call before publishing)."""
    root = Path(root)
    files = {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != SEAL_NAME
    }
    atomic_write_json(root / SEAL_NAME, files)


def seal_problem(root: str | os.PathLike) -> str | None:
    """None when `root` holds exactly what `seal_dir` recorded (files may be added beside them); else what is wrong."""
    root = Path(root)
    try:
        files = json.loads((root / SEAL_NAME).read_text())
    except FileNotFoundError:
        return f"{root}: no {SEAL_NAME} (built before entries were sealed, or not finished)"
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{root / SEAL_NAME}: not readable JSON ({exc})"
    for name, want in files.items():
        path = root / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != want["size"] or _sha256(path) != want["sha256"]:
            return f"{path} differs from what was built"
    return None
