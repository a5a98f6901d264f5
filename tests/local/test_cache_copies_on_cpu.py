"""Runs own their files: cache entries are copied (or cloned), never hard-linked, so damage to the cache cannot reach
a finished run; sealed entries are checked before use; a killed build's temp dir is swept by the next build."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from verl_ext.atomic_io import seal_dir, seal_problem
from verl_ext.local.models import atomic_dir, copy_tree


def test_copy_tree_shares_no_inode_with_the_cache(tmp_path):
    cache = tmp_path / "cache"
    (cache / "sub").mkdir(parents=True)
    (cache / "model.safetensors").write_bytes(b"weights" * 100)
    (cache / "sub" / "config.json").write_text("{}")
    run = copy_tree(cache, tmp_path / "run" / "model")
    src, dst = cache / "model.safetensors", run / "model.safetensors"
    assert dst.read_bytes() == src.read_bytes() and os.stat(dst).st_ino != os.stat(src).st_ino
    assert os.stat(src).st_nlink == 1 and (run / "sub" / "config.json").read_text() == "{}"
    src.write_bytes(b"truncated")  # the cache is damaged after the run copied it
    assert dst.read_bytes() == b"weights" * 100


def test_sealed_entries_detect_damage_and_missing_files(tmp_path):
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "a.bin").write_bytes(b"\x00" * 64)
    (entry / "b.json").write_text('{"k": 1}')
    assert "no .sealed.json" in seal_problem(entry)
    seal_dir(entry)
    assert seal_problem(entry) is None
    (entry / "a.bin").write_bytes(b"\x00" * 63 + b"\x01")  # same size, one bit
    assert seal_problem(entry) == f"{entry / 'a.bin'} differs from what was built"
    (entry / "a.bin").write_bytes(b"\x00" * 64)
    (entry / "b.json").unlink()
    assert seal_problem(entry) == f"{entry / 'b.json'} is missing"


def test_a_killed_builds_temp_dir_is_swept_by_the_next_build(tmp_path):
    final = tmp_path / "warmup-abc"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".{final.name}.pid{dead_pid}.x1"
    live = tmp_path / f".{final.name}.pid{os.getpid()}.x2"  # this process: still building elsewhere
    stale.mkdir()
    live.mkdir()
    with atomic_dir(final) as tmp:
        (tmp / "warmup.json").write_text("{}")
    assert (final / "warmup.json").is_file() and not stale.exists() and live.exists()


def test_a_failed_build_publishes_nothing(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")
    assert not final.exists() and not list(tmp_path.iterdir())


def test_a_carried_over_model_leaves_the_stage_marker_of_its_source_behind(tmp_path):
    """S_t = S_{t-1} (an empty band) copies S_{t-1}'s merged output; its `.stage.json` describes that output, and a
    copy of it inside S_t's stage made every later resume report the stage as corrupt."""
    from verl_ext.evolve.manifest import STAGE_MARKER
    from verl_ext.local.models import copy_tree

    src = tmp_path / "iter_1/reasoner_model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub/weights.bin").write_bytes(b"w" * 10)
    (src / STAGE_MARKER).write_text('{"files": {}}')
    dst = copy_tree(src, tmp_path / "iter_2/final", ignore=(STAGE_MARKER,))
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*")) == ["config.json", "sub", "sub/weights.bin"]
    assert (dst / "sub/weights.bin").read_bytes() == b"w" * 10
    everything = copy_tree(src, tmp_path / "plain")
    assert (everything / STAGE_MARKER).is_file()  # without `ignore`, a copy is whole
