"""The controlled experiment: T VisPlay iterations on unlabeled world images per seed, two controls, oracle metrics.

First the base model, once: the tiny VLM after the format warm-up on the world's labeled seed set (the analogue of an
Instruct model). Per seed: the evolution loop itself (`run_evolution`, local backend, the world recipe starting from
that base), then control (b), the reasoner trained from the same base on the same kept questions with the same budget
but the oracle's labels, then greedy and sampled accuracy on the held-out eval set of (a) the base model, the VisPlay
reasoner S_t and the control's reasoner after every iteration. Everything is cached on disk: a re-run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "tiny-world.yaml"
SEED_SET = "verl_ext.world.seedset:seed_items"
ARMS = ("visplay", "oracle", "base")  # S_t of the loop, control (b), control (a)
ARM_TITLES = {"visplay": "VisPlay (pseudo-labels)", "oracle": "(b) oracle labels", "base": "(a) no training"}


@dataclass(frozen=True)
class ExperimentConfig:
    recipe: str = str(DEFAULT_RECIPE)
    overrides: tuple[str, ...] = ()  # `key=value` recipe overrides, as `--set` of `python -m verl_ext evolve`
    seeds: int = 3
    first_seed: int = 1
    iterations: int = 3  # T
    base_seed: int = 0  # seed of the seed set and the warm-up: one base model shared by every loop seed
    eval_size: int = 360  # held-out labeled questions (one per eval image; 20 per template)
    eval_split: str = "eval"  # "dev" for sizing pilots: keeps the eval set unseen
    eval_samples: int = 4  # sampled answers per eval question (sampled accuracy, majority vote)
    oracle_control: bool = True  # control (b)
    jobs: int = 3  # seeds run in parallel processes (3 on 2 cores: 27 min measured for 3 seeds x T = 3)
    cache_dir: str | None = None  # warmed models (default $VISPLAY_CACHE or ~/.cache/visplay)

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


@dataclass
class SeedPaths:
    root: Path
    run_dir: Path = field(init=False)
    control_dir: Path = field(init=False)
    eval_dir: Path = field(init=False)

    def __post_init__(self):
        self.run_dir = self.root / "visplay"
        self.control_dir = self.root / "oracle_control"
        self.eval_dir = self.root / "eval"


def load_world_recipe(cfg: ExperimentConfig, seed: int, base_model: str | None = None):
    """The recipe of loop seed `seed`; with `base_model`, the loop starts from it (no warm-up stage of its own)."""
    from verl_ext.evolve import load_recipe

    start = [f"model.base={base_model}", "model.format_warmup=false"] if base_model else []
    return load_recipe(cfg.recipe, overrides=[*cfg.overrides, f"seed={seed}", f"iterations={cfg.iterations}", *start])


def warmup_config(cfg: ExperimentConfig, recipe):
    """The recipe's `model.warmup` (the labeled seed set and its SFT budget), seeded by `cfg.base_seed`."""
    from verl_ext.evolve.recipe import RecipeError
    from verl_ext.local.warmup import WarmupConfig

    settings = recipe.model.warmup
    if settings.examples != SEED_SET:
        raise RecipeError([f"model.warmup.examples: the world experiment needs {SEED_SET}, got {settings.examples!r}"])
    return WarmupConfig(
        seed=cfg.base_seed,
        num_images=settings.num_images,
        steps=settings.steps,
        lr=settings.lr,
        examples=settings.examples,
        min_pixels=recipe.images.min_pixels,
        max_pixels=recipe.images.max_pixels,
    )


def build_base(cfg: ExperimentConfig, log: Callable[[str], None] = print) -> str:
    """The base model (Q_0 = S_0): the recipe's model after the format warm-up on the world's labeled seed set, built
    once into the warm-up cache by the local backend's own warm-up code."""
    from verl_ext.evolve.backend import resolve_model
    from verl_ext.local.warmup import warmed_model_path

    recipe = load_world_recipe(cfg, cfg.base_seed)
    return str(
        warmed_model_path(
            resolve_model(recipe.model.base),
            warmup_config(cfg, recipe),
            recipe.prompts.questioner,
            recipe.prompts.reasoner,
            cfg.cache_dir,
            log,
        )
    )


def world_backend(cfg: ExperimentConfig):
    from verl_ext.evolve.local_backend import LocalBackend

    return LocalBackend(cache_dir=cfg.cache_dir)


def _atomic_json(path: Path, data) -> None:
    from verl_ext.atomic_io import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)


# ---------------------------------------------------------------------------------------------------------------
# Control (b): the reasoner on oracle labels for the loop's kept questions
# ---------------------------------------------------------------------------------------------------------------


def write_oracle_train(visplay_train: Path, out: Path) -> dict:
    """The kept questions of an iteration with the oracle's answer as label (questions outside the grammar dropped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .metrics import oracle_for

    table = pq.read_table(visplay_train)
    ids, questions = table.column("source_image_id").to_pylist(), table.column("question").to_pylist()
    results = [oracle_for(i, q) for i, q in zip(ids, questions, strict=True)]
    keep = [r.ok for r in results]
    pseudo = table.column("pseudo_label").to_pylist()
    labelled = table.set_column(
        table.column_names.index("pseudo_label"), "pseudo_label", pa.array([r.answer for r in results], pa.string())
    ).append_column("visplay_pseudo_label", pa.array(pseudo, pa.string()))
    labelled = labelled.filter(pa.array(keep, pa.bool_()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(labelled, tmp)
    tmp.replace(out)
    return {"kept": table.num_rows, "rows": labelled.num_rows, "dropped_outside_grammar": table.num_rows - sum(keep)}


def train_oracle_control(recipe, backend, paths: SeedPaths, t: int, init_model: str, log) -> tuple[str, dict]:
    """S^b_t = GRPO(S^b_{t-1}) on iteration t's kept questions with oracle labels: the loop's reasoner stage code,
    recipe, steps and seed; only the labels differ. Returns (model dir, summary)."""
    from verl_ext.evolve.backend import StageContext
    from verl_ext.evolve.local_backend import FINAL_DIR
    from verl_ext.evolve.stages import StageSpec

    out_dir = paths.control_dir / f"iter_{t}" / "reasoner"
    if (out_dir / "summary.json").is_file():
        return str(out_dir / FINAL_DIR), json.loads((out_dir / "summary.json").read_text())
    train = paths.control_dir / f"iter_{t}" / "train.parquet"
    data = write_oracle_train(paths.run_dir / f"iter_{t}" / "filter" / "train.parquet", train)
    work = paths.control_dir / ".work" / f"iter_{t}" / "reasoner"
    shutil.rmtree(work, ignore_errors=True)
    spec = StageSpec(
        iteration=t,
        name="reasoner",
        config={"control": "oracle_labels", "iteration": t},
        inputs={"init_model": init_model, "train": str(train)},
        output_dir=out_dir,
        work_dir=work,
        log_path=paths.control_dir / "logs" / f"iter_{t}" / "reasoner.log",
    )
    started = time.monotonic()
    summary = backend.train_reasoner(StageContext(recipe=recipe, spec=spec, run_dir=paths.control_dir, log=log))
    summary = {**summary, "data": data, "seconds": round(time.monotonic() - started, 1)}
    _atomic_json(work / "summary.json", summary)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work.rename(out_dir)
    return str(out_dir / FINAL_DIR), summary


# ---------------------------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------------------------


def eval_settings(cfg: ExperimentConfig, recipe) -> dict:
    pl = recipe.pseudo_label
    return {
        "split": cfg.eval_split,
        "size": cfg.eval_size,
        "samples": cfg.eval_samples,
        "temperature": pl.temperature,
        "top_p": pl.top_p,
        "top_k": pl.top_k,
        "max_new_tokens": pl.max_new_tokens,
        "min_pixels": recipe.images.min_pixels,
        "max_pixels": recipe.images.max_pixels,
        "prompt": recipe.prompts.reasoner,
    }


def evaluate_cached(model_dir: str, items: list[dict], settings: dict, path: Path, log) -> dict:
    from .evaluate import evaluate_reasoner

    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == settings and cached.get("model") == str(model_dir):
            return cached["result"]
    started = time.monotonic()
    result = evaluate_reasoner(
        model_dir,
        items,
        min_pixels=settings["min_pixels"],
        max_pixels=settings["max_pixels"],
        prompt_template=settings["prompt"],
        samples=settings["samples"],
        temperature=settings["temperature"],
        top_p=settings["top_p"],
        top_k=settings["top_k"],
        max_new_tokens=settings["max_new_tokens"],
    )
    result["seconds"] = round(time.monotonic() - started, 1)
    _atomic_json(path, {"settings": settings, "model": str(model_dir), "result": result})
    log(f"[world] eval {path.stem}: greedy {result['accuracy']['greedy']:.3f} ({result['seconds']}s)")
    return result


def _brief_accuracy(result: dict) -> dict:
    return {**result["accuracy"], "boxed_rate": result["boxed_rate"], "by_family": result["by_family"]}


def loop_metrics(run_dir: Path, t: int, band: tuple[float, float]) -> dict:
    """The oracle's view of iteration t of a loop run, plus the loop's own stats (difficulty, diversity, ...)."""
    import pyarrow.parquet as pq

    from .metrics import label_metrics, question_metrics

    it = run_dir / f"iter_{t}"
    questions = pq.read_table(
        it / "generate" / "questions.parquet", columns=["source_image_id", "question", "questioner_answer"]
    ).to_pydict()
    labels = pq.read_table(
        it / "filter" / "all.parquet",
        columns=["source_image_id", "question", "pseudo_label", "confidence", "filter_reason"],
    ).to_pydict()
    stats = json.loads((it / "filter" / "stats.json").read_text())
    return {
        "questions": question_metrics(questions),
        "labels": label_metrics(labels, band),
        "stats": {
            "difficulty": stats.get("difficulty"),
            "question_parse_rate": stats.get("question_parse_rate"),
            "answer_parse_rate": stats.get("answer_parse_rate"),
            "diversity": (stats.get("diversity") or {}).get("unique_fraction"),
            "kept": stats["counts"]["kept"],
            "kept_fraction": stats["filter"]["kept_fraction"],
        },
    }


def _prior_accuracy(cfg: ExperimentConfig, recipe, items: list[dict]) -> float | None:
    """The blind baseline: the seed set's most common answer per template (the very seed set of the warm-up)."""
    from verl_ext.local.warmup import build_examples

    from .evaluate import prior_accuracy

    warm = warmup_config(cfg, recipe)
    _, examples = build_examples(
        warm.num_images, warm.seed, recipe.prompts.questioner, recipe.prompts.reasoner, source=warm.examples
    )
    return prior_accuracy(items, [e["item"] for e in examples])


def evaluate_base(cfg: ExperimentConfig, out: Path, base_model: str, log) -> dict:
    """Control (a), the base model on the eval set: one evaluation shared by every seed (the settings do not depend
    on the loop seed), cached in `out/eval/base.json`."""
    from .data import eval_items

    recipe = load_world_recipe(cfg, cfg.base_seed, base_model)
    items = eval_items(cfg.eval_size, split=cfg.eval_split)
    return evaluate_cached(base_model, items, eval_settings(cfg, recipe), out / "eval" / "base.json", log)


def _stage_seconds(run_dir: Path) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {key: rec.get("seconds") for key, rec in manifest["stages"].items()}


# ---------------------------------------------------------------------------------------------------------------
# One seed, all seeds
# ---------------------------------------------------------------------------------------------------------------


def run_seed(cfg: ExperimentConfig, out: Path, seed: int, base_model: str, log: Callable[[str], None] = print) -> dict:
    """Loop, control (b) and evaluations for one seed from `base_model`; writes and returns
    `out/seed_<seed>/results.json`."""
    from verl_ext.evolve import run_evolution
    from verl_ext.report.live import report_refresher

    from .data import eval_items
    from .seedset import ITEMS_PER_SEED_IMAGE

    started = time.monotonic()
    paths = SeedPaths(Path(out) / f"seed_{seed}")
    recipe = load_world_recipe(cfg, seed, base_model)
    backend = world_backend(cfg)
    log(f"[world] seed {seed}: VisPlay loop, T = {recipe.iterations}, run dir {paths.run_dir}")
    run_evolution(recipe, paths.run_dir, backend, log=log, after_stage=report_refresher(log))
    loop_seconds = round(time.monotonic() - started, 1)

    visplay_models = {t: str(paths.run_dir / f"iter_{t}" / "reasoner_merge") for t in range(1, recipe.iterations + 1)}
    control: dict[int, dict] = {}
    oracle_models: dict[int, str] = {}
    if cfg.oracle_control:
        prev = base_model
        for t in range(1, recipe.iterations + 1):
            log(f"[world] seed {seed}: control (b), reasoner on oracle labels, iteration {t}")
            prev, control[t] = train_oracle_control(recipe, backend, paths, t, prev, log)
            oracle_models[t] = prev
    control_seconds = round(time.monotonic() - started - loop_seconds, 1)

    items = eval_items(cfg.eval_size, split=cfg.eval_split)
    settings = eval_settings(cfg, recipe)
    base = evaluate_base(cfg, Path(out), base_model, log)
    band = (recipe.filter.low, recipe.filter.high)
    iterations = [{"t": 0, "accuracy": {arm: _brief_accuracy(base) for arm in ARMS}}]
    for t in range(1, recipe.iterations + 1):
        acc = {
            "visplay": _brief_accuracy(
                evaluate_cached(visplay_models[t], items, settings, paths.eval_dir / f"visplay_t{t}.json", log)
            ),
            "base": _brief_accuracy(base),
        }
        if t in oracle_models:
            acc["oracle"] = _brief_accuracy(
                evaluate_cached(oracle_models[t], items, settings, paths.eval_dir / f"oracle_t{t}.json", log)
            )
        rec = {"t": t, "accuracy": acc, "loop": loop_metrics(paths.run_dir, t, band)}
        if t in control:
            rec["control"] = control[t]
        iterations.append(rec)

    prior = _prior_accuracy(cfg, recipe, items)
    for rec in iterations:
        rec["prior_accuracy"] = prior
    warm = json.loads((Path(base_model) / "warmup.json").read_text())
    warm_cfg = warmup_config(cfg, recipe)
    result = {
        "seed": seed,
        "recipe": recipe.to_dict(),
        "seed_set": {
            "images": warm_cfg.num_images,
            "questions_per_image": ITEMS_PER_SEED_IMAGE,
            "examples": warm.get("examples"),
            "warmup_steps": warm_cfg.steps,
            "warmup_lr": warm_cfg.lr,
            "warmup_loss": warm.get("loss"),
            "warmup_seconds": warm.get("seconds"),  # when it was built (a cached base costs nothing on a re-run)
            "base_seed": cfg.base_seed,
            "base_model": base_model,
        },
        "eval": settings,
        "iterations": iterations,
        "seconds": {
            "loop": loop_seconds,
            "control": control_seconds,
            "eval": round(time.monotonic() - started - loop_seconds - control_seconds, 1),
            "total": round(time.monotonic() - started, 1),
            "stages": _stage_seconds(paths.run_dir),
        },
    }
    _atomic_json(paths.root / "results.json", result)
    log(f"[world] seed {seed}: done in {result['seconds']['total']:.0f}s")
    return result


def _run_seed_logged(cfg: ExperimentConfig, out: str, seed: int, base_model: str) -> dict:
    """Worker entry for parallel seeds: the seed's log goes to its own file."""
    from verl_ext.local.models import configure_threads

    configure_threads(1)
    log_path = Path(out) / f"seed_{seed}" / "log.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as f:

        def log(msg: str) -> None:
            f.write(msg + "\n")
            f.flush()

        return run_seed(cfg, Path(out), seed, base_model, log)


def run_experiment(cfg: ExperimentConfig, out: str | Path, log: Callable[[str], None] = print) -> dict:
    """Every seed (in `cfg.jobs` processes), then the aggregate results.json, results.md and coevolution.png."""
    from .results import write_outputs

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(out / "config.json", dataclasses.asdict(cfg))
    started = time.monotonic()
    warm = warmup_config(cfg, load_world_recipe(cfg, cfg.base_seed))
    log(f"[world] base model: format warm-up on {warm.num_images} labeled seed-set images ({warm.steps} steps)")
    base_model = build_base(cfg, log)
    base_seconds = round(time.monotonic() - started, 1)
    evaluate_base(cfg, out, base_model, log)  # once, before the seeds fork (each would otherwise evaluate it)
    seeds = cfg.seed_list()
    if cfg.jobs > 1 and len(seeds) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        log(f"[world] {len(seeds)} seeds in {cfg.jobs} processes; logs in {out}/seed_<k>/log.txt")
        with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_seed_logged, cfg, str(out), s, base_model) for s in seeds]
            per_seed = [f.result() for f in futures]
    else:
        per_seed = [run_seed(cfg, out, s, base_model, log) for s in seeds]
    wall = round(time.monotonic() - started, 1)
    results = write_outputs(cfg, per_seed, out, wall_seconds=wall, base_seconds=base_seconds)
    log(f"[world] done in {wall:.0f}s: {out / 'results.md'}")
    return results
