"""Per-item caches of an evaluation: responses, rule scores and judge verdicts, as append-only JSONL files.

A record is keyed by a hash of everything its value depends on (checkpoint fingerprint, prompt, decoding settings;
scorer version and gold; judge model and prompt), so a re-run computes only what is new and a changed input simply
misses. Appends are flushed per record; a line cut short by a crash is skipped on reading. Failed judge calls are
not cached: the next run tries them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any


def digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class JsonlStore:
    """key -> record (a dict holding "key"), loaded from and appended to one JSONL file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._records: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.bad_lines = 0
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                        self._records[record["key"]] = record
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.bad_lines += 1  # a torn last line after a crash

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict | None:
        return self._records.get(key)

    def put_many(self, records: list[dict]) -> None:
        if not records:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.bad_lines:  # never append after a torn line: rewrite the file from the good records first
                self._rewrite()
            with open(self.path, "a", encoding="utf-8") as f:
                for record in records:
                    f.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                    self._records[record["key"]] = record
                f.flush()
                os.fsync(f.fileno())

    def put(self, record: dict) -> None:
        self.put_many([record])

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            for record in self._records.values():
                f.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        os.replace(tmp, self.path)
        self.bad_lines = 0


def model_fingerprint(path: str | os.PathLike) -> str:
    """A content fingerprint of a model directory: file names and sizes, config files in full, and 1 MiB samples
    from the start, middle and end of each weight file (retrained weights differ everywhere; hashing all of a 15 GB
    checkpoint on every run is not worth it). Survives copying or moving the run directory."""
    root = Path(path)
    if not root.is_dir():
        return digest(str(path))  # a hub name: the name is all there is
    h = hashlib.sha256()
    sample = 1 << 20
    for p in sorted(root.iterdir()):
        if not p.is_file():
            continue
        size = p.stat().st_size
        h.update(f"{p.name}:{size}\n".encode())
        if p.suffix in (".json", ".jinja", ".txt", ".model"):
            h.update(p.read_bytes())
        elif p.suffix in (".safetensors", ".bin", ".pt", ".gguf"):
            with open(p, "rb") as f:
                for offset in sorted({0, max(0, size // 2 - sample // 2), max(0, size - sample)}):
                    f.seek(offset)
                    h.update(f.read(sample))
    return h.hexdigest()[:16]
