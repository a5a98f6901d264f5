"""The seam between the evolution loop and whatever trains and samples: the `Backend` interface.

A backend writes a stage's outputs into `ctx.spec.work_dir` (the loop renames it into place on success) and may return
a summary dict for the manifest. `verl` runs verl subprocesses; `local` (TRL on CPU) plugs in by registry name.
"""

from __future__ import annotations

import importlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from verl_ext.inference.offline import derive_seed

from .recipe import Recipe
from .stages import StageSpec


@dataclass
class StageContext:
    recipe: Recipe
    spec: StageSpec
    run_dir: Path
    log: Callable[[str], None] = print

    @property
    def iteration(self) -> int:
        return self.spec.iteration

    def input(self, name: str) -> str:
        return self.spec.inputs[name]

    def out(self, name: str) -> Path:
        """Where the backend writes output `name` (inside the work dir)."""
        return self.spec.work_path(name)

    def seed(self, shard: int = 0) -> int:
        """A seed that differs per iteration, stage and shard, and is stable across re-runs."""
        return derive_seed(self.recipe.seed, self.spec.iteration, self.spec.name, shard)


@runtime_checkable
class Backend(Protocol):
    """What the loop needs from a training/sampling engine. Methods read `ctx.spec.inputs` and write `ctx.out(...)`.

    - train_questioner: GRPO, init `init_model`, frozen reasoner `reasoner_model`, prompts from `images`;
      writes a checkpoint tree into `ctx.out("checkpoint")`.
    - train_reasoner: GRPO, init `init_model`, data `train` (pseudo-labelled parquet); checkpoint tree.
    - merge: checkpoint tree `checkpoint` -> Hugging Face model dir `ctx.out("model")`.
    - generate_questions: model `model` over `images` -> `ctx.out("questions")` (records.QUESTION_COLUMNS).
    - pseudo_label: model `model` over `questions` -> `ctx.out("labels")` (records.PSEUDO_LABEL_COLUMNS).
    - describe: the commands a stage would run, for --dry-run (strings; nothing is executed).
    Optional: format_warmup(ctx) -> model dir `ctx.out("model")` (only needed when recipe.model.format_warmup).
    """

    name: str

    def train_questioner(self, ctx: StageContext) -> dict | None: ...

    def train_reasoner(self, ctx: StageContext) -> dict | None: ...

    def merge(self, ctx: StageContext) -> dict | None: ...

    def generate_questions(self, ctx: StageContext) -> dict | None: ...

    def pseudo_label(self, ctx: StageContext) -> dict | None: ...

    def describe(self, ctx: StageContext) -> list[str]: ...


# Registry by recipe `backend:` name -> "module:Class". Modules import lazily: the verl backend never imports verl
# or vllm in the loop process, and a missing backend fails only when a recipe asks for it.
BACKENDS = {
    "verl": "verl_ext.evolve.verl_backend:VerlBackend",
    "local": "verl_ext.evolve.local_backend:LocalBackend",
}


def get_backend(name: str, **kwargs) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"backend: unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    module_name, cls_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise NotImplementedError(
                f"backend {name!r}: {module_name} is not available in this checkout yet; "
                "use a recipe with `backend: verl` or pass --dry-run"
            ) from exc
        raise
    return getattr(module, cls_name)(**kwargs)


def resolve_model(path: str) -> str:
    """A recipe's model reference as a path: `testkit:tiny_vlm` builds the offline tiny model; others pass through."""
    if path.startswith("testkit:"):
        name = path.split(":", 1)[1]
        if name == "tiny_vlm":
            from verl_ext.tiny.tiny_vlm import tiny_vlm_path

            return str(tiny_vlm_path())
        raise ValueError(f"model {path!r}: unknown testkit model {name!r} (known: tiny_vlm)")
    return path


# --------------------------------------------------------------------------------------------------
# Subprocesses
# --------------------------------------------------------------------------------------------------


@dataclass
class Command:
    """One process a stage runs: argv, extra environment, and a one-line description for humans."""

    argv: list[str]
    description: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        """Shell form, one argument per line after the module, ready to paste."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        head_len = 3 if len(self.argv) >= 3 and self.argv[1] == "-m" else 1
        head = " ".join(shlex.quote(a) for a in self.argv[:head_len])
        lines = [f"{env} {head}".strip()]
        rest = self.argv[head_len:]
        i = 0
        while i < len(rest):
            arg = rest[i]
            # Keep `--flag value` pairs on one line.
            if arg.startswith("--") and "=" not in arg and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                lines.append(f"{shlex.quote(arg)} {shlex.quote(rest[i + 1])}")
                i += 2
            else:
                lines.append(shlex.quote(arg))
                i += 1
        return " \\\n    ".join(lines)


class CommandFailed(RuntimeError):
    pass


def run_command(cmd: Command, log_path: Path, echo: bool = True) -> None:
    """Run `cmd` in its own process group, streaming its output to `log_path` (and stdout when `echo`).

    SIGINT/SIGTERM delivered to the loop (Ctrl-C, Slurm preemption) are forwarded to this child's process group
    only: the loop never stops processes it did not start. Once the child has ended, the signal is raised again in
    the loop itself, so the stage is recorded as interrupted rather than as a failed command.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **cmd.env}
    with open(log_path, "ab") as log:
        log.write(f"\n$ {shlex.join(cmd.argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

        def pump():
            for line in iter(proc.stdout.readline, b""):
                log.write(line)
                log.flush()
                if echo:
                    sys.stdout.buffer.write(line)
                    sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        forwarded = {}
        received: list[int] = []

        def forward(signum, _frame):
            received.append(signum)
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                pass

        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                forwarded[sig] = signal.signal(sig, forward)
        try:
            rc = proc.wait()
        finally:
            for sig, handler in forwarded.items():
                signal.signal(sig, handler)
            reader.join(timeout=10)
            proc.stdout.close()
    if received:
        signal.raise_signal(received[0])  # the loop's own handler now (KeyboardInterrupt, Terminated)
    if rc != 0:
        raise CommandFailed(f"{cmd.description or cmd.argv[0]} exited with status {rc}; log: {log_path}")
