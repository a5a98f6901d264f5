"""The `verl` backend: each stage is a subprocess (verl trainer, verl model merger, offline vLLM inference).

The loop process never imports verl, torch or vllm; it only builds commands (`commands.py`) and runs them in their
own process groups, logging to `run_dir/logs/`.
"""

from __future__ import annotations

import sys

from . import commands
from .backend import Command, StageContext, run_command


class VerlBackend:
    name = "verl"

    def __init__(self, python: str = sys.executable, echo: bool = True, inference_engine: str = "vllm"):
        self.python = python
        self.echo = echo
        self.inference_engine = inference_engine

    # -- commands ----------------------------------------------------------------------------------
    def commands(self, ctx: StageContext, *, planning: bool = False) -> list[Command]:
        spec, recipe = ctx.spec, ctx.recipe
        # Dry runs must not build models: keep `testkit:` references symbolic there.
        resolve = (lambda p: p) if planning else None
        kw = {"resolve": resolve} if resolve else {}
        if spec.name == "questioner":
            return [
                commands.train_command("questioner", commands.questioner_overrides(recipe, spec, **kw), self.python)
            ]
        if spec.name == "reasoner":
            return [commands.train_command("reasoner", commands.reasoner_overrides(recipe, spec, **kw), self.python)]
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

    def describe(self, ctx: StageContext) -> list[str]:
        return [f"# {c.description}\n{c.render()}" for c in self.commands(ctx, planning=True)]

    def _run(self, ctx: StageContext) -> dict:
        for cmd in self.commands(ctx):
            ctx.log(f"[evolve] {ctx.spec.key}: {cmd.description}; log {ctx.spec.log_path}")
            run_command(cmd, ctx.spec.log_path, echo=self.echo)
        return {}

    # -- Backend interface -------------------------------------------------------------------------
    def train_questioner(self, ctx: StageContext) -> dict:
        return self._run(ctx)

    def train_reasoner(self, ctx: StageContext) -> dict:
        return self._run(ctx)

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
