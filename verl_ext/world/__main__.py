"""`python -m verl_ext.world --seeds 3 --iterations 3 --out DIR`: the controlled-world experiment.

Runs the VisPlay loop (recipes/tiny-world.yaml, local backend) per seed, control (b) on oracle labels, and the
evaluations; writes DIR/results.json, DIR/results.md, DIR/coevolution.png and DIR/report.html. Re-running resumes.

`python -m verl_ext.world report RESULTS_JSON [--run RUN_DIR] [--out PATH]` puts the world section of a results.json
on top of any run's report (or alone, without --run).
"""

from __future__ import annotations

import argparse
import sys

from .experiment import DEFAULT_RECIPE, ExperimentConfig, run_experiment


def build_parser() -> argparse.ArgumentParser:
    d = ExperimentConfig()
    p = argparse.ArgumentParser(prog="python -m verl_ext.world", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="experiment directory (resumable)")
    p.add_argument("--seeds", type=int, default=d.seeds, help="number of seeds (default %(default)s)")
    p.add_argument("--first-seed", type=int, default=d.first_seed)
    p.add_argument("--iterations", type=int, default=d.iterations, help="T (default %(default)s)")
    p.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (repeatable), e.g. --set reasoner.steps=8")  # fmt: skip
    p.add_argument("--base-seed", type=int, default=d.base_seed, help="seed of the seed set and the warm-up")
    p.add_argument("--eval-size", type=int, default=d.eval_size, help="held-out labeled eval questions")
    p.add_argument("--eval-split", choices=("eval", "dev"), default=d.eval_split,
                   help="dev: a disjoint set for sizing pilots, so the eval set stays unseen")  # fmt: skip
    p.add_argument("--eval-samples", type=int, default=d.eval_samples, help="sampled answers per eval question")
    p.add_argument("--no-oracle-control", action="store_true", help="skip control (b)")
    p.add_argument("--jobs", type=int, default=d.jobs, help="seeds in parallel processes")
    p.add_argument("--cache-dir", default=None, help="warmed-model cache (default $VISPLAY_CACHE or ~/.cache/visplay)")
    return p


def report_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m verl_ext.world report", description="the world section as a report")
    p.add_argument("results", help="results.json of `python -m verl_ext.world`")
    p.add_argument("--run", help="an evolution run directory whose report goes below the section")
    p.add_argument("--out", help="output HTML file (default: RUN/report.html, else report.html beside RESULTS_JSON)")
    args = p.parse_args(argv)
    from pathlib import Path

    from .results import load_results, write_html_report

    try:
        results = load_results(args.results)
        out = args.out or (None if args.run else Path(args.results).with_name("report.html"))
        print(write_html_report(results, args.run, out))
    except (FileNotFoundError, ValueError) as exc:  # a missing file, or not a world results.json
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    args = build_parser().parse_args(argv)
    cfg = ExperimentConfig(
        recipe=args.recipe,
        overrides=tuple(args.overrides),
        seeds=args.seeds,
        first_seed=args.first_seed,
        iterations=args.iterations,
        base_seed=args.base_seed,
        eval_size=args.eval_size,
        eval_split=args.eval_split,
        eval_samples=args.eval_samples,
        oracle_control=not args.no_oracle_control,
        jobs=args.jobs,
        cache_dir=args.cache_dir,
    )
    from verl_ext.evolve.recipe import RecipeError

    try:
        run_experiment(cfg, args.out)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
