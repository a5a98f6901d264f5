"""Preflight: before any GPU time is spent, check that a recipe can run on this machine, in one table.

    visplay preflight --recipe recipes/qwen2.5-vl-7b.yaml      (make preflight MODEL=qwen2.5-vl-7b)

Checks: visible GPUs against the recipe's resources; the installed engine stack against the pins verl declares; logger
credentials; the image source's size against the batch sizes and N; host RAM for the questioner step's multimodal
inputs at max_pixels; free disk for checkpoints; the base model's config (architecture supported). It imports neither
torch nor vLLM (it reads package metadata and `nvidia-smi`), so it runs on a CPU machine with a missing engine and
says what is missing. The verl backend runs it before the first stage it starts; VISPLAY_SKIP_PREFLIGHT=1 skips it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from verl_ext.compat import gpu_stack

from .recipe import Recipe

OK, WARN, FAIL = "ok", "warn", "FAIL"
SUPPORTED_ARCHITECTURES = ("Qwen2_5_VLForConditionalGeneration", "Qwen2VLForConditionalGeneration")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Qwen2.5-VL's processor: one float32 row of 3 x 2 x 14 x 14 values per 14 x 14 patch -> 24 bytes per pixel.
PIXEL_VALUE_BYTES_PER_PIXEL = 3 * 2 * 14 * 14 * 4 / (14 * 14)
# An FSDP checkpoint holds fp32 weights + Adam's two moments (12 bytes/param) plus the bf16 HF merge (2 bytes/param).
CHECKPOINT_BYTES_PER_PARAM = 12
MERGED_BYTES_PER_PARAM = 2
KEEP_CHECKPOINTS = 2  # as commands.KEEP_CHECKPOINTS (verl trainer.max_actor_ckpt_to_keep)
GiB = 1024**3


class PreflightError(RuntimeError):
    """A recipe that cannot run here; the message is the table."""


@dataclass(frozen=True)
class Check:
    name: str
    needed: str
    found: str
    status: str  # ok | warn | FAIL
    hint: str = ""


@dataclass
class Probe:
    """The facts about this machine the checks read; tests pass their own."""

    gpus: int | None  # visible GPUs on this node; None = could not tell
    versions: dict[str, str | None]  # distribution -> installed version (None = missing)
    declared: dict[str, str]  # what verl declares for its engine extras
    env: dict[str, str] = field(default_factory=dict)
    home: Path = Path("~")
    mem_available: int | None = None  # bytes
    disk_free: dict[str, int] = field(default_factory=dict)  # path -> free bytes (by the nearest existing dir)


def _visible_gpus(env) -> int | None:
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _existing(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_machine(run_dir: Path, env: dict | None = None) -> Probe:
    env = dict(os.environ if env is None else env)
    names = [*gpu_stack.wanted_pins(), "tensorboard"]
    return Probe(
        gpus=_visible_gpus(env),
        versions={name: gpu_stack.installed_version(name) for name in names},
        declared=gpu_stack.verl_declared_pins(),
        env=env,
        home=Path(env.get("HOME", "~")).expanduser(),
        mem_available=_mem_available(),
        disk_free={str(run_dir): shutil.disk_usage(_existing(Path(run_dir))).free},
    )


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------


def _gpus(recipe: Recipe, probe: Probe) -> list[Check]:
    res, q = recipe.resources, recipe.questioner
    pool = res.questioner_reasoner_gpus if q.reasoner_service == "pool" else 0
    need = max(res.questioner_train_gpus + pool, res.reasoner_train_gpus, res.inference_gpus)
    found = "unknown" if probe.gpus is None else str(probe.gpus)
    what = f"{need} per node x {res.nnodes} node(s)" + (" (this node checked)" if res.nnodes > 1 else "")
    if probe.gpus is None:
        return [Check("GPUs", what, found, WARN, "nvidia-smi did not answer")]
    if probe.gpus < need:
        return [
            Check(
                "GPUs",
                what,
                found,
                FAIL,
                "fewer GPUs visible than the stages ask (resources.questioner_train_gpus + questioner_reasoner_gpus, "
                "reasoner_train_gpus, inference_gpus): lower them or run where more GPUs are visible",
            )
        ]
    return [Check("GPUs", what, found, OK)]


def _base(version: str | None) -> str | None:
    return None if version is None else version.split("+", 1)[0]


def _packages(probe: Probe) -> list[Check]:
    out = []
    for name, pinned in gpu_stack.wanted_pins().items():
        declared = probe.declared.get(name, pinned)
        have = probe.versions.get(name)
        if have is None:
            status, hint = FAIL, "missing: make install-gpu"
        elif _base(have) != declared:
            status, hint = WARN, f"verl 0.9.1 declares {declared}; make install-gpu installs it"
        else:
            status, hint = OK, ""
        out.append(Check(f"package {name}", f"=={declared}", have or "missing", status, hint))
    return out


def _wandb_configured(probe: Probe) -> tuple[bool, str]:
    env = probe.env
    if env.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True, f"WANDB_MODE={env['WANDB_MODE']}"
    if env.get("WANDB_API_KEY"):
        return True, "WANDB_API_KEY set"
    netrc = probe.home / ".netrc"
    try:
        if "api.wandb.ai" in netrc.read_text():
            return True, "~/.netrc (wandb login)"
    except OSError:
        pass
    return False, "no WANDB_API_KEY, no wandb login"


def _loggers(recipe: Recipe, probe: Probe) -> list[Check]:
    out = []
    for name in recipe.logging.loggers:
        if name == "wandb":
            ok, found = _wandb_configured(probe)
            hint = "" if ok else "export WANDB_API_KEY=..., or `wandb login`, or drop wandb from logging.loggers"
            out.append(Check("logger wandb", "an API key", found, OK if ok else FAIL, hint))
        elif name == "tensorboard":
            have = probe.versions.get("tensorboard", "unchecked")
            out.append(Check("logger tensorboard", "tensorboard installed", str(have), OK))
        else:
            out.append(Check(f"logger {name}", "-", "-", OK))
    return out


def count_images(recipe: Recipe) -> int | None:
    """How many images the `images` stage will use (None when it cannot tell without downloading)."""
    cfg = recipe.images
    n: int | None
    if cfg.source in ("testkit", "generator"):
        n = cfg.max_images
    elif cfg.source == "folder":
        root = Path(cfg.path).expanduser()
        if not root.is_dir():
            return 0
        n = sum(1 for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif cfg.source == "parquet":
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            return 0
        n = pq.ParquetFile(path).metadata.num_rows
    else:
        return None
    return n if cfg.max_images is None else min(n, cfg.max_images)


def _images(recipe: Recipe, n: int | None) -> list[Check]:
    batch = recipe.questioner.grpo.rollout_batch_size
    big_n = recipe.generation.num_questions
    needed = f">= {batch} (questioner.grpo.rollout_batch_size); N = {big_n}"
    where = f"{recipe.images.source} {recipe.images.path}"
    if n is None:
        return [Check("images", needed, f"unknown ({where})", WARN, "an hf dataset is counted when it is fetched")]
    if n == 0:
        return [Check("images", needed, f"0 ({where})", FAIL, "no images found: set images.path / IMAGE_PATH")]
    per_iteration = min(n, recipe.generation.images_per_iteration or big_n)
    found = f"{n} ({where}); {per_iteration} asked per iteration, {big_n / per_iteration:.1f} questions each"
    if n < batch:
        hint = f"the questioner stage will shrink its batch to fit ({n} < {batch}; grpo.shrink_to_fit)"
        return [Check("images", needed, found, WARN, hint)]
    return [Check("images", needed, found, OK)]


def multimodal_ram_bytes(recipe: Recipe) -> int:
    """Upper bound of the questioner step's pixel values in host memory: every rollout's image at max_pixels."""
    g = recipe.questioner.grpo
    return int(g.rollout_batch_size * g.n * recipe.images.max_pixels * PIXEL_VALUE_BYTES_PER_PIXEL)


def _ram(recipe: Recipe, probe: Probe) -> list[Check]:
    need = multimodal_ram_bytes(recipe)
    g = recipe.questioner.grpo
    what = f"{need / GiB:.0f} GiB ({g.rollout_batch_size} x n={g.n} images at {recipe.images.max_pixels} px)"
    if probe.mem_available is None:
        return [Check("host RAM (multimodal inputs)", what, "unknown", WARN)]
    found = f"{probe.mem_available / GiB:.0f} GiB available"
    # An upper bound (every image at max_pixels), so a warning, not a failure: smaller images need less.
    if need > probe.mem_available / 2:
        hint = "upper bound: every image at max_pixels; if your images are that large, lower images.max_pixels or "
        hint += "questioner.grpo.rollout_batch_size"
        return [Check("host RAM (multimodal inputs)", what, found, WARN, hint)]
    return [Check("host RAM (multimodal inputs)", what, found, OK)]


def _model_dir(base: str, env: dict) -> Path | None:
    """A local model directory: `base` itself, or its snapshot in the Hugging Face cache."""
    path = Path(base).expanduser()
    if path.is_dir():
        return path
    if "/" not in base or base.startswith(("/", ".", "~")):
        return None
    hub = Path(env.get("HF_HUB_CACHE") or Path(env.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    snapshots = hub / f"models--{base.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
    return found[-1].parent if found else None


def model_parameters(base: str, model_dir: Path | None) -> int | None:
    """Parameter count: the safetensors index's total size (bf16 bytes / 2), else the size in the model's name."""
    if model_dir is not None:
        index = model_dir / "model.safetensors.index.json"
        try:
            return int(json.loads(index.read_text())["metadata"]["total_size"]) // 2
        except (OSError, KeyError, ValueError, TypeError):
            pass
    m = re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", Path(base).name)
    return int(float(m.group(1)) * 1e9) if m else None


def _model(recipe: Recipe, probe: Probe) -> tuple[list[Check], int | None]:
    base = recipe.model.base
    if base.startswith("testkit:"):
        return [Check("base model", "a supported VLM", base, OK)], None
    model_dir = _model_dir(base, probe.env)
    params = model_parameters(base, model_dir)
    if model_dir is None:
        hint = "not a local directory and not in the Hugging Face cache: verl will download it (network, token)"
        return [Check("base model", "config.json readable", f"{base} (not local)", WARN, hint)], params
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        return [Check("base model", "config.json readable", f"{model_dir}: {exc}", FAIL, "fix model.base")], params
    archs = config.get("architectures") or []
    ok = any(a in SUPPORTED_ARCHITECTURES for a in archs)
    found = f"{model_dir} ({', '.join(archs) or 'no architectures'})"
    hint = "" if ok else f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
    return [Check("base model", "a supported architecture", found, OK if ok else FAIL, hint)], params


def _kept_checkpoints(steps: int, every: int | None) -> int:
    saves = -(-steps // (every or steps))  # verl saves every `every` steps and at the last one
    return min(KEEP_CHECKPOINTS, saves)


def checkpoint_disk_bytes(recipe: Recipe, params: int) -> int:
    """FSDP checkpoints (at most KEEP_CHECKPOINTS per training stage) + the merged HF model, for every stage."""
    kept = {
        role: _kept_checkpoints(getattr(recipe, role).steps, getattr(recipe, role).checkpoint_every)
        for role in ("questioner", "reasoner")
    }
    ckpt = {role: k * CHECKPOINT_BYTES_PER_PARAM * params for role, k in kept.items()}
    merged = 2 * recipe.iterations * MERGED_BYTES_PER_PARAM * params
    if recipe.storage.keep_checkpoints:
        return recipe.iterations * sum(ckpt.values()) + merged
    # checkpoints deleted once merged: one stage's checkpoints at a time, plus every merged model
    return max(ckpt.values()) + merged


def _disk(recipe: Recipe, probe: Probe, params: int | None, run_dir: Path) -> list[Check]:
    free = probe.disk_free.get(str(run_dir))
    found = "unknown" if free is None else f"{free / GiB:.0f} GiB free at {run_dir}"
    if params is None:
        return [Check("disk (checkpoints)", "unknown model size", found, WARN)]
    need = checkpoint_disk_bytes(recipe, params)
    keep = "kept" if recipe.storage.keep_checkpoints else "deleted after merge"
    what = f"{need / GiB:.0f} GiB ({params / 1e9:.1f}B params, {2 * recipe.iterations} stages, checkpoints {keep})"
    if free is None:
        return [Check("disk (checkpoints)", what, found, WARN)]
    if need > free:
        return [Check("disk (checkpoints)", what, found, FAIL, "free space, or set storage.keep_checkpoints: false")]
    return [Check("disk (checkpoints)", what, found, OK)]


def run_checks(recipe: Recipe, run_dir: Path, probe: Probe) -> list[Check]:
    checks: list[Check] = []
    # A recipe with a `device` block runs verl on the CPU execution target (tests' tiny-verl): no GPUs, no engines.
    on_gpus = recipe.backend == "verl" and not (recipe.device.env or recipe.device.overrides)
    if on_gpus:
        checks += _gpus(recipe, probe)
        checks += _packages(probe)
    checks += _loggers(recipe, probe)
    checks += _images(recipe, count_images(recipe))
    if recipe.backend == "verl":
        checks += _ram(recipe, probe)
    model_checks, params = _model(recipe, probe)
    checks += model_checks
    if recipe.backend == "verl":
        checks += _disk(recipe, probe, params, run_dir)
    return checks


def render_table(checks: list[Check]) -> str:
    rows = [("check", "needed", "found", "status", "what to do")]
    rows += [(c.name, c.needed, c.found, c.status, c.hint) for c in checks]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows[:1] + [("---",) * 5] + rows[1:])


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == FAIL]


def preflight(recipe: Recipe, run_dir: str | Path, probe: Probe | None = None) -> tuple[list[Check], str]:
    """(checks, markdown table) for `recipe` on this machine."""
    run_dir = Path(run_dir)
    checks = run_checks(recipe, run_dir, probe if probe is not None else probe_machine(run_dir))
    return checks, render_table(checks)
