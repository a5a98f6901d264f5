"""The `visplay` command (also `python -m verl_ext`), the application layer above the loop, evaluation and reports:

    visplay evolve --recipe recipes/X.yaml [--run-dir DIR] [--dry-run] [--force-from T:STAGE]
    visplay preflight --recipe recipes/X.yaml   (machine checks before any GPU time: one table, exit 1 on a failure)
    visplay eval ... | visplay report ... | visplay world ...   (the same as python -m verl_ext.eval|report|world)

`evolve` runs (or resumes) a VisPlay evolution run described by a YAML recipe and refreshes its HTML report as it goes;
`--dry-run` prints every stage's command.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path

from verl_ext.evolve.integrity import CorruptOutputError
from verl_ext.evolve.loop import (
    MissingOutputError,
    StaleStageError,
    Terminated,
    default_run_dir,
    dry_run,
    run_evolution,
    sigterm_interrupts,
)
from verl_ext.evolve.manifest import RunLockedError
from verl_ext.evolve.preflight import PreflightError
from verl_ext.evolve.recipe import RecipeError, load_recipe
from verl_ext.evolve.stages import ALL_STAGES
from verl_ext.report.live import report_refresher

# `visplay NAME ...` for the other applications: their own `main(argv)`, imported only when asked for.
APPLICATIONS = {
    "eval": "verl_ext.eval.__main__",
    "report": "verl_ext.report.__main__",
    "world": "verl_ext.world.__main__",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="visplay evolve",
        description="VisPlay self-evolution loop: questioner -> merge -> generate -> pseudo_label -> filter -> "
        "reasoner -> merge, for t = 1..T, resumable at the first unfinished stage.",
    )
    p.add_argument("--recipe", required=True, help="YAML recipe, e.g. recipes/qwen2.5-vl-7b.yaml")
    p.add_argument("--run-dir", help="run directory (default: <storage.root>/<name> from the recipe)")
    p.add_argument("--dry-run", action="store_true", help="print every stage's resolved command; run nothing")
    p.add_argument(
        "--force-from",
        metavar="T:STAGE",
        help=f"redo this stage and every later one (stages: {', '.join(ALL_STAGES)}; e.g. 2:filter, images)",
    )
    p.add_argument("--stop-after", metavar="T:STAGE", help="stop once this stage is done")
    p.add_argument("--debug", action="store_true", help="let a failure's traceback through instead of one line")
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-hash every finished stage's files against its marker before resuming (sizes are always checked)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key (repeatable), e.g. --set questioner.m=8 --set iterations=2",
    )
    return p


def evolve(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, overrides=args.overrides)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(recipe)
    if args.dry_run:
        dry_run(recipe, run_dir)
        return 0
    try:
        with sigterm_interrupts():
            run_evolution(
                recipe,
                run_dir,
                force_from=args.force_from,
                stop_after=args.stop_after,
                after_stage=report_refresher(),
                verify=args.verify,
            )
    except CorruptOutputError as exc:
        redo = shlex.join(["python", "-m", "verl_ext", "evolve", "--recipe", args.recipe, "--run-dir", str(run_dir)])
        print(f"error: {exc}\nredo that stage and the ones after it: {redo} --force-from {exc.stage}", file=sys.stderr)
        return 2
    except (StaleStageError, MissingOutputError, RunLockedError, NotImplementedError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PreflightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'SIGINT'}); re-run the same command to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:  # a stage failed: one line here; the traceback is in the manifest, or with --debug
        if args.debug:
            raise
        print(
            f"error: {type(exc).__name__}: {exc}\n(the failed stage's traceback is in {run_dir / 'manifest.json'}; "
            "--debug prints it; finished stages are kept)",
            file=sys.stderr,
        )
        return 1
    return 0


def preflight_command(argv: list[str] | None = None) -> int:
    """`visplay preflight --recipe R`: the machine checks of a recipe as one table; exit 1 on a failed check."""
    from verl_ext.evolve.preflight import failures, preflight

    p = argparse.ArgumentParser(prog="visplay preflight", description="check a recipe against this machine")
    p.add_argument("--recipe", required=True)
    p.add_argument("--run-dir", help="run directory (default: <storage.root>/<name>); its disk is checked")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, overrides=args.overrides)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(recipe)
    checks, table = preflight(recipe, run_dir)
    print(f"# preflight: recipe {recipe.name}, backend {recipe.backend}, run dir {run_dir}\n{table}")
    bad = failures(checks)
    print(f"\n{len(bad)} failed check(s): {', '.join(c.name for c in bad)}" if bad else "\nall checks passed")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ["evolve", "preflight", *APPLICATIONS]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(
            f"usage: visplay {{{','.join(commands)}}} ...  (visplay COMMAND --help for its options)", file=sys.stderr
        )
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "evolve":
        return evolve(rest)
    if command == "preflight":
        return preflight_command(rest)
    return importlib.import_module(APPLICATIONS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
