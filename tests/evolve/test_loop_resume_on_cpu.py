"""The resumable loop with a test-double backend (verl_ext.evolve.fake_backend): the image, filter and stats stages
run for real. A crash (exception or SIGKILL) mid-stage leaves no partial output; a re-run resumes at that stage and
ends with artifacts identical to an uninterrupted run; recipe changes to finished stages are caught."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from verl_ext.evolve.fake_backend import FakeBackend, InjectedCrash
from verl_ext.evolve.loop import StaleStageError, run_evolution
from verl_ext.evolve.manifest import DONE, FAILED, RUNNING, Manifest, RunLockedError, run_lock
from verl_ext.evolve.recipe import load_recipe
from verl_ext.evolve.stages import build_plan

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = [
    "model.format_warmup=false",
    "images.max_images=6",
    "generation.num_questions=30",
    "iterations=2",
]
ALL_KEYS = ["0:images"] + [
    f"{t}:{s}"
    for t in (1, 2)
    for s in ("questioner", "questioner_merge", "generate", "pseudo_label", "filter", "reasoner", "reasoner_merge")
]


def _recipe(*extra):
    return load_recipe(ROOT / "recipes/tiny.yaml", overrides=OVERRIDES + list(extra), env={})


def _quiet(_msg):
    pass


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every artifact of a run by relative path -> content digest (parquet by table content; markers by presence)."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if (
            not path.is_file()
            or rel.startswith(("logs/", ".work/"))
            or rel in ("manifest.json", ".lock", "recipe.yaml", "report.html")
        ):
            continue
        if path.name == ".stage.json" or path.suffix == ".png":
            out[rel] = "present"
        elif path.suffix == ".parquet":
            table = pq.read_table(path)
            out[rel] = hashlib.sha256(repr(table.to_pydict()).encode()).hexdigest()
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    backend = FakeBackend()
    run_evolution(_recipe(), run, backend, log=_quiet)
    return run, snapshot(run), backend.calls


def test_uninterrupted_run_is_complete(reference):
    run, snap, calls = reference
    manifest = Manifest(run)
    assert [k for k in ALL_KEYS if manifest.state(k) == DONE] == ALL_KEYS
    assert len(calls) == 12  # 6 backend stages x 2 iterations (images and filter run in-process)
    assert not (run / ".work").exists()
    assert "iter_2/filter/train.parquet" in snap and "stats.json" in snap
    stats = json.loads((run / "iter_2/filter/stats.json").read_text())
    assert stats["counts"]["questions_generated"] == 30
    assert sum(stats["filter"]["counts"].values()) == 30
    assert stats["counts"]["kept"] == pq.ParquetFile(run / "iter_2/filter/train.parquet").metadata.num_rows
    lineage = json.loads((run / "iter_2/reasoner_merge/model.json").read_text())["lineage"]
    assert lineage.startswith("S2(S1(base,")  # S_2 trained from S_1, which was trained from the base model


@pytest.mark.parametrize("crash_at", ["1:generate", "2:questioner_merge"])
def test_crash_mid_stage_leaves_nothing_and_resume_matches(reference, tmp_path, crash_at):
    _, ref_snap, ref_calls = reference
    run = tmp_path / "run"
    with pytest.raises(InjectedCrash):
        run_evolution(_recipe(), run, FakeBackend(crash_at=crash_at), log=_quiet)
    manifest = Manifest(run)
    idx = ALL_KEYS.index(crash_at)
    assert [manifest.state(k) for k in ALL_KEYS[:idx]] == [DONE] * idx
    assert manifest.state(crash_at) == FAILED and "injected crash" in manifest.get(crash_at)["error"]
    assert all(manifest.get(k) is None for k in ALL_KEYS[idx + 1 :])
    t, name = crash_at.split(":")
    assert not (run / f"iter_{t}" / name).exists(), "a failed stage must leave no output in place"

    resumed = FakeBackend()
    run_evolution(_recipe(), run, resumed, log=_quiet)
    assert resumed.calls == ref_calls[ref_calls.index(crash_at) :]  # resumed at the crashed stage, nothing redone
    assert snapshot(run) == ref_snap
    assert Manifest(run).get(crash_at)["attempts"] == 2


def _signal_a_blocked_loop(code: str, tmp_path: Path, run: Path, sig: int) -> tuple[subprocess.Popen, str]:
    """Run `code` (a loop blocking in 1:pseudo_label) in a child, send it `sig` once it blocks; (process, output)."""
    ready, script = tmp_path / "ready", tmp_path / "loop.py"
    script.write_text(code)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ROOT / "recipes/tiny.yaml"), str(run), str(ready), *OVERRIDES],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the loop never reached 1:pseudo_label"
            time.sleep(0.05)
        os.kill(proc.pid, sig)  # the process this test started, by pid
    finally:
        out = proc.communicate(timeout=30)[0].decode()
    return proc, out


SCRIPT = """
import sys
from verl_ext.evolve.fake_backend import FakeBackend
from verl_ext.evolve.loop import run_evolution
from verl_ext.evolve.recipe import load_recipe
recipe = load_recipe(sys.argv[1], overrides=sys.argv[4:], env={})
run_evolution(recipe, sys.argv[2], FakeBackend(block_at="1:pseudo_label", ready_file=sys.argv[3]), log=lambda m: None)
"""


def test_sigkill_mid_stage_then_resume(reference, tmp_path):
    _, ref_snap, ref_calls = reference
    run = tmp_path / "run"
    proc, _ = _signal_a_blocked_loop(SCRIPT, tmp_path, run, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    manifest = Manifest(run)
    assert manifest.state("1:pseudo_label") == RUNNING  # it died without a chance to record anything
    assert not (run / "iter_1/pseudo_label").exists()
    assert (run / ".work/iter_1/pseudo_label/labels.parquet").exists()  # the partial file stayed in the work dir

    resumed = FakeBackend()
    run_evolution(_recipe(), run, resumed, log=_quiet)  # the kernel released the dead process's lock
    assert resumed.calls == ref_calls[ref_calls.index("1:pseudo_label") :]
    assert snapshot(run) == ref_snap


def test_committed_but_unrecorded_stage_is_adopted(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    manifest = Manifest(run)
    manifest.stages["2:reasoner_merge"]["state"] = RUNNING  # crash between the rename and the manifest update
    manifest.save()
    backend = FakeBackend()
    run_evolution(_recipe(), run, backend, log=_quiet)
    assert backend.calls == []
    assert Manifest(run).get("2:reasoner_merge")["adopted"] is True


def test_recipe_change_is_caught_and_force_from_redoes_downstream(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    before = Manifest(run)

    # Settings outside every stage's hash (resources, logging, storage) change nothing.
    idle = FakeBackend()
    run_evolution(_recipe("logging.loggers=[console,tensorboard]", "resources.nnodes=2"), run, idle, log=_quiet)
    assert idle.calls == []

    changed = _recipe("filter.low=0.3")
    with pytest.raises(StaleStageError) as info:
        run_evolution(changed, run, FakeBackend(), log=_quiet)
    msg = str(info.value)
    assert "stage 1:filter" in msg and "filter.low: 0.25 -> 0.3" in msg and "--force-from 1:filter" in msg

    redo = FakeBackend()
    run_evolution(changed, run, redo, force_from="1:filter", log=_quiet)
    assert redo.calls[0] == "1:reasoner" and redo.calls[-1] == "2:reasoner_merge"
    after = Manifest(run)
    for key in ALL_KEYS[: ALL_KEYS.index("1:filter")]:  # upstream stages untouched
        assert after.get(key)["started"] == before.get(key)["started"]
    assert json.loads((run / "iter_1/filter/stats.json").read_text())["band"]["low"] == 0.3


def test_more_iterations_extend_a_finished_run(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    more = FakeBackend()
    run_evolution(_recipe("iterations=3"), run, more, log=_quiet)
    assert more.calls == [f"3:{s}" for s in ("questioner", "questioner_merge", "generate", "pseudo_label",
                                               "reasoner", "reasoner_merge")]  # fmt: skip
    assert len(json.loads((run / "stats.json").read_text())["iterations"]) == 3


def test_stop_after_and_lock(tmp_path):
    run = tmp_path / "run"
    backend = FakeBackend()
    run_evolution(_recipe(), run, backend, stop_after="1:questioner_merge", log=_quiet)
    assert backend.calls == ["1:questioner", "1:questioner_merge"]
    with run_lock(run):
        with pytest.raises(RunLockedError, match="in use by another evolve process"):
            run_evolution(_recipe(), run, FakeBackend(), log=_quiet)


def test_plan_lineage():
    plan = {s.key: s for s in build_plan(_recipe("iterations=3"), "/runs/x")}
    assert plan["1:questioner"].inputs["init_model"] == "testkit:tiny_vlm"
    assert plan["1:questioner"].inputs["reasoner_model"] == "testkit:tiny_vlm"
    assert plan["1:pseudo_label"].inputs["model"] == "testkit:tiny_vlm"
    assert plan["3:questioner"].inputs["init_model"] == "/runs/x/iter_2/questioner_merge"
    assert plan["3:questioner"].inputs["reasoner_model"] == "/runs/x/iter_2/reasoner_merge"
    assert plan["3:generate"].inputs["model"] == "/runs/x/iter_3/questioner_merge"
    assert plan["3:pseudo_label"].inputs["model"] == "/runs/x/iter_2/reasoner_merge"  # S_{t-1} labels
    assert plan["3:reasoner"].inputs["init_model"] == "/runs/x/iter_2/reasoner_merge"
    assert plan["3:filter"].inputs["previous_labels"] == "/runs/x/iter_2/pseudo_label/labels.parquet"
    # A change upstream changes every downstream hash, and nothing upstream.
    other = {s.key: s for s in build_plan(_recipe("iterations=3", "pseudo_label.m=5"), "/runs/x")}
    changed = [k for k in plan if plan[k].config_hash != other[k].config_hash]
    assert changed[0] == "1:pseudo_label" and "1:generate" not in changed and "3:reasoner_merge" in changed


def test_work_dir_of_another_config_is_not_reused(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(InjectedCrash):
        run_evolution(_recipe(), run, FakeBackend(crash_at="1:questioner"), log=_quiet)
    assert (run / ".work/iter_1/questioner/global_step_2").is_dir()  # a resumable stage keeps its work dir
    run_evolution(_recipe("questioner.steps=3"), run, FakeBackend(), stop_after="1:questioner", log=_quiet)
    assert sorted(p.name for p in (run / "iter_1/questioner").glob("global_step_*")) == ["global_step_3"]


def test_checkpoints_pruned_after_merge_do_not_block_resume(tmp_path):
    run = tmp_path / "run"
    run_evolution(_recipe("storage.keep_checkpoints=false", "iterations=1"), run, FakeBackend(), log=_quiet)
    assert not (run / "iter_1/questioner").exists() and not (run / "iter_1/reasoner").exists()
    assert Manifest(run).get("1:questioner")["pruned"] is True
    again = FakeBackend()
    run_evolution(_recipe("storage.keep_checkpoints=false", "iterations=1"), run, again, log=_quiet)
    assert again.calls == []


TERM_SCRIPT = """
import sys
from verl_ext.evolve.fake_backend import FakeBackend
from verl_ext.evolve.loop import run_evolution, sigterm_interrupts
from verl_ext.evolve.recipe import load_recipe
recipe = load_recipe(sys.argv[1], overrides=sys.argv[4:], env={})
with sigterm_interrupts():
    run_evolution(recipe, sys.argv[2], FakeBackend(block_at="1:pseudo_label", ready_file=sys.argv[3]))
"""


def test_sigterm_records_the_stage_as_interrupted_then_resumes(reference, tmp_path):
    """What Slurm sends on preemption: the stage is recorded as interrupted (not left `running`, not `failed`), the
    message says to re-run, and the re-run ends identical to an uninterrupted run."""
    _, ref_snap, ref_calls = reference
    run = tmp_path / "run"
    proc, out = _signal_a_blocked_loop(TERM_SCRIPT, tmp_path, run, signal.SIGTERM)
    assert proc.returncode == 1 and "Terminated: signal SIGTERM" in out  # the exception ended the script
    assert "1:pseudo_label: interrupted (signal SIGTERM); re-run the same command to resume" in out
    assert Manifest(run).state("1:pseudo_label") == "interrupted"

    resumed = FakeBackend()
    run_evolution(_recipe(), run, resumed, log=_quiet)
    assert resumed.calls == ref_calls[ref_calls.index("1:pseudo_label") :]
    assert snapshot(run) == ref_snap


def test_a_failure_is_not_announced_as_resumable(tmp_path):
    lines = []
    with pytest.raises(RuntimeError):
        run_evolution(_recipe(), tmp_path / "run", FakeBackend(crash_at="1:generate"), log=lines.append)
    failed = [line for line in lines if "1:generate: failed" in line]
    assert failed and "re-run" not in failed[0] and "finished stages are kept" in failed[0]
    assert Manifest(tmp_path / "run").state("1:generate") == "failed"
