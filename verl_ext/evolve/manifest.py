"""The run manifest: one JSON file recording every stage's state, inputs, outputs, config hash and timings.

Writes are atomic (temp file, fsync, rename), so a crash or SIGKILL leaves either the old or the new manifest.
A run directory is held by one loop at a time through an advisory lock that dies with its process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verl_ext.atomic_io import atomic_write_json

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
STAGE_MARKER = ".stage.json"  # written inside a stage's output before it is renamed into place

PENDING, RUNNING, DONE, FAILED, INTERRUPTED = "pending", "running", "done", "failed", "interrupted"


def config_hash(config: Any) -> str:
    """Stable short hash of JSON-able data (sorted keys, no whitespace)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def diff_configs(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`key: old -> new` lines for the leaves that differ between two JSON-like configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{path}: (absent) -> {new[key]!r}")
            elif key not in new:
                out.append(f"{path}: {old[key]!r} -> (absent)")
            else:
                out.extend(diff_configs(old[key], new[key], path))
        return out
    return [] if old == new else [f"{prefix or '<value>'}: {old!r} -> {new!r}"]


class RunLockedError(RuntimeError):
    pass


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory exclusively; the kernel drops the lock if this process dies."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunLockedError(
                f"{run_dir} is in use by another evolve process (lock {run_dir / '.lock'}); "
                "wait for it to finish or stop it first"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


class Manifest:
    """`run_dir/manifest.json`: {"version", "recipe", "stages": {"<t>:<stage>": record}}."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / MANIFEST_NAME
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise RuntimeError(
                    f"{self.path}: the run's manifest is not readable JSON ({exc}); restore it or use a new run dir"
                ) from exc
            if not isinstance(self.data, dict) or self.data.get("version") != MANIFEST_VERSION:
                raise RuntimeError(
                    f"{self.path}: manifest version {(self.data or {}).get('version')} is not {MANIFEST_VERSION}"
                )
        else:
            self.data = {"version": MANIFEST_VERSION, "stages": {}}

    # -- access ------------------------------------------------------------------------------------
    @property
    def stages(self) -> dict[str, dict]:
        return self.data["stages"]

    def get(self, key: str) -> dict | None:
        return self.stages.get(key)

    def state(self, key: str) -> str:
        rec = self.get(key)
        return rec["state"] if rec else PENDING

    # -- updates (each one is persisted at once) ---------------------------------------------------
    def save(self) -> None:
        self.data["updated"] = _now()
        atomic_write_json(self.path, self.data)

    def set_meta(self, **fields) -> None:
        self.data.update(fields)
        self.save()

    def start(self, key: str, *, config: dict, config_hash: str, inputs: dict, outputs: dict) -> None:
        prev = self.get(key) or {}
        self.stages[key] = {
            "state": RUNNING,
            "config": config,
            "config_hash": config_hash,
            "inputs": inputs,
            "outputs": outputs,
            "attempts": prev.get("attempts", 0) + 1,
            "started": _now(),
            "finished": None,
            "seconds": None,
            "error": None,
            "summary": None,
        }
        self.save()

    def finish(self, key: str, *, summary: dict | None = None, started_monotonic: float | None = None) -> None:
        rec = self.stages[key]
        rec["state"] = DONE
        rec["finished"] = _now()
        if started_monotonic is not None:
            rec["seconds"] = round(time.monotonic() - started_monotonic, 3)
        rec["summary"] = summary
        rec["error"] = None
        self.save()

    def adopt(self, key: str, marker: dict) -> None:
        """Record as done a stage whose output was renamed into place just before a crash."""
        self.stages[key] = {**marker, "state": DONE, "adopted": True}
        self.save()

    def fail(self, key: str, error: str, state: str = FAILED) -> None:
        """Record a stage that ended without its output: FAILED, or INTERRUPTED (SIGINT, SIGTERM)."""
        rec = self.stages.get(key)
        if rec is None:
            return
        rec["state"] = state
        rec["error"] = error[-4000:]
        rec["finished"] = _now()
        self.save()

    def drop(self, keys: list[str]) -> None:
        for key in keys:
            self.stages.pop(key, None)
        self.save()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
