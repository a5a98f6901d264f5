"""The `verl` backend: each stage is a subprocess (verl trainer, verl model merger, offline vLLM inference).

The loop process never imports verl, torch or vllm; it only builds commands (`commands.py`) and runs them in their
own process groups, logging to `run_dir/logs/`. Two test-kit hooks let the same commands run on a CPU
(recipes/tiny-verl.yaml): the format warm-up (an HF fine-tune, shared with the local backend) and
`questioner.reasoner_endpoint: testkit:serve`, which serves S_{t-1} with the test kit's OpenAI-compatible server for
the duration of the questioner stage.
"""

from __future__ import annotations

import contextlib
import sys

from . import commands
from .backend import Command, StageContext, resolve_model, run_command

SERVE_ENDPOINT = "testkit:serve"  # questioner.reasoner_endpoint: serve S_{t-1} with verl_ext.testkit.openai_server


class VerlBackend:
    name = "verl"

    def __init__(self, python: str = sys.executable, echo: bool = True, inference_engine: str | None = None):
        """`inference_engine`: generation / pseudo-labelling engine; None = the recipe's device.inference_engine."""
        self.python = python
        self.echo = echo
        self.inference_engine = inference_engine
        self.reasoner_url: str | None = None  # set while a testkit:serve reasoner runs

    def _engine(self, recipe) -> str:
        return self.inference_engine or recipe.device.inference_engine

    # -- commands ----------------------------------------------------------------------------------
    def commands(self, ctx: StageContext, *, planning: bool = False) -> list[Command]:
        spec, recipe = ctx.spec, ctx.recipe
        # Dry runs must not build models: keep `testkit:` references symbolic there.
        resolve = (lambda p: p) if planning else None
        kw = {"resolve": resolve} if resolve else {}
        device, env = recipe.device, commands.device_env(recipe.device)
        if spec.name == "questioner":
            overrides = commands.questioner_overrides(recipe, spec, **kw)
            if self.reasoner_url is not None:
                overrides.append(("visplay.reasoner.base_url", self.reasoner_url))
            return [commands.train_command("questioner", overrides, self.python, device)]
        if spec.name == "reasoner":
            return [
                commands.train_command(
                    "reasoner", commands.reasoner_overrides(recipe, spec, **kw), self.python, device
                )
            ]
        if spec.name.endswith("_merge"):
            ckpt = spec.inputs["checkpoint"]
            step = None if planning else commands.latest_step(ckpt)
            if step is None:
                role = spec.name.removesuffix("_merge")
                step = getattr(recipe, role).steps  # the stage saves at its last step
            return [_with_env(commands.merge_command(ckpt, step, spec.work_dir, recipe, self.python), env)]
        engine = self._engine(recipe)
        if spec.name == "generate":
            return [_with_env(commands.generate_command(recipe, spec, engine, python=self.python, **kw), env)]
        if spec.name == "pseudo_label":
            return [_with_env(commands.pseudo_label_command(recipe, spec, engine, python=self.python, **kw), env)]
        raise ValueError(f"verl backend has no command for stage {spec.name}")

    def describe(self, ctx: StageContext) -> list[str]:
        if ctx.spec.name == "warmup":
            return [
                "# format warm-up: a short HF fine-tune of the base model (verl_ext.local.warmup), cached; no verl"
            ]
        return [f"# {c.description}\n{c.render()}" for c in self.commands(ctx, planning=True)]

    def _run(self, ctx: StageContext) -> dict:
        for cmd in self.commands(ctx):
            ctx.log(f"[evolve] {ctx.spec.key}: {cmd.description}; log {ctx.spec.log_path}")
            run_command(cmd, ctx.spec.log_path, echo=self.echo)
        return {}

    # -- Backend interface -------------------------------------------------------------------------
    def train_questioner(self, ctx: StageContext) -> dict:
        with self._served_reasoner(ctx):
            return self._run(ctx)

    @contextlib.contextmanager
    def _served_reasoner(self, ctx: StageContext):
        """With `reasoner_endpoint: testkit:serve`, S_{t-1} behind an OpenAI-compatible server for this stage."""
        if ctx.recipe.questioner.reasoner_endpoint != SERVE_ENDPOINT:
            yield
            return
        from verl_ext.testkit.openai_server import serve_model

        model = resolve_model(ctx.input("reasoner_model"))
        with serve_model(model) as url:
            ctx.log(f"[evolve] {ctx.spec.key}: frozen reasoner {model} served at {url}")
            self.reasoner_url = url
            try:
                yield
            finally:
                self.reasoner_url = None

    def format_warmup(self, ctx: StageContext) -> dict:
        """The HF format warm-up of the local backend (an SFT of the base model; no verl stage involved)."""
        from .local_backend import LocalBackend

        return LocalBackend().format_warmup(ctx)

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


def _with_env(cmd: Command, env: dict[str, str]) -> Command:
    cmd.env.update(env)
    return cmd


def _drop_shards(ctx: StageContext) -> None:
    """The combined parquet is complete: its shards (a second copy of every image) are no longer needed."""
    import shutil

    shutil.rmtree(ctx.spec.work_dir / "shards", ignore_errors=True)


def _summary_of(path) -> dict:
    import pyarrow.parquet as pq

    return {"rows": pq.ParquetFile(path).metadata.num_rows} if path.exists() else {}
