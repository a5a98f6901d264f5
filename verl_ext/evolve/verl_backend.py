"""The `verl` backend: each stage is a subprocess (verl trainer, verl model merger, offline vLLM inference).

The loop process never imports verl, torch or vllm; it only builds commands (`commands.py`) and runs them in their
own process groups, logging to `run_dir/logs/`.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

from . import commands
from .backend import Command, StageContext, run_command
from .batching import BatchFit, fit_batch
from .preflight import PreflightError, failures, preflight


class VerlBackend:
    name = "verl"

    def __init__(self, python: str = sys.executable, echo: bool = True, inference_engine: str = "vllm"):
        self.python = python
        self.echo = echo
        self.inference_engine = inference_engine
        self._preflight_done = False

    # -- commands ----------------------------------------------------------------------------------
    def commands(self, ctx: StageContext, *, planning: bool = False) -> list[Command]:
        spec, recipe = ctx.spec, ctx.recipe
        # Dry runs must not build models: keep `testkit:` references symbolic there.
        resolve = (lambda p: p) if planning else None
        kw = {"resolve": resolve} if resolve else {}
        if spec.name in ("questioner", "reasoner"):
            build = commands.questioner_overrides if spec.name == "questioner" else commands.reasoner_overrides
            overrides = build(recipe, spec, **kw)
            if not planning:  # the real row count is known only once the input exists
                fit = self.batch_fit(ctx)
                if fit.message:
                    ctx.log(f"[evolve] WARNING {spec.key}: {fit.message}")
                overrides = commands.with_batch_fit(overrides, fit)
            return [commands.train_command(spec.name, overrides, self.python)]
        if spec.name.endswith("_merge"):
            ckpt = spec.inputs["checkpoint"]
            step = None if planning else commands.latest_step(ckpt)
            if step is None:
                role = spec.name.removesuffix("_merge")
                step = getattr(recipe, role).steps  # the stage saves at its last step
            return [commands.merge_command(ckpt, step, spec.work_dir, recipe, self.python)]
        if spec.name == "generate":
            return [commands.generate_command(recipe, spec, self.inference_engine, python=self.python, **kw)]
        if spec.name == "pseudo_label":
            return [commands.pseudo_label_command(recipe, spec, self.inference_engine, python=self.python, **kw)]
        raise ValueError(f"verl backend has no command for stage {spec.name}")

    @staticmethod
    def batch_fit(ctx: StageContext) -> BatchFit:
        """The stage's batch sizes for the rows its training parquet has (see `batching.fit_batch`)."""
        import pyarrow.parquet as pq

        role, recipe = ctx.spec.name, ctx.recipe
        path = ctx.spec.inputs["images" if role == "questioner" else "train"]
        rows = pq.ParquetFile(path).metadata.num_rows
        res = recipe.resources
        gpus = res.questioner_train_gpus if role == "questioner" else res.reasoner_train_gpus
        return fit_batch(role, rows, getattr(recipe, role).grpo, gpus * res.nnodes, source=str(path))

    def describe(self, ctx: StageContext) -> list[str]:
        return [f"# {c.description}\n{c.render()}" for c in self.commands(ctx, planning=True)]

    def check_machine(self, ctx: StageContext) -> None:
        """The preflight table, once per loop process, before the first stage this backend starts; raises
        `PreflightError` on a failed check (VISPLAY_SKIP_PREFLIGHT=1 skips it)."""
        if self._preflight_done or os.environ.get("VISPLAY_SKIP_PREFLIGHT", "") in ("1", "true", "yes"):
            return
        checks, table = preflight(ctx.recipe, ctx.run_dir)
        ctx.log(f"[evolve] preflight for {ctx.recipe.name}:\n{table}")
        bad = failures(checks)
        if bad:
            raise PreflightError(
                f"preflight failed ({', '.join(c.name for c in bad)}); no GPU stage started:\n{table}\n"
                "(VISPLAY_SKIP_PREFLIGHT=1 runs anyway)"
            )
        self._preflight_done = True

    def _run(self, ctx: StageContext) -> dict:
        self.check_machine(ctx)
        for cmd in self.commands(ctx):
            ctx.log(f"[evolve] {ctx.spec.key}: {cmd.description}; log {ctx.spec.log_path}")
            run_command(cmd, ctx.spec.log_path, echo=self.echo)
        return {}

    # -- Backend interface -------------------------------------------------------------------------
    def train_questioner(self, ctx: StageContext) -> dict:
        self._run(ctx)
        return {"batch": self.batch_fit(ctx).as_summary(), "dataset": dataset_screening(ctx.spec.log_path)}

    def train_reasoner(self, ctx: StageContext) -> dict:
        self._run(ctx)
        return {"batch": self.batch_fit(ctx).as_summary(), "dataset": dataset_screening(ctx.spec.log_path)}

    def merge(self, ctx: StageContext) -> dict:
        self._run(ctx)
        return {"step": commands.latest_step(ctx.spec.inputs["checkpoint"])}

    def generate_questions(self, ctx: StageContext) -> dict:
        self._run(ctx)
        _drop_shards(ctx)
        return _summary_of(ctx.out("questions"))

    def pseudo_label(self, ctx: StageContext) -> dict:
        self._run(ctx)
        _drop_shards(ctx)
        return _summary_of(ctx.out("labels"))


def _drop_shards(ctx: StageContext) -> None:
    """The combined parquet is complete: its shards (a second copy of every image) are no longer needed."""
    import shutil

    shutil.rmtree(ctx.spec.work_dir / "shards", ignore_errors=True)


def _summary_of(path) -> dict:
    import pyarrow.parquet as pq

    return {"rows": pq.ParquetFile(path).metadata.num_rows} if path.exists() else {}


_SCREENING = re.compile(r"(\w+Dataset): kept (\d+) of (\d+) rows; skipped (\{[^}]*\})")


def dataset_screening(log_path) -> dict:
    """What the stage's datasets dropped before verl saw them (bad images, prompts over data.max_prompt_length, ...),
    from the line they log: {dataset: {"rows", "kept", "skipped": {reason: count}}}; the last report of each wins."""
    out: dict = {}
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return out
    for m in _SCREENING.finditer(text):
        try:
            skipped = ast.literal_eval(m.group(4))
        except (ValueError, SyntaxError):
            continue
        out[m.group(1)] = {"rows": int(m.group(3)), "kept": int(m.group(2)), "skipped": skipped}
    return out
