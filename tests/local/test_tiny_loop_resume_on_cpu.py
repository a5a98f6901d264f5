"""The real tiny loop (local backend, `python -m verl_ext evolve`), SIGKILLed in the middle of questioner training,
resumes at that stage and ends with the same artifacts, in count and content, as an uninterrupted run."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # two small runs of the real loop, ~1 min on 2 cores (the warm-up is shared)

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ["iterations=1", "images.max_images=8", "generation.num_questions=12", "questioner.steps=3"]


def _command(run_dir: Path, base_model: Path) -> list[str]:
    argv = [sys.executable, "-m", "verl_ext", "evolve", "--recipe", str(ROOT / "recipes/tiny.yaml")]
    argv += ["--run-dir", str(run_dir)]
    for override in [*OVERRIDES, f"model.base={base_model}"]:
        argv += ["--set", override]
    return argv


def _env(warm_cache: Path) -> dict:
    return {**os.environ, "VISPLAY_CACHE": str(warm_cache), "OMP_NUM_THREADS": "1"}


def _content(path: Path, run_dir: Path) -> str:
    if path.suffix == ".parquet":  # provenance columns hold absolute paths into the run dir: compare them relative
        table = repr(pq.read_table(path).to_pydict()).replace(str(run_dir), "<RUN>")
        return hashlib.sha256(table.encode()).hexdigest()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(path)
        digest = hashlib.sha256()
        for name in sorted(tensors):
            digest.update(name.encode() + tensors[name].numpy().tobytes())
        return digest.hexdigest()
    if path.name == "stats.json":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return "present"  # logs, timings, html: present in both runs, contents may carry wall-clock times


def snapshot(run_dir: Path) -> dict[str, str]:
    skip = ("logs/", ".work/")
    return {
        p.relative_to(run_dir).as_posix(): _content(p, run_dir)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and not p.relative_to(run_dir).as_posix().startswith(skip)
    }


def _stage_state(run_dir: Path, key: str) -> str | None:
    try:
        return json.loads((run_dir / "manifest.json").read_text())["stages"].get(key, {}).get("state")
    except (OSError, ValueError):  # not written yet
        return None


def test_sigkill_mid_training_then_resume_matches_uninterrupted(tiny_vlm_path, warmed, warm_cache, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_command(reference, tiny_vlm_path), env=_env(warm_cache), check=True, capture_output=True)

    proc = subprocess.Popen(
        _command(killed, tiny_vlm_path), env=_env(warm_cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # The questioner logs one line per optimizer step into its work dir: kill after the first of three steps.
    step_log = killed / ".work/iter_1/questioner/metrics.jsonl"
    try:
        deadline = time.monotonic() + 300
        while not (step_log.exists() and step_log.read_text().count("\n") >= 1):
            assert proc.poll() is None, "the loop ended before the questioner stage trained a step"
            assert time.monotonic() < deadline, "the questioner stage never logged a step"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # the process this test started, by pid
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _stage_state(killed, "1:questioner") == "running"  # died without recording anything
    assert not (killed / "iter_1/questioner").exists()  # nothing partial is in place

    subprocess.run(_command(killed, tiny_vlm_path), env=_env(warm_cache), check=True, capture_output=True)
    assert _stage_state(killed, "1:reasoner_merge") == "done"
    ref, got = snapshot(reference), snapshot(killed)
    assert sorted(got) == sorted(ref)  # the same artifacts...
    assert got == ref  # ...with the same content: parquet tables, weights, stats
