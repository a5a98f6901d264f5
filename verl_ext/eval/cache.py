"""Per-item caches of an evaluation: responses, rule scores and judge verdicts, as append-only JSONL files.

A record is keyed by a hash of everything its value depends on (checkpoint fingerprint, prompt, decoding settings;
scorer version and gold; judge model and prompt), so a re-run computes only what is new and a changed input simply
misses. Appends are flushed per record; a line cut short by a crash is skipped on reading. Failed judge calls are
not cached: the next run tries them again.

Every record carries the SHA-256 of its own content (`sha256`), checked when the file is read: a record that was
edited, damaged on disk, or written without one is not trusted; it is counted (`corrupt`) and simply missing, so
the run computes it again and rewrites the file without it.
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


CHECKSUM = "sha256"


def record_checksum(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != CHECKSUM}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def sealed(record: dict) -> dict:
    """The record as stored: its content and the SHA-256 of that content."""
    body = json.loads(json.dumps({k: v for k, v in record.items() if k != CHECKSUM}, default=str))
    return {**body, CHECKSUM: record_checksum(body)}


class JsonlStore:
    """key -> record (a dict holding "key"), loaded from and appended to one JSONL file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._records: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.bad_lines = 0  # lines not read: torn by a crash, or failing their checksum
        self.corrupt = 0  # of which: records whose content does not match their checksum (or have none)
        if self.path.is_file():
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                        key = record["key"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.bad_lines += 1  # a torn last line after a crash
                        continue
                    if record.get(CHECKSUM) != record_checksum(record):
                        self.bad_lines += 1
                        self.corrupt += 1
                        self._records.pop(key, None)  # an earlier good copy is superseded by a damaged one: recompute
                        continue
                    self._records[key] = record

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
                    record = sealed(record)
                    f.write(json.dumps(record, sort_keys=True) + "\n")
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
