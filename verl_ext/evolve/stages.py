"""The stage plan of an evolution run: which stages, in which order, reading and writing which paths.

`build_plan` turns a recipe into a list of `StageSpec`s. Each spec carries the slice of the recipe that defines its
result plus its upstream stages' hashes, so a change anywhere invalidates exactly the stages downstream of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .manifest import config_hash
from .recipe import Recipe, to_plain

PREP_ITERATION = 0
ITERATION_STAGES = (
    "questioner",  # GRPO on the questioner: Q_{t-1} -> Q_t, S_{t-1} frozen
    "questioner_merge",  # Q_t to Hugging Face format
    "generate",  # Q_t writes N questions over the unlabeled images
    "pseudo_label",  # S_{t-1} answers each m times: pseudo-label y* and confidence p
    "filter",  # confidence band + per-iteration stats
    "reasoner",  # GRPO on the reasoner: S_{t-1} -> S_t on the kept questions
    "reasoner_merge",  # S_t to Hugging Face format
)
PREP_STAGES = ("images", "warmup")
ALL_STAGES = PREP_STAGES + ITERATION_STAGES

# Stages whose backend resumes inside its own work dir (verl checkpoints, finished generation shards): the work dir
# survives a crash. The others restart from an empty work dir.
RESUMABLE_STAGES = frozenset({"warmup", "questioner", "reasoner", "generate", "pseudo_label"})
TRAINING_STAGES = frozenset({"questioner", "reasoner"})

# The file(s) each stage leaves in its output dir (relative names). Training stages leave a checkpoint tree.
STAGE_OUTPUTS = {
    "images": {"images": "images.parquet"},
    "warmup": {"model": "."},
    "questioner": {"checkpoint": "."},
    "questioner_merge": {"model": "."},
    "generate": {"questions": "questions.parquet"},
    "pseudo_label": {"labels": "labels.parquet"},
    "filter": {"train": "train.parquet", "all": "all.parquet", "stats": "stats.json"},
    "reasoner": {"checkpoint": "."},
    "reasoner_merge": {"model": "."},
}


def stage_key(iteration: int, stage: str) -> str:
    return f"{iteration}:{stage}"


def parse_stage_key(text: str) -> tuple[int, str]:
    """`2:filter` -> (2, "filter"); `images` / `warmup` -> (0, name)."""
    if ":" not in text:
        if text in PREP_STAGES:
            return PREP_ITERATION, text
        raise ValueError(
            f"stage {text!r}: expected ITERATION:STAGE such as 2:filter (stages: {', '.join(ALL_STAGES)})"
        )
    it, name = text.split(":", 1)
    try:
        iteration = int(it)
    except ValueError:
        raise ValueError(f"stage {text!r}: iteration {it!r} is not an integer") from None
    valid = PREP_STAGES if iteration == PREP_ITERATION else ITERATION_STAGES
    if name not in valid:
        raise ValueError(f"stage {text!r}: unknown stage {name!r} for iteration {iteration} ({', '.join(valid)})")
    return iteration, name


@dataclass(frozen=True)
class RunLayout:
    """Every path of a run directory. Outputs are renamed into place from `.work/` when a stage succeeds."""

    run_dir: Path

    def output_dir(self, iteration: int, stage: str) -> Path:
        return self.run_dir / f"iter_{iteration}" / stage

    def work_dir(self, iteration: int, stage: str) -> Path:
        return self.run_dir / ".work" / f"iter_{iteration}" / stage

    def log_path(self, iteration: int, stage: str) -> Path:
        return self.run_dir / "logs" / f"iter_{iteration}" / f"{stage}.log"

    def output(self, iteration: int, stage: str, name: str) -> Path:
        rel = STAGE_OUTPUTS[stage][name]
        base = self.output_dir(iteration, stage)
        return base if rel == "." else base / rel

    @property
    def stats_path(self) -> Path:
        return self.run_dir / "stats.json"


@dataclass(frozen=True)
class StageSpec:
    iteration: int
    name: str
    config: dict  # what defines the result (recipe slice + upstream hashes); hashed
    inputs: dict[str, str]  # input name -> path (or model id) the stage reads
    output_dir: Path
    work_dir: Path
    log_path: Path
    upstream: tuple[str, ...] = ()
    config_hash: str = field(default="", init=False)

    def __post_init__(self):
        object.__setattr__(self, "config_hash", config_hash(self.config))

    @property
    def key(self) -> str:
        return stage_key(self.iteration, self.name)

    @property
    def resumable(self) -> bool:
        return self.name in RESUMABLE_STAGES

    @property
    def outputs(self) -> dict[str, str]:
        return dict(STAGE_OUTPUTS[self.name])

    def work_path(self, name: str) -> Path:
        rel = STAGE_OUTPUTS[self.name][name]
        return self.work_dir if rel == "." else self.work_dir / rel

    def output_path(self, name: str) -> Path:
        rel = STAGE_OUTPUTS[self.name][name]
        return self.output_dir if rel == "." else self.output_dir / rel


def _section(obj) -> dict:
    return to_plain(obj)


def _prompt(path: str | None) -> dict | None:
    """A prompt file as hashed config: its path and content digest (editing the template changes the hash)."""
    if path is None:
        return None
    p = Path(path)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else "missing"
    return {"path": str(path), "sha256": digest}


def build_plan(recipe: Recipe, run_dir: str | Path) -> list[StageSpec]:
    """All stages of the run, in execution order: images, [warmup], then 7 stages per iteration t = 1..T."""
    layout = RunLayout(Path(run_dir).resolve())
    plan: list[StageSpec] = []
    by_key: dict[str, StageSpec] = {}

    def add(iteration, name, config, inputs, upstream=()):
        spec = StageSpec(
            iteration=iteration,
            name=name,
            config={"stage": name, "iteration": iteration, **config},
            inputs={k: str(v) for k, v in inputs.items()},
            output_dir=layout.output_dir(iteration, name),
            work_dir=layout.work_dir(iteration, name),
            log_path=layout.log_path(iteration, name),
            upstream=tuple(upstream),
        )
        plan.append(spec)
        by_key[spec.key] = spec
        return spec

    def ref(spec: StageSpec) -> dict:
        return {"stage": spec.key, "hash": spec.config_hash}

    images_cfg = _section(recipe.images)
    pixels = {"min_pixels": images_cfg.pop("min_pixels"), "max_pixels": images_cfg.pop("max_pixels")}
    images = add(0, "images", {"images": images_cfg, "seed": recipe.seed}, {"source": recipe.images.path})

    base_model = {"base": recipe.model.base, "trust_remote_code": recipe.model.trust_remote_code}
    model_ref: dict = {"model": base_model}
    model_path: str = recipe.model.base
    model_upstream: tuple[str, ...] = ()
    q_prompt, r_prompt = _prompt(recipe.prompts.questioner), _prompt(recipe.prompts.reasoner)
    if recipe.model.format_warmup:
        # The warmed model depends on the prompts it is tuned on and on the image sizes it sees.
        warm_cfg = {"model": base_model, "backend": recipe.backend, "seed": recipe.seed, "pixels": pixels}
        warm_cfg["warmup"] = _section(recipe.model.warmup)
        warm_cfg["prompts"] = {"questioner": q_prompt, "reasoner": r_prompt}
        warm = add(0, "warmup", warm_cfg, {"base": model_path})
        model_ref, model_path, model_upstream = ref(warm), str(warm.output_path("model")), (warm.key,)

    # Q_{t-1} and S_{t-1}: both start from the base model (after the optional warm-up).
    q_prev, q_prev_path, q_prev_up = model_ref, model_path, model_upstream
    s_prev, s_prev_path, s_prev_up = model_ref, model_path, model_upstream
    prev_labels: StageSpec | None = None
    common = {"backend": recipe.backend, "seed": recipe.seed, "pixels": pixels}

    for t in range(1, recipe.iterations + 1):
        q = add(
            t,
            "questioner",
            {
                **common,
                "init": q_prev,
                "frozen_reasoner": s_prev,
                "images": ref(images),
                "questioner": _section(recipe.questioner),
                "prompts": {"questioner": q_prompt, "reasoner": r_prompt},
            },
            {"init_model": q_prev_path, "reasoner_model": s_prev_path, "images": images.output_path("images")},
            q_prev_up + s_prev_up + (images.key,),
        )
        qm = add(
            t,
            "questioner_merge",
            {"backend": recipe.backend, "checkpoint": ref(q)},
            {"checkpoint": q.output_path("checkpoint")},
            (q.key,),
        )
        gen = add(
            t,
            "generate",
            {
                **common,
                "questioner_model": ref(qm),
                "images": ref(images),
                "generation": _section(recipe.generation),
                "prompt": q_prompt,
            },
            {"model": qm.output_path("model"), "images": images.output_path("images")},
            (qm.key, images.key),
        )
        pl = add(
            t,
            "pseudo_label",
            {
                **common,
                "reasoner_model": s_prev,
                "questions": ref(gen),
                "pseudo_label": _section(recipe.pseudo_label),
                "prompt": r_prompt,
            },
            {"model": s_prev_path, "questions": gen.output_path("questions")},
            s_prev_up + (gen.key,),
        )
        filt_inputs = {"labels": pl.output_path("labels"), "questions": gen.output_path("questions")}
        filt_up = (pl.key, gen.key)
        if prev_labels is not None:  # no longer read (it fed a statistic that never matched); kept for stable hashes
            filt_inputs["previous_labels"] = prev_labels.output_path("labels")
            filt_up += (prev_labels.key,)
        filt = add(
            t,
            "filter",
            {
                "labels": ref(pl),
                "previous_labels": ref(prev_labels) if prev_labels else None,
                "filter": _section(recipe.filter),
                "stats": _section(recipe.stats),
                "seed": recipe.seed,
            },
            filt_inputs,
            filt_up,
        )
        r = add(
            t,
            "reasoner",
            {**common, "init": s_prev, "train": ref(filt), "reasoner": _section(recipe.reasoner), "prompt": r_prompt},
            {"init_model": s_prev_path, "train": filt.output_path("train")},
            s_prev_up + (filt.key,),
        )
        rm = add(
            t,
            "reasoner_merge",
            {"backend": recipe.backend, "checkpoint": ref(r)},
            {"checkpoint": r.output_path("checkpoint")},
            (r.key,),
        )
        q_prev, q_prev_path, q_prev_up = ref(qm), str(qm.output_path("model")), (qm.key,)
        s_prev, s_prev_path, s_prev_up = ref(rm), str(rm.output_path("model")), (rm.key,)
        prev_labels = pl
    return plan
