"""What a real run checks before it starts, as verdicts: a dry run prints them all; `visplay evolve` stops on the first
run that would fail with every failing verdict named, before any stage starts (no traceback, no half-made run).

- the run directory: its manifest against the recipe (a finished stage whose config hash changed, an output gone),
  and whether another loop holds it;
- the image source: the folder, parquet or generator exists and has images;
- the base model: a local directory is readable and has a config.json; a hub id is cached or will be downloaded;
- the prompt files the recipe names exist; the backend can be loaded.

Only what can be known without running a stage; reads, never writes.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from .images import IMAGE_SUFFIXES
from .manifest import DONE, MANIFEST_NAME, Manifest, diff_configs
from .recipe import Recipe
from .stages import build_plan

OK, WARN, FAIL = "ok", "warn", "FAIL"
MAX_LISTED = 20
IMAGE_HINT = (
    "put the unlabeled images there or point images.path at them (the shipped recipes read IMAGE_PATH: "
    "make evolve MODEL=qwen2.5-vl-7b IMAGE_PATH=/path/to/images)"
)


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str  # OK | WARN | FAIL: a FAIL stops a real run before its first stage
    detail: str

    def line(self) -> str:
        return f"[{self.verdict:>4}] {self.name}: {self.detail}"


def run_checks(recipe: Recipe, run_dir: str | Path, force_from: str | None = None) -> list[Check]:
    """Every verdict for running `recipe` in `run_dir` (`force_from`: the stage a real run would redo from)."""
    run_dir = Path(run_dir).resolve()
    manifest_check = (
        Check("recipe vs run manifest", OK, f"stages from {force_from} on are redone (--force-from)")
        if force_from
        else _check_manifest(recipe, run_dir)
    )
    return [
        manifest_check,
        _check_lock(run_dir),
        _images_prepared(recipe, run_dir, force_from) or _check_images(recipe),
        _check_model(recipe),
        *_check_prompts(recipe),
        _check_backend(recipe),
    ]


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.verdict == FAIL]


# --------------------------------------------------------------------------------------------------


def _check_manifest(recipe: Recipe, run_dir: Path) -> Check:
    name = "recipe vs run manifest"
    if not (run_dir / MANIFEST_NAME).is_file():
        return Check(name, OK, f"new run ({run_dir} has no {MANIFEST_NAME})")
    try:
        manifest = Manifest(run_dir)
    except (RuntimeError, ValueError) as exc:
        return Check(name, FAIL, f"{run_dir / MANIFEST_NAME}: {exc}")
    done = 0
    for spec in build_plan(recipe, run_dir):
        rec = manifest.get(spec.key)
        if not rec or rec.get("state") != DONE:
            continue
        if rec.get("config_hash") != spec.config_hash:
            changes = diff_configs(rec.get("config"), spec.config)[:MAX_LISTED]
            shown = "; ".join(changes) or "(no readable difference recorded)"
            return Check(
                name,
                FAIL,
                f"stage {spec.key} finished with config hash {rec.get('config_hash')}, the recipe now gives "
                f"{spec.config_hash} ({shown}). Restore the recipe, use another RUN_DIR, or redo from there: "
                f"make evolve EVOLVE_ARGS='--force-from {spec.key}'",
            )
        if not rec.get("pruned") and not spec.output_dir.exists():
            return Check(
                name,
                FAIL,
                f"stage {spec.key} is recorded as done but {spec.output_dir} is gone; redo it: "
                f"make evolve EVOLVE_ARGS='--force-from {spec.key}'",
            )
        done += 1
    return Check(name, OK, f"{done} finished stage(s) match the recipe; a run resumes after them")


def _images_prepared(recipe: Recipe, run_dir: Path, force_from: str | None) -> Check | None:
    """The image stage already done with this recipe: its source is not read again."""
    if not (run_dir / MANIFEST_NAME).is_file() or (force_from and force_from.split(":")[-1] == "images"):
        return None
    try:
        rec = Manifest(run_dir).get("0:images")
    except (RuntimeError, ValueError):
        return None
    spec = build_plan(recipe, run_dir)[0]
    if rec and rec.get("state") == DONE and rec.get("config_hash") == spec.config_hash and spec.output_dir.exists():
        return Check(f"images ({recipe.images.source})", OK, f"already prepared: {spec.output_dir}")
    return None


def _check_lock(run_dir: Path) -> Check:
    name = "run lock"
    lock = run_dir / ".lock"
    if not lock.is_file():
        return Check(name, OK, "free")
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return Check(name, FAIL, f"{run_dir} is in use by another evolve process (lock {lock})")
    finally:
        os.close(fd)
    return Check(name, OK, "free")


def _check_images(recipe: Recipe) -> Check:
    cfg = recipe.images
    name = f"images ({cfg.source})"
    if cfg.source == "testkit":
        return Check(name, OK, f"{cfg.max_images} synthetic images from the test kit")
    if cfg.source == "generator":
        module, _, function = cfg.path.partition(":")
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found or not function:
            return Check(name, FAIL, f"images.path {cfg.path!r}: expected an importable module:function")
        return Check(name, OK, f"{cfg.max_images} images from {cfg.path}")
    if cfg.source == "hf":
        return Check(name, WARN, f"Hugging Face dataset {cfg.path} (split {cfg.split}): loaded when the run starts")
    path = Path(cfg.path)
    shown = str(path) if path.is_absolute() else f"{path} (= {path.resolve()})"
    hint = IMAGE_HINT
    if cfg.source == "folder":
        if not path.is_dir():
            return Check(name, FAIL, f"{shown} is not a directory; {hint}")
        count = sum(1 for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not count:
            return Check(name, FAIL, f"{shown} has no images ({', '.join(IMAGE_SUFFIXES)}); {hint}")
        use = min(count, cfg.max_images) if cfg.max_images else count
        return Check(name, OK, f"{count} images in {path}; the run uses {use}")
    if not path.is_file():  # parquet
        return Check(name, FAIL, f"{shown} is not a file; {hint}")
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
        names = pq.read_schema(path).names
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the verdict
        return Check(name, FAIL, f"{path}: not a readable parquet file ({exc})")
    if cfg.image_column not in names:
        return Check(name, FAIL, f"{path}: no column {cfg.image_column!r} (images.image_column; columns {names})")
    if not meta.num_rows:
        return Check(name, FAIL, f"{path} has no rows")
    return Check(name, OK, f"{meta.num_rows} rows in {path}")


def _check_model(recipe: Recipe) -> Check:
    base = recipe.model.base
    name = "base model"
    if base.startswith("testkit:"):
        return Check(name, OK, f"{base}: built offline on first use (cached)")
    path = Path(os.path.expanduser(base))
    looks_local = base.startswith(("/", ".", "~")) or path.exists() or base.count("/") != 1
    if looks_local:
        if not path.is_dir():
            return Check(name, FAIL, f"{base} is not a directory (model.base; the shipped recipes read BASE_MODEL)")
        config = path / "config.json"
        if not os.access(config, os.R_OK):
            return Check(name, FAIL, f"{config} is missing or unreadable")
        return Check(name, OK, f"{path} (config.json readable)")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(base, "config.json"), str)
    except Exception:  # noqa: BLE001 - no hub client: say it is not known
        cached = False
    if cached:
        return Check(name, OK, f"hub id {base}: in the local Hugging Face cache")
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    if offline:
        return Check(name, FAIL, f"hub id {base}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    return Check(name, WARN, f"hub id {base}: not in the local Hugging Face cache; downloaded when first needed")


def _check_prompts(recipe: Recipe) -> list[Check]:
    out = []
    for role in ("questioner", "reasoner"):
        value = getattr(recipe.prompts, role)
        if value is None:
            continue
        ok = Path(value).is_file()
        out.append(Check(f"{role} prompt", OK if ok else FAIL, value if ok else f"{value} is not a file"))
    return out


def _check_backend(recipe: Recipe) -> Check:
    from .backend import BACKENDS

    name = f"backend {recipe.backend}"
    module = BACKENDS.get(recipe.backend, "").split(":")[0]
    try:
        found = bool(module) and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return Check(name, OK, module) if found else Check(name, FAIL, f"{module or recipe.backend} cannot be imported")
