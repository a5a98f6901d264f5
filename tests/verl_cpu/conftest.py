"""Fixtures of the end-to-end tests that run verl's real V1 trainer on the CPU (recipes/tiny-verl.yaml).

Each stage runs as the exact command the verl backend composes for `make evolve MODEL=tiny-verl` (the GPU command
plus the recipe's `device:` block), in its own process and process group, with its own local Ray cluster.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "tiny-verl.yaml"
STAGE_TIMEOUT_S = 600
_METRIC = re.compile(r"([\w/@.\-]+):(-?[\d.]+(?:e[-+]?\d+)?|nan)")


def load_tiny_verl(overrides=()):
    from verl_ext.evolve.recipe import load_recipe

    return load_recipe(RECIPE, overrides=list(overrides))


@pytest.fixture(scope="session")
def warmed_model(tiny_vlm_path, tmp_path_factory):
    """The format-warmed tiny VLM (writes parsable questions and boxed answers), built as the loop builds it."""
    from verl_ext.local.warmup import WarmupConfig, warmed_model_path

    recipe = load_tiny_verl()
    cfg = WarmupConfig(seed=recipe.seed, min_pixels=recipe.images.min_pixels, max_pixels=recipe.images.max_pixels)
    # shared with tests/local in a session; VISPLAY_TEST_WARM_CACHE keeps one across sessions when iterating
    cache = Path(os.environ.get("VISPLAY_TEST_WARM_CACHE") or tmp_path_factory.getbasetemp() / "warm_cache_shared")
    return warmed_model_path(tiny_vlm_path, cfg, cache_dir=cache, log=lambda _m: None)


def stage_context(recipe, run_dir: Path, key: str, **inputs):
    """The loop's StageContext for stage `key` ("1:reasoner", ...) of `recipe` in `run_dir`, inputs replaced."""
    from verl_ext.evolve.backend import StageContext
    from verl_ext.evolve.stages import build_plan

    spec = next(s for s in build_plan(recipe, run_dir) if s.key == key)
    spec = dataclasses.replace(spec, inputs={**spec.inputs, **{k: str(v) for k, v in inputs.items()}})
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    return StageContext(recipe=recipe, spec=spec, run_dir=run_dir, log=lambda _m: None)


@dataclasses.dataclass
class StageRun:
    returncode: int
    lines: list[str]
    log_path: Path

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def step_metrics(self) -> dict[int, dict[str, float]]:
        """verl's console logger line per step (`step:N - key:value - ...`) as numbers."""
        steps = {}
        for line in self.lines:
            found = re.search(r"\bstep:(\d+) - (.*)", line)
            if found:
                steps.setdefault(int(found.group(1)), {}).update(
                    {k: float(v) for k, v in _METRIC.findall(found.group(2))}
                )
        return steps


def run_stage(cmd, log_path: Path, on_line: Callable[[str, subprocess.Popen], None] | None = None) -> StageRun:
    """Run a backend Command (argv + env) in its own process group; `on_line(line, proc)` sees each output line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **cmd.env}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    proc = subprocess.Popen(
        cmd.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True, text=True
    )
    timer = threading.Timer(STAGE_TIMEOUT_S, lambda: _kill_group(proc))
    timer.start()
    try:
        with open(log_path, "w") as log:
            for line in proc.stdout:
                log.write(line)
                lines.append(line.rstrip("\n"))
                if on_line is not None:
                    on_line(line, proc)
        returncode = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
    return StageRun(returncode, lines, log_path)


def _kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def kill_group(proc: subprocess.Popen) -> None:
    """Preempt a stage the way a scheduler does: the whole process group, at once."""
    _kill_group(proc, signal.SIGKILL)


def write_pseudo_labels(path: Path, n: int = 8, seed: int = 5) -> Path:
    """A pseudo-label parquet in the loop's schema (records.PSEUDO_LABEL_COLUMNS, all `kept`), templated questions
    about synthetic scenes whose majority answers are the true ones."""
    import pandas as pd

    from verl_ext.local.warmup import scene_questions
    from verl_ext.tiny.images import make_images, png_bytes
    from verl_ext.visplay.records import PSEUDO_LABEL_COLUMNS

    rng = random.Random(seed)
    rows = []
    for i, (image, scene) in enumerate(make_images(n, seed=seed)):
        item = rng.choice(scene_questions(scene, rng))
        rows.append(
            {
                "id": f"{scene['id']}/1/{i}",
                "source_image_id": scene["id"],
                "image": png_bytes(image),
                "question": item["question"],
                "question_type": item["type"],
                "pseudo_label": str(item["answer"]),
                "confidence": 0.5,
                "num_samples": 4,
                "iteration": 1,
                "questioner_checkpoint": "q1",
                "filter_reason": "kept",
            }
        )
    pd.DataFrame(rows, columns=list(PSEUDO_LABEL_COLUMNS)).to_parquet(path)
    return path
