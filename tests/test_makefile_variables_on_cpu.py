"""The Makefile's variables reach the commands its targets run: MODEL (a recipe name, or a checkpoint path for eval),
RUN / RUN_DIR / VISPLAY_RUNS (which run eval, report and status read), DRY_RUN (which values mean yes), EVOLVE_ARGS,
TESTS / PYTEST_ARGS, WORLD_OUT and MUTATE_ARGS; and one real `make evolve DRY_RUN=1` run end to end."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
PY = "python3"
V = f"{PY} -m verl_ext"


def last_line(*args, env=None) -> str:
    """The last command `make -n` would run (the silent environment check comes first)."""
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "-n", *args, f"PYTHON={PY}"],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    "args, command",
    [
        ((), f"{V} evolve --recipe recipes/tiny.yaml"),
        (("MODEL=qwen2.5-vl-7b",), f"{V} evolve --recipe recipes/qwen2.5-vl-7b.yaml"),
        (("DRY_RUN=1",), f"{V} evolve --recipe recipes/tiny.yaml --dry-run"),
        (("DRY_RUN=true",), f"{V} evolve --recipe recipes/tiny.yaml --dry-run"),
        (("DRY_RUN=yes",), f"{V} evolve --recipe recipes/tiny.yaml --dry-run"),
        (("DRY_RUN=0",), f"{V} evolve --recipe recipes/tiny.yaml"),
        (("DRY_RUN=no",), f"{V} evolve --recipe recipes/tiny.yaml"),
        (("RUN_DIR=/data/r1", "MODEL=tiny-verl"), f"{V} evolve --recipe recipes/tiny-verl.yaml --run-dir /data/r1"),
        (("EVOLVE_ARGS=--set iterations=1", "DRY_RUN=1"),
         f"{V} evolve --recipe recipes/tiny.yaml --dry-run --set iterations=1"),
    ],
)  # fmt: skip
def test_evolve(args, command):
    assert last_line("evolve", *args) == command


@pytest.mark.parametrize(
    "args, env, command",
    [
        ((), {}, f"{V} eval --run runs/tiny"),
        (("MODEL=/ckpt/step_20",), {}, f"{V} eval --model /ckpt/step_20"),  # a path: one checkpoint
        (("MODEL=org/model",), {}, f"{V} eval --model org/model"),  # a hub name too
        (("MODEL=qwen2.5-vl-7b",), {}, f"{V} eval --run runs/qwen2.5-vl-7b"),  # a recipe: its run
        (("RUN=/data/r1",), {}, f"{V} eval --run /data/r1"),
        (("RUN=/data/r1", "MODEL=/ckpt/x"), {}, f"{V} eval --run /data/r1"),  # RUN= wins over a model path
        (("RUN_DIR=/data/r2",), {}, f"{V} eval --run /data/r2"),
        (("RUN=/data/r1", "RUN_DIR=/data/r2"), {}, f"{V} eval --run /data/r1"),
        ((), {"VISPLAY_RUNS": "/scratch/runs"}, f"{V} eval --run /scratch/runs/tiny"),
        (("EVAL_ARGS=--limit 4",), {}, f"{V} eval --run runs/tiny --limit 4"),
    ],
)
def test_eval(args, env, command):
    assert last_line("eval", *args, env=env) == command


@pytest.mark.parametrize(
    "args, env, suffix",
    [
        ((), {}, "runs/tiny"),
        (("RUN=/data/r1",), {}, "/data/r1"),
        (("RUN_DIR=/data/r2",), {}, "/data/r2"),
        (("MODEL=mimo-vl-7b",), {}, "runs/mimo-vl-7b"),
        (("MODEL=mimo-vl-7b",), {"VISPLAY_RUNS": "/scratch/runs"}, "/scratch/runs/mimo-vl-7b"),
    ],
)
def test_report_and_status_read_the_same_run(args, env, suffix):
    assert last_line("report", *args, env=env) == f"{V} report --run {suffix}"
    assert last_line("status", *args, env=env) == f"{V} status {suffix}"


def test_other_targets_pass_their_variables():
    assert last_line("test") == f"{PY} -m pytest tests"
    assert last_line("test", "TESTS=tests/visplay", "PYTEST_ARGS=-x -q") == f"{PY} -m pytest tests/visplay -x -q"
    assert last_line("preflight", "MODEL=qwen2.5-vl-7b", "RUN_DIR=/d") == (
        f"{V} preflight --recipe recipes/qwen2.5-vl-7b.yaml --run-dir /d"
    )
    assert last_line("world", "WORLD_OUT=/w") == f"{V} world --seeds 3 --iterations 2 --jobs 3 --out /w"
    assert last_line("mutate") == f"nice -n 10 {PY} tools/mutate.py"
    assert last_line("mutate", "MUTATE_ARGS=--report-only") == f"nice -n 10 {PY} tools/mutate.py --report-only"


def test_mutate_is_not_part_of_make_test():
    assert "mutate" not in last_line("test") and "mutmut" not in (ROOT / "pyproject.toml").read_text()


def test_make_evolve_dry_run_for_real(tmp_path):
    """`make evolve DRY_RUN=1 RUN_DIR=...` runs the visplay CLI's dry run and leaves the run dir untouched."""
    run_dir = tmp_path / "dry"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "evolve", "DRY_RUN=1", f"RUN_DIR={run_dir}",
         f"PYTHON={sys.executable}"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"# evolve dry run: recipe tiny, backend local, run dir {run_dir}" in proc.stdout
    assert "# verdict: ready to run" in proc.stdout
    assert not run_dir.exists()
