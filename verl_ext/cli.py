"""The `visplay` command (also `python -m verl_ext`), the application layer above the loop, evaluation and reports:

    visplay evolve --recipe recipes/X.yaml [--run-dir DIR] [--dry-run] [--force-from T:STAGE]
    visplay preflight --recipe recipes/X.yaml   (machine checks before any GPU time: one table, exit 1 on a failure)
    visplay status RUN_DIR
    visplay eval ... | visplay report ... | visplay world ...   (the same as python -m verl_ext.eval|report|world)

`evolve` runs (or resumes) a VisPlay evolution run described by a YAML recipe and refreshes its HTML report as it goes;
`--dry-run` prints every stage's command and the verdict of every check a real run makes before it starts.
The Makefile's targets call these commands (`make evolve` = `visplay evolve --recipe recipes/$(MODEL).yaml`).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path

from verl_ext.evolve.checks import failures, run_checks
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
from verl_ext.evolve.status import format_status
from verl_ext.report.live import report_refresher

# `visplay NAME ...` for the other applications: their own `main(argv)`, imported only when asked for.
APPLICATIONS = {
    "eval": "verl_ext.eval.__main__",
    "report": "verl_ext.report.__main__",
    "world": "verl_ext.world.__main__",
}
COMMANDS = {
    "evolve": "run or resume the evolution loop of a recipe (make evolve)",
    "status": "the stage table of a run directory: state, tries, time, summary (make status)",
    "eval": "benchmarks x checkpoints table of a run or of models (make eval)",
    "report": "the run's self-contained HTML report (make report)",
    "world": "the controlled-world experiment (make world)",
    "preflight": "check this machine against a recipe before any GPU time: one table (make preflight)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="visplay evolve",
        description="VisPlay self-evolution loop: questioner -> merge -> generate -> pseudo_label -> filter -> "
        "reasoner -> merge, for t = 1..T, resumable at the first unfinished stage.",
    )
    p.add_argument("--recipe", required=True, help="YAML recipe, e.g. recipes/qwen2.5-vl-7b.yaml (make: MODEL=...)")
    p.add_argument("--run-dir", help="run directory (default: <storage.root>/<name> from the recipe)")
    p.add_argument("--dry-run", action="store_true", help="print every stage's resolved command; run nothing")
    p.add_argument(
        "--force-from",
        metavar="T:STAGE",
        help=f"redo this stage and every later one (stages: {', '.join(ALL_STAGES)}; e.g. 2:filter, images); "
        "with make: make evolve EVOLVE_ARGS='--force-from 2:filter'",
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
        help="override a recipe key (repeatable), e.g. --set questioner.m=8 --set iterations=2; "
        "with make: make evolve EVOLVE_ARGS='--set iterations=2'",
    )
    return p


def _recipe_and_run_dir(args) -> tuple | None:
    """The recipe of `--recipe`/`--set` and the run dir (`--run-dir` or the recipe's); None after printing why not."""
    if not Path(args.recipe).is_file():
        folder = Path(args.recipe).parent
        known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        hint = f"; recipes in {folder}/: {', '.join(known)} (make evolve MODEL=<one of them>)" if known else ""
        print(f"error: recipe file not found: {args.recipe}{hint}", file=sys.stderr)
        return None
    try:
        recipe = load_recipe(args.recipe, overrides=args.overrides)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return recipe, (Path(args.run_dir) if args.run_dir else default_run_dir(recipe))


def evolve(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loaded = _recipe_and_run_dir(args)
    if loaded is None:
        return 2
    recipe, run_dir = loaded
    if args.dry_run:
        checks = dry_run(recipe, run_dir, force_from=args.force_from)
        return 1 if failures(checks) else 0
    failed = failures(run_checks(recipe, run_dir, force_from=args.force_from))
    if failed:
        print("error: the run cannot start:", file=sys.stderr)
        for check in failed:
            print(f"  {check.line()}", file=sys.stderr)
        return 2
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
    report = run_dir / "report.html"
    if report.is_file():
        print(f"[evolve] report: {report.resolve()} (make eval adds the benchmarks; make status: the stage table)")
    return 0


def preflight_command(argv: list[str] | None = None) -> int:
    """`visplay preflight --recipe R`: the machine checks of a recipe as one table; exit 1 on a failed check."""
    from verl_ext.evolve.preflight import failures as failed_checks
    from verl_ext.evolve.preflight import preflight

    p = argparse.ArgumentParser(prog="visplay preflight", description="check a recipe against this machine")
    p.add_argument("--recipe", required=True)
    p.add_argument("--run-dir", help="run directory (default: <storage.root>/<name>); its disk is checked")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    loaded = _recipe_and_run_dir(args)
    if loaded is None:
        return 2
    recipe, run_dir = loaded
    checks, table = preflight(recipe, run_dir)
    print(f"# preflight: recipe {recipe.name}, backend {recipe.backend}, run dir {run_dir}\n{table}")
    bad = failed_checks(checks)
    print(f"\n{len(bad)} failed check(s): {', '.join(c.name for c in bad)}" if bad else "\nall checks passed")
    return 1 if bad else 0


def status(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="visplay status", description=COMMANDS["status"])
    p.add_argument("run", metavar="RUN_DIR", help="an evolution run directory, e.g. runs/tiny")
    args = p.parse_args(argv)
    try:
        print(format_status(args.run))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        f"usage: visplay {{{','.join(COMMANDS)}}} ...",
        "",
        "VisPlay (arXiv 2511.15661): self-evolving vision-language models from unlabeled images, on verl.",
        "",
        "commands:",
        *(f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items()),
        "",
        "visplay COMMAND --help shows a command's options. The Makefile's targets run these commands;",
        "the method, its symbols and every recipe key: docs/method.md.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"visplay: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if command == "evolve":
        return evolve(rest)
    if command == "status":
        return status(rest)
    if command == "preflight":
        return preflight_command(rest)
    return importlib.import_module(APPLICATIONS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
