"""The controlled experiment: four arms per seed from one base model, measured on a prior-free eval set.

First the base model, once: the tiny VLM after the format warm-up on the world's labeled seed set (the analogue of an
Instruct model). Then the gate (`gate.py`): on the dev split, the oracle-label arm must gain on the endpoint before the
main run starts; its scan picks the reasoner budget. Per seed: the evolution loop itself (`run_evolution`, local
backend, the world recipe starting from that base), the oracle-label arm on the loop's kept questions, VisPlay with the
questioner frozen at Q_0, the difficulty of every Q_t's questions under the fixed S_0, and greedy accuracy on the
balanced eval set (with the images swapped too) of every arm after every iteration. Everything is cached on disk: a
re-run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .seedset import PERCEPTION_TEMPLATES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "tiny-world.yaml"
SEED_SET = "verl_ext.world.seedset:seed_items"
PERCEPTION_SET = "verl_ext.world.seedset:perception_items"
# variant -> (the warm-up's labeled seed set, the templates of the eval set; None = all 18)
VARIANTS = {"full": (SEED_SET, None), "perception": (PERCEPTION_SET, PERCEPTION_TEMPLATES)}
ARMS = ("base", "oracle", "visplay", "frozen")
ARM_TITLES = {
    "base": "base (no training)",
    "oracle": "oracle labels",
    "visplay": "VisPlay",
    "frozen": "VisPlay, questioner frozen at Q0",
}


@dataclass(frozen=True)
class ExperimentConfig:
    recipe: str = str(DEFAULT_RECIPE)
    overrides: tuple[str, ...] = ()  # `key=value` recipe overrides, as `--set` of `python -m verl_ext evolve`
    variant: str = "perception"  # perception: numerical templates that need the image; full: all 18 templates
    seeds: int = 3
    first_seed: int = 1
    iterations: int = 2  # T
    base_seed: int = 0  # seed of the seed set and the warm-up: one base model shared by every loop seed
    per_template: int = 32  # eval items per template (balanced answers; >= 30)
    eval_split: str = "eval"  # "dev" for sizing pilots: keeps the eval set unseen
    eval_samples: int = 0  # sampled answers per eval question (0: greedy and swapped only, the endpoint)
    arms: tuple[str, ...] = ARMS
    budget: int = 1  # reasoner rollouts per stage, as a multiple of the recipe's (stats.budget_overrides)
    s0_questions: int = 64  # questions of each Q_t scored by the fixed S_0 (difficulty)
    gate: bool = True  # run the gate on the dev split first; its budget replaces `budget`
    gate_budgets: tuple[int, ...] = (1, 2)
    gate_threshold: float = 0.05
    jobs: int = 3  # seeds run in parallel processes
    cache_dir: str | None = None  # warmed models (default $VISPLAY_CACHE or ~/.cache/visplay)

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def eval_templates(self) -> tuple[str, ...] | None:
        return VARIANTS[self.variant][1]


@dataclass
class SeedPaths:
    root: Path
    run_dir: Path = field(init=False)
    control_dir: Path = field(init=False)
    frozen_dir: Path = field(init=False)
    s0_dir: Path = field(init=False)
    eval_dir: Path = field(init=False)

    def __post_init__(self):
        self.run_dir = self.root / "visplay"
        self.control_dir = self.root / "oracle_control"
        self.frozen_dir = self.root / "frozen_questioner"
        self.s0_dir = self.root / "s0_difficulty"
        self.eval_dir = self.root / "eval"


def variant_overrides(cfg: ExperimentConfig) -> list[str]:
    """The variant's seed set (the base model's warm-up data)."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"variant: one of {sorted(VARIANTS)}, got {cfg.variant!r}")
    return [f"model.warmup.examples={VARIANTS[cfg.variant][0]}"]


def load_world_recipe(cfg: ExperimentConfig, seed: int, base_model: str | None = None, budget: int | None = None):
    """The recipe of loop seed `seed`: the variant's seed set, `cfg.overrides`, the reasoner `budget` (default
    `cfg.budget`); with `base_model`, the loop starts from it (no warm-up stage of its own)."""
    from verl_ext.evolve import load_recipe

    from .stats import budget_overrides

    plain = load_recipe(cfg.recipe, overrides=[*variant_overrides(cfg), *cfg.overrides])
    grpo = plain.reasoner.grpo
    scaled = budget_overrides(budget or cfg.budget, plain.reasoner.steps, grpo.rollout_batch_size)
    start = [f"model.base={base_model}", "model.format_warmup=false"] if base_model else []
    overrides = [*variant_overrides(cfg), *cfg.overrides, *scaled, f"seed={seed}", f"iterations={cfg.iterations}"]
    return load_recipe(cfg.recipe, overrides=[*overrides, *start])


def warmup_config(cfg: ExperimentConfig, recipe):
    """The recipe's `model.warmup` (the labeled seed set and its SFT budget), seeded by `cfg.base_seed`."""
    from verl_ext.evolve.recipe import RecipeError
    from verl_ext.local.warmup import WarmupConfig

    settings = recipe.model.warmup
    if settings.examples not in (SEED_SET, PERCEPTION_SET):
        raise RecipeError(
            [
                f"model.warmup.examples: the world experiment needs {SEED_SET} or {PERCEPTION_SET}, got "
                f"{settings.examples!r}"
            ]  # fmt: skip
        )
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
# Measurement
# ---------------------------------------------------------------------------------------------------------------


def eval_settings(cfg: ExperimentConfig, recipe, split: str | None = None) -> dict:
    pl = recipe.pseudo_label
    return {
        "split": split or cfg.eval_split,
        "per_template": cfg.per_template,
        "templates": list(cfg.eval_templates() or []),  # empty: all 18
        "balanced": True,
        "samples": cfg.eval_samples,
        "temperature": pl.temperature,
        "top_p": pl.top_p,
        "top_k": pl.top_k,
        "max_new_tokens": pl.max_new_tokens,
        "min_pixels": recipe.images.min_pixels,
        "max_pixels": recipe.images.max_pixels,
        "prompt": recipe.prompts.reasoner,
    }


def eval_set(cfg: ExperimentConfig, split: str | None = None) -> list[dict]:
    """The balanced, prior-free eval set of the variant (`evalset.balanced_items`)."""
    from .evalset import balanced_items

    return balanced_items(cfg.eval_templates(), cfg.per_template, split or cfg.eval_split)


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


def evaluate_base(cfg: ExperimentConfig, out: Path, base_model: str, log, split: str | None = None) -> dict:
    """The base arm on the eval set: one evaluation shared by every seed (the settings do not depend on the loop
    seed), cached in `out/eval/base.json` (`base_<split>.json` for another split)."""
    split = split or cfg.eval_split
    recipe = load_world_recipe(cfg, cfg.base_seed, base_model)
    name = "base.json" if split == cfg.eval_split else f"base_{split}.json"
    return evaluate_cached(
        base_model, eval_set(cfg, split), eval_settings(cfg, recipe, split), out / "eval" / name, log
    )


def _stage_seconds(run_dir: Path) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {key: rec.get("seconds") for key, rec in manifest["stages"].items()}


# ---------------------------------------------------------------------------------------------------------------
# One seed, all seeds
# ---------------------------------------------------------------------------------------------------------------


def _arm_record(result: dict) -> tuple[dict, dict]:
    return _brief_accuracy(result), result["items"]


def run_seed(cfg: ExperimentConfig, out: Path, seed: int, base_model: str, log: Callable[[str], None] = print) -> dict:
    """The arms of one seed from `base_model`, their evaluations and the loop metrics; writes and returns
    `out/seed_<seed>/results.json`."""
    from verl_ext.evolve import run_evolution
    from verl_ext.report.live import report_refresher

    from . import arms as side
    from .seedset import ITEMS_PER_SEED_IMAGE

    started = time.monotonic()
    seconds: dict[str, float] = {}
    paths = SeedPaths(Path(out) / f"seed_{seed}")
    recipe = load_world_recipe(cfg, seed, base_model)
    backend = world_backend(cfg)
    T = recipe.iterations
    models: dict[str, dict[int, str]] = {arm: {} for arm in cfg.arms if arm != "base"}
    runs_visplay = any(arm in cfg.arms for arm in ("visplay", "oracle"))  # the oracle arm relabels VisPlay's data
    if runs_visplay:
        log(f"[world] seed {seed}: VisPlay loop, T = {T}, run dir {paths.run_dir}")
        run_evolution(recipe, paths.run_dir, backend, log=log, after_stage=report_refresher(log))
        models.setdefault("visplay", {}).update(
            {t: str(paths.run_dir / f"iter_{t}" / "reasoner_merge") for t in range(1, T + 1)}
        )
    seconds["visplay"] = round(time.monotonic() - started, 1)

    control: dict[int, dict] = {}
    if "oracle" in cfg.arms:
        prev = base_model
        for t in range(1, T + 1):
            log(f"[world] seed {seed}: oracle labels on VisPlay's kept questions, iteration {t}")
            kept = paths.run_dir / f"iter_{t}" / "filter" / "train.parquet"
            prev, control[t] = side.train_on_oracle_labels(recipe, backend, paths.control_dir, t, kept, prev, log)
            models["oracle"][t] = prev
    seconds["oracle"] = round(time.monotonic() - started - sum(seconds.values()), 1)

    if "frozen" in cfg.arms:
        images = str(paths.run_dir / "iter_0" / "images" / "images.parquet")
        if not Path(images).is_file():
            from verl_ext.evolve.images import prepare_images

            images = str(paths.frozen_dir / "images.parquet")
            if not Path(images).is_file():
                prepare_images(recipe.images, Path(images), recipe.seed)
        prev = base_model
        for t in range(1, T + 1):
            log(f"[world] seed {seed}: VisPlay with the questioner frozen at Q0, iteration {t}")
            prev = side.frozen_iteration(recipe, backend, paths.frozen_dir, t, base_model, images, prev, log)[
                "reasoner"
            ]
            models["frozen"][t] = prev
    seconds["frozen"] = round(time.monotonic() - started - sum(seconds.values()), 1)

    s0: dict[int, dict] = {}
    for t in range(1, T + 1):
        s0[t] = {}
        for arm, root in (("visplay", paths.run_dir), ("frozen", paths.frozen_dir)):
            questions = root / f"iter_{t}" / "generate" / "questions.parquet"
            if arm in models and questions.is_file() and cfg.s0_questions:
                s0[t][arm] = side.s0_difficulty(
                    recipe, backend, paths.s0_dir / arm, t, questions, base_model, cfg.s0_questions, log
                )
    seconds["s0_difficulty"] = round(time.monotonic() - started - sum(seconds.values()), 1)

    items = eval_set(cfg)
    settings = eval_settings(cfg, recipe)
    base = evaluate_base(cfg, Path(out), base_model, log)
    band = (recipe.filter.low, recipe.filter.high)
    base_acc, base_items = _arm_record(base)
    iterations = [
        {"t": 0, "accuracy": {arm: base_acc for arm in cfg.arms}, "items": {a: base_items for a in cfg.arms}}
    ]
    for t in range(1, T + 1):
        rec: dict = {"t": t, "accuracy": {"base": base_acc}, "items": {"base": base_items}, "loop": {}}
        for arm in models:
            if t in models[arm]:
                res = evaluate_cached(models[arm][t], items, settings, paths.eval_dir / f"{arm}_t{t}.json", log)
                rec["accuracy"][arm], rec["items"][arm] = _arm_record(res)
        if "visplay" in models:
            rec["loop"]["visplay"] = loop_metrics(paths.run_dir, t, band)
        if "frozen" in models:
            rec["loop"]["frozen"] = loop_metrics(paths.frozen_dir, t, band)
        rec["s0"] = s0[t]
        if t in control:
            rec["control"] = control[t]
        iterations.append(rec)
    seconds["eval"] = round(time.monotonic() - started - sum(seconds.values()), 1)

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
            "source": warm_cfg.examples,
            "examples": warm.get("examples"),
            "warmup_steps": warm_cfg.steps,
            "warmup_lr": warm_cfg.lr,
            "warmup_loss": warm.get("loss"),
            "warmup_seconds": warm.get("seconds"),  # when it was built (a cached base costs nothing on a re-run)
            "base_seed": cfg.base_seed,
            "base_model": base_model,
        },
        "eval": settings,
        "eval_templates": [it["template"] for it in items],
        "iterations": iterations,
        "seconds": {
            **seconds,
            "total": round(time.monotonic() - started, 1),
            "stages": _stage_seconds(paths.run_dir) if runs_visplay else {},
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
    with file_log(log_path) as log:
        try:
            return run_seed(cfg, Path(out), seed, base_model, log)
        except Exception as exc:  # an exception the pool cannot unpickle hides its message (BrokenProcessPool)
            import traceback

            log(traceback.format_exc())
            raise RuntimeError(f"seed {seed}: {type(exc).__name__}: {exc} (traceback in {log_path})") from None


@contextmanager
def file_log(path: Path) -> Iterator[Callable[[str], None]]:
    """A `log(msg)` that appends each message as a line to `path` (created with its folder), flushed at once: the
    log of one worker process of the seeds, the gate or the budget scan."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:

        def log(msg: str) -> None:
            f.write(msg + "\n")
            f.flush()

        yield log


def call_readable(label: str, fn, *args):
    """`fn(*args)` in a pool worker, any exception re-raised as a RuntimeError that names it: an exception the pool
    cannot unpickle would otherwise surface as a bare BrokenProcessPool."""
    try:
        return fn(*args)
    except Exception as exc:
        raise RuntimeError(f"{label}: {type(exc).__name__}: {exc}") from None


def run_seeds(cfg: ExperimentConfig, out: Path, base_model: str, log) -> list[dict]:
    seeds = cfg.seed_list()
    if cfg.jobs > 1 and len(seeds) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        log(f"[world] {len(seeds)} seeds in {cfg.jobs} processes; logs in {out}/seed_<k>/log.txt")
        with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_seed_logged, cfg, str(out), s, base_model) for s in seeds]
            return [f.result() for f in futures]
    return [run_seed(cfg, out, s, base_model, log) for s in seeds]


def run_experiment(cfg: ExperimentConfig, out: str | Path, log: Callable[[str], None] = print) -> dict:
    """The base model, the gate (when `cfg.gate`), every seed (in `cfg.jobs` processes), then the aggregate
    results.json, results.md, coevolution.png and report.html."""
    from .gate import run_gate
    from .results import write_outputs

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(out / "config.json", dataclasses.asdict(cfg))
    started = time.monotonic()
    warm = warmup_config(cfg, load_world_recipe(cfg, cfg.base_seed))
    log(f"[world] base model ({cfg.variant} variant): format warm-up on {warm.num_images} labeled seed-set images "
        f"({warm.steps} steps)")  # fmt: skip
    base_model = build_base(cfg, log)
    base_seconds = round(time.monotonic() - started, 1)
    gate = None
    if cfg.gate:
        gate = run_gate(cfg, out / "gate", base_model, log)
        cfg = dataclasses.replace(cfg, budget=gate["choice"]["budget"])
        log(f"[world] gate {'passed' if gate['choice']['passed'] else 'NOT passed'}: reasoner budget "
            f"{cfg.budget}x (oracle gain {gate['choice']['gain']})")  # fmt: skip
    gate_seconds = round(time.monotonic() - started - base_seconds, 1)
    evaluate_base(cfg, out, base_model, log)  # once, before the seeds fork (each would otherwise evaluate it)
    per_seed = run_seeds(cfg, out, base_model, log)
    wall = round(time.monotonic() - started, 1)
    results = write_outputs(
        cfg, per_seed, out, wall_seconds=wall, base_seconds=base_seconds, gate=gate, gate_seconds=gate_seconds
    )
    log(f"[world] done in {wall:.0f}s: {out / 'results.md'}")
    return results
