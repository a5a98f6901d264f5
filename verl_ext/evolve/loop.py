"""The evolution loop: run the stage plan in order, resuming at the first unfinished stage.

Each stage writes into its own `.work/` dir; on success a marker is written and the dir is renamed into place (the
commit point), then the manifest is updated. A crash at any moment leaves no partial output in place, and a re-run
picks up where it stopped. A finished stage whose config hash no longer matches the recipe stops the run with the keys
that changed, unless `force_from` names where to redo from.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import yaml

from verl_ext.atomic_io import atomic_write_json, atomic_write_text

from .backend import Backend, StageContext, get_backend
from .checks import Check, failures, run_checks
from .filter_stage import run_filter, write_run_stats
from .images import prepare_images
from .integrity import CorruptOutputError, hash_files, list_files, read_marker, verify_output
from .manifest import DONE, FAILED, INTERRUPTED, STAGE_MARKER, Manifest, diff_configs, run_lock
from .recipe import Recipe
from .stages import RunLayout, StageSpec, build_plan, parse_stage_key, stage_key

IN_PROCESS_STAGES = ("images", "filter")
WORK_OWNER = ".work_config_hash"  # inside a work dir: the config hash of the stage attempt that made it
BACKEND_METHOD = {
    "warmup": "format_warmup",
    "questioner": "train_questioner",
    "questioner_merge": "merge",
    "generate": "generate_questions",
    "pseudo_label": "pseudo_label",
    "reasoner": "train_reasoner",
    "reasoner_merge": "merge",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (Slurm's preemption, `kill`) as an interruption: the stage is recorded as interrupted, like Ctrl-C."""


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread (Python's default would end the process
    without recording the stage). Elsewhere than the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Terminated(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StaleStageError(RuntimeError):
    """A finished stage was made with a different config than the recipe now gives."""


class MissingOutputError(RuntimeError):
    pass


def default_run_dir(recipe: Recipe) -> Path:
    return Path(recipe.storage.root) / recipe.name


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


def run_evolution(
    recipe: Recipe,
    run_dir: str | Path,
    backend: Backend | None = None,
    *,
    force_from: str | None = None,
    stop_after: str | None = None,
    log: Callable[[str], None] = print,
    after_stage: Callable[[StageSpec, Path], None] | None = None,
    verify: bool = False,
) -> Manifest:
    """Run (or resume) every stage of `recipe` in `run_dir`. `stop_after` (`t:stage`) ends the run early.

    `after_stage(spec, run_dir)` is called after every stage, finished now or before; higher layers use it to follow
    a run (the CLI refreshes the HTML report with it) without the loop importing them. Finished stages' files are
    checked against their markers by size, and with `verify` by SHA-256, before anything builds on them.
    """
    run_dir = Path(run_dir).resolve()
    plan = build_plan(recipe, run_dir)
    keys = [s.key for s in plan]
    if stop_after is not None:
        stop_key = stage_key(*parse_stage_key(stop_after))
        if stop_key not in keys:
            raise ValueError(f"--stop-after {stop_after}: not a stage of this recipe (T = {recipe.iterations})")
    backend = backend if backend is not None else get_backend(recipe.backend)

    with run_lock(run_dir):
        manifest = Manifest(run_dir)
        manifest.set_meta(recipe=recipe.name, backend=recipe.backend, iterations=recipe.iterations)
        atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        if force_from is not None:
            _invalidate_from(plan, manifest, force_from, log)
        check_consistency(plan, manifest, verify=verify)
        for spec in plan:
            if manifest.state(spec.key) != DONE:
                if not _adopt_committed(spec, manifest, log):
                    _run_stage(spec, recipe, run_dir, backend, manifest, log)
            if spec.name == "filter":
                _refresh_run_stats(plan, run_dir)
            if after_stage is not None:
                after_stage(spec, run_dir)
            if stop_after is not None and spec.key == stop_key:
                log(f"[evolve] stopping after {spec.key} as asked")
                break
        else:
            _remove_empty_dirs(run_dir / ".work")
            log(f"[evolve] run complete: {run_dir}")
    return manifest


def check_consistency(plan: list[StageSpec], manifest: Manifest, verify: bool = False) -> None:
    """Raise `StaleStageError` at the first finished stage whose config differs from the plan's, and
    `CorruptOutputError` at the first whose files differ from what it wrote (sizes; with `verify`, SHA-256 too)."""
    for spec in plan:
        rec = manifest.get(spec.key)
        if not rec or rec["state"] != DONE:
            continue
        if rec["config_hash"] != spec.config_hash:
            changes = diff_configs(rec.get("config"), spec.config)
            shown = "\n    ".join(changes[:20]) or "(no readable difference recorded)"
            raise StaleStageError(
                f"stage {spec.key} finished with config hash {rec['config_hash']}, but the recipe now gives "
                f"{spec.config_hash}. Changed:\n    {shown}\n"
                f"Either restore the recipe, use a new run dir (RUN_DIR=), or redo this stage and everything after "
                f"it: make evolve EVOLVE_ARGS='--force-from {spec.key}' (visplay evolve ... --force-from {spec.key})"
            )
        if not rec.get("pruned") and not spec.output_dir.exists():
            raise MissingOutputError(
                f"stage {spec.key} is recorded as done but its output {spec.output_dir} is gone; redo it: "
                f"make evolve EVOLVE_ARGS='--force-from {spec.key}' (visplay evolve ... --force-from {spec.key})"
            )
        if not rec.get("pruned"):
            verify_output(spec.key, spec.output_dir, STAGE_MARKER, full=verify)


def _invalidate_from(plan: list[StageSpec], manifest: Manifest, force_from: str, log) -> None:
    key = stage_key(*parse_stage_key(force_from))
    keys = [s.key for s in plan]
    if key not in keys:
        raise ValueError(f"--force-from {force_from}: not a stage of this recipe")
    doomed = plan[keys.index(key) :]
    for spec in doomed:
        for path in (spec.output_dir, spec.work_dir):
            if path.exists():
                shutil.rmtree(path)
    dropped = [s.key for s in doomed if manifest.get(s.key)]
    manifest.drop([s.key for s in doomed])
    log(f"[evolve] --force-from {key}: cleared {len(dropped)} recorded stage(s) from {key} on")


def _adopt_committed(spec: StageSpec, manifest: Manifest, log) -> bool:
    """A stage renamed into place just before a crash (manifest not yet updated) is taken as done."""
    marker_path = spec.output_dir / STAGE_MARKER
    if marker_path.is_file():
        try:
            marker = read_marker(spec.key, marker_path)
            verify_output(spec.key, spec.output_dir, STAGE_MARKER)
        except CorruptOutputError as exc:
            log(f"[evolve] {spec.key}: not adopting its committed output ({exc}); redoing the stage")
            marker = {}
        if marker.get("config_hash") == spec.config_hash:
            manifest.adopt(spec.key, marker)
            log(f"[evolve] {spec.key}: output already committed, recorded as done")
            return True
    if spec.output_dir.exists():  # output of an older config or an unfinished rename: never trust it
        shutil.rmtree(spec.output_dir)
    return False


def _run_stage(spec: StageSpec, recipe: Recipe, run_dir: Path, backend: Backend, manifest: Manifest, log) -> None:
    for name, value in spec.inputs.items():
        path = Path(value)
        if path.is_absolute() and str(path).startswith(str(run_dir)) and not path.exists():
            raise MissingOutputError(
                f"stage {spec.key}: input {name} ({path}) does not exist; redo the stage that makes it (--force-from)"
            )
    owner = spec.work_dir / WORK_OWNER
    if spec.work_dir.exists():
        # Keep a work dir only to resume the very same stage config (verl checkpoints, finished shards).
        same = owner.is_file() and owner.read_text().strip() == spec.config_hash
        if not spec.resumable or not same:
            shutil.rmtree(spec.work_dir)
    resumed = spec.work_dir.exists()
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(owner, spec.config_hash + "\n")
    manifest.start(
        spec.key,
        config=spec.config,
        config_hash=spec.config_hash,
        inputs=spec.inputs,
        outputs={k: str(spec.output_path(k)) for k in spec.outputs},
    )
    log(f"[evolve] {spec.key}: start{' (resuming its work dir)' if resumed else ''} -> {spec.output_dir}")
    started = time.monotonic()
    try:
        with _heartbeat(spec.key, log) as stage_log:
            ctx = StageContext(recipe=recipe, spec=spec, run_dir=run_dir, log=stage_log)
            summary = execute_stage(spec, ctx, backend) or {}
        for name in spec.outputs:
            if not spec.work_path(name).exists():
                raise MissingOutputError(f"stage {spec.key}: the backend did not write {spec.work_path(name)}")
    except BaseException as exc:  # KeyboardInterrupt included: record it, then let it end the run
        interrupted = isinstance(exc, KeyboardInterrupt)
        manifest.fail(spec.key, "".join(traceback.format_exception(exc)), INTERRUPTED if interrupted else FAILED)
        if interrupted:  # only an interruption is certain to go on where it stopped
            log(f"[evolve] {spec.key}: interrupted ({exc or 'SIGINT'}); re-run the same command to resume")
        else:
            log(f"[evolve] {spec.key}: failed ({type(exc).__name__}: {exc}); finished stages are kept")
        raise
    seconds = round(time.monotonic() - started, 3)
    marker = {
        "stage": spec.key,
        "config": spec.config,
        "config_hash": spec.config_hash,
        "inputs": spec.inputs,
        "outputs": {k: str(spec.output_path(k)) for k in spec.outputs},
        "summary": summary,
        "seconds": seconds,
        "files": list_files(spec.work_dir, exclude=(WORK_OWNER,)),
    }
    marker["sha256"] = hash_files(spec.work_dir, marker["files"])
    owner.unlink(missing_ok=True)
    atomic_write_json(spec.work_dir / STAGE_MARKER, marker)
    spec.output_dir.parent.mkdir(parents=True, exist_ok=True)
    spec.work_dir.rename(spec.output_dir)  # commit point
    manifest.finish(spec.key, summary={**summary, "files": len(marker["files"])}, started_monotonic=started)
    log(f"[evolve] {spec.key}: done in {seconds:.1f}s -> {spec.output_dir} {json.dumps(summary, default=str)[:300]}")
    if spec.name.endswith("_merge") and not recipe.storage.keep_checkpoints:
        _prune_checkpoint(spec, manifest, log)


def heartbeat_seconds() -> float:
    try:
        return float(os.environ.get("VISPLAY_HEARTBEAT", "10"))
    except ValueError:
        return 10.0


@contextlib.contextmanager
def _heartbeat(key: str, log: Callable[[str], None]) -> Iterator[Callable[[str], None]]:
    """A stage's log function; while the stage has logged nothing for VISPLAY_HEARTBEAT seconds (default 10; 0 = off),
    a `still running` line says which stage is working and for how long, so a long step is never silent."""
    every = heartbeat_seconds()
    last = [time.monotonic()]
    started = last[0]

    def stage_log(message: str) -> None:
        last[0] = time.monotonic()
        log(message)

    if every <= 0:
        yield stage_log
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(min(every, 1.0)):
            now = time.monotonic()
            if now - last[0] >= every:
                stage_log(f"[evolve] {key}: still running ({now - started:.0f} s)")

    thread = threading.Thread(target=beat, name=f"heartbeat-{key}", daemon=True)
    thread.start()
    try:
        yield stage_log
    finally:
        stop.set()
        thread.join()


def execute_stage(spec: StageSpec, ctx: StageContext, backend: Backend) -> dict | None:
    """Do one stage's work into `spec.work_dir`."""
    recipe = ctx.recipe
    if spec.name == "images":
        return prepare_images(recipe.images, ctx.out("images"), recipe.seed)
    if spec.name == "filter":
        stats = run_filter(
            spec.inputs["labels"],
            spec.inputs["questions"],
            spec.work_dir,
            recipe.filter,
            recipe.stats,
            iteration=spec.iteration,
            seed=ctx.seed(),
            lam=recipe.questioner.lam,
            cluster_threshold=recipe.questioner.cluster_threshold,
        )
        return {"counts": stats["counts"], "kept_fraction": stats["filter"]["kept_fraction"]}
    method = getattr(backend, BACKEND_METHOD[spec.name], None)
    if method is None:
        raise NotImplementedError(f"stage {spec.key}: backend {backend.name!r} has no {BACKEND_METHOD[spec.name]}()")
    return method(ctx)


def _prune_checkpoint(merge_spec: StageSpec, manifest: Manifest, log) -> None:
    train_key = stage_key(merge_spec.iteration, merge_spec.name.removesuffix("_merge"))
    ckpt = Path(merge_spec.inputs["checkpoint"])
    if ckpt.exists():
        shutil.rmtree(ckpt)
    rec = manifest.get(train_key)
    if rec is not None:
        rec["pruned"] = True
        manifest.save()
    log(f"[evolve] {train_key}: checkpoint deleted after merge (storage.keep_checkpoints: false)")


def _remove_empty_dirs(root: Path) -> None:
    if not root.is_dir():
        return
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


def _refresh_run_stats(plan: list[StageSpec], run_dir: Path) -> None:
    per_iteration = []
    for spec in plan:
        if spec.name == "filter" and (spec.output_dir / "stats.json").is_file():
            per_iteration.append(json.loads((spec.output_dir / "stats.json").read_text()))
    if per_iteration:
        write_run_stats(per_iteration, RunLayout(run_dir).stats_path)


# --------------------------------------------------------------------------------------------------
# Dry run
# --------------------------------------------------------------------------------------------------


def dry_run(
    recipe: Recipe,
    run_dir: str | Path,
    backend: Backend | None = None,
    out: TextIO | None = None,
    force_from: str | None = None,
) -> list[Check]:
    """Print the resolved recipe, the verdict of every check a real run makes before it starts, and every stage's
    command(s), touching nothing on disk. Returns the checks (a FAIL is what a real run would stop on)."""
    out = out if out is not None else sys.stdout
    run_dir = Path(run_dir).resolve()
    plan = build_plan(recipe, run_dir)
    checks = run_checks(recipe, run_dir, force_from=force_from)
    if backend is None:
        try:
            backend = get_backend(recipe.backend)
        except NotImplementedError:
            backend = None
    manifest = Manifest(run_dir) if (run_dir / "manifest.json").exists() else None
    w = out.write
    w(f"# evolve dry run: recipe {recipe.name}, backend {recipe.backend}, run dir {run_dir}\n")
    w("# resolved recipe:\n")
    for line in yaml.safe_dump(recipe.to_dict(), sort_keys=False).splitlines():
        w(f"#   {line}\n")
    w("# checks a real run makes before it starts:\n")
    for check in checks:
        w(f"#   {check.line()}\n")
    for spec in plan:
        state = manifest.state(spec.key) if manifest else "pending"
        w(f"\n## [{spec.key}] state={state} config_hash={spec.config_hash}\n")
        w(f"#  output: {spec.output_dir}  (written to {spec.work_dir}, renamed on success)\n")
        ctx = StageContext(recipe=recipe, spec=spec, run_dir=run_dir, log=lambda _m: None)
        for line in describe_stage(spec, ctx, backend):
            w(line.rstrip("\n") + "\n")
    failed = failures(checks)
    w("\n# verdict: " + (f"a real run would stop: {len(failed)} check(s) failed\n" if failed else "ready to run\n"))
    for check in failed:
        w(f"#   {check.line()}\n")
    out.flush()
    return checks


def describe_stage(spec: StageSpec, ctx: StageContext, backend: Backend | None) -> list[str]:
    if spec.name == "images":
        cfg = ctx.recipe.images
        limit = f", at most {cfg.max_images} (seeded)" if cfg.max_images else ""
        return [f"# in-process: images from {cfg.source} {cfg.path}{limit} -> {spec.work_path('images')}"]
    if spec.name == "filter":
        f = ctx.recipe.filter
        return [
            f"# in-process: band filter {f.low} <= p <= {f.high} on {spec.inputs['labels']}",
            f"#   -> {spec.work_path('train')} (kept), {spec.work_path('all')} (all + reason),",
            f"#      {spec.work_path('stats')}",
        ]
    if backend is None:
        return [f"# backend {ctx.recipe.backend!r} (not available in this checkout): {BACKEND_METHOD[spec.name]}()"]
    return backend.describe(ctx)
