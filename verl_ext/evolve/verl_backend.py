"""The `verl` backend: each stage is a subprocess (verl trainer, verl model merger, offline vLLM inference).

The loop process never imports verl, torch or vllm; it only builds commands (`commands.py`) and runs them in their
own process groups, logging to `run_dir/logs/`. Two test-kit hooks let the same commands run on a CPU
(recipes/tiny-verl.yaml): the format warm-up (an HF fine-tune, shared with the local backend) and
`questioner.reasoner_endpoint: testkit:serve`, which serves S_{t-1} with the project's OpenAI-compatible server over an
HF model (`verl_ext.inference.openai_server`) for the duration of the questioner stage.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import sys
from pathlib import Path

from . import commands
from .backend import Command, StageContext, resolve_model, run_command
from .batching import BatchFit, fit_batch
from .preflight import PreflightError, failures, preflight

SERVE_ENDPOINT = "testkit:serve"  # questioner.reasoner_endpoint: serve S_{t-1} with verl_ext.inference.openai_server


class VerlBackend:
    name = "verl"

    def __init__(self, python: str = sys.executable, echo: bool = True, inference_engine: str | None = None):
        """`inference_engine`: generation / pseudo-labelling engine; None = the recipe's device.inference_engine."""
        self.python = python
        self.echo = echo
        self.inference_engine = inference_engine
        self._preflight_done = False
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
        if spec.name in ("questioner", "reasoner"):
            build = commands.questioner_overrides if spec.name == "questioner" else commands.reasoner_overrides
            overrides = build(recipe, spec, **kw)
            if not planning:  # the real row count is known only once the input exists
                fit = self.batch_fit(ctx)
                if fit.message:
                    ctx.log(f"[evolve] WARNING {spec.key}: {fit.message}")
                overrides = commands.with_batch_fit(overrides, fit)
            if spec.name == "questioner" and self.reasoner_url is not None:
                overrides.append(("visplay.reasoner.base_url", self.reasoner_url))
            return [commands.train_command(spec.name, overrides, self.python, device)]
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
        if ctx.spec.name == "warmup":
            return [
                "# format warm-up: a short HF fine-tune of the base model (verl_ext.local.warmup), cached; no verl"
            ]
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
        with self._served_reasoner(ctx):
            self._run(ctx)
        return {"batch": self.batch_fit(ctx).as_summary(), "dataset": dataset_screening(ctx.spec.log_path)}

    @contextlib.contextmanager
    def _served_reasoner(self, ctx: StageContext):
        """With `reasoner_endpoint: testkit:serve`, S_{t-1} behind an OpenAI-compatible server for this stage."""
        if ctx.recipe.questioner.reasoner_endpoint != SERVE_ENDPOINT:
            yield
            return
        from verl_ext.inference.openai_server import serve_model

        model = resolve_model(ctx.input("reasoner_model"))
        # the reasoner's own prompt limit, as a vLLM server's max_model_len would enforce it: a longer question is a
        # counted failure of that rollout (HTTP 400), never an unbounded allocation
        with serve_model(model, max_prompt_tokens=ctx.recipe.reasoner.grpo.max_prompt_length) as url:
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
