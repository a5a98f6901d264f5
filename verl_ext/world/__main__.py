"""`python -m verl_ext.world --seeds 3 --iterations 2 --out DIR`: the controlled-world experiment.

Builds the base model, runs the gate on the dev split, then per seed the VisPlay loop (recipes/tiny-world.yaml, local
backend), the oracle-label arm, VisPlay with the questioner frozen at Q0 and the evaluations on the balanced eval set;
writes DIR/results.json, DIR/results.md, DIR/coevolution.png and DIR/report.html. Re-running resumes.

`--budgets 1,8,32` scans reasoner budgets instead (base, oracle and VisPlay arms; DIR/budget_<k>/, DIR/scan.md);
`--gpu` is that scan as sized for one GPU.

`python -m verl_ext.world report RESULTS_JSON [--run RUN_DIR] [--out PATH]` puts the world section of a results.json
on top of any run's report (or alone, without --run).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .experiment import ARMS, DEFAULT_RECIPE, ExperimentConfig, run_experiment


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
    p.add_argument("--variant", choices=("perception", "full"), default=d.variant,
                   help="perception: numerical templates that need the image; full: all 18 templates")  # fmt: skip
    p.add_argument("--per-template", type=int, default=d.per_template, help="balanced eval items per template")
    p.add_argument("--eval-split", choices=("eval", "dev"), default=d.eval_split,
                   help="dev: a disjoint set for sizing pilots, so the eval set stays unseen")  # fmt: skip
    p.add_argument("--eval-samples", type=int, default=d.eval_samples, help="sampled answers per eval question")
    p.add_argument("--arms", default=None,
                   help="comma-separated subset of base,oracle,visplay,frozen (default: all four; a budget scan: "
                   "base,oracle,visplay)")  # fmt: skip
    p.add_argument("--budget", type=int, default=d.budget, help="reasoner budget multiple (without the gate)")
    p.add_argument("--s0-questions", type=int, default=d.s0_questions, help="questions of Q_t scored by S_0")
    p.add_argument("--no-gate", action="store_true", help="skip the gate (use --budget)")
    p.add_argument("--gate-budgets", default=",".join(map(str, d.gate_budgets)), help="budgets the gate scans")
    p.add_argument("--gate-threshold", type=float, default=d.gate_threshold, help="oracle endpoint gain to pass")
    p.add_argument("--gate-only", action="store_true", help="the base and the gate only (DIR/gate/gate.md)")
    p.add_argument("--budgets", default=None, help="scan these reasoner budgets instead of the main run, e.g. 1,8,32")
    p.add_argument("--gpu", action="store_true", help="the budget scan 1x/8x/32x sized for one GPU")
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
    from .scan import GPU_BUDGETS, SCAN_ARMS, gpu_config, run_scan

    scanning = bool(args.gpu or args.budgets)
    arms = tuple(a for a in args.arms.split(",") if a) if args.arms else SCAN_ARMS if scanning else ARMS
    if not set(arms) <= set(ARMS) or "base" not in arms:
        print(f"error: --arms: a subset of {','.join(ARMS)} with base, got {args.arms!r}", file=sys.stderr)
        return 2
    cfg = ExperimentConfig(
        recipe=args.recipe,
        overrides=tuple(args.overrides),
        variant=args.variant,
        seeds=args.seeds,
        first_seed=args.first_seed,
        iterations=args.iterations,
        base_seed=args.base_seed,
        per_template=args.per_template,
        eval_split=args.eval_split,
        eval_samples=args.eval_samples,
        arms=arms,
        budget=args.budget,
        s0_questions=args.s0_questions,
        gate=not args.no_gate,
        gate_budgets=tuple(int(b) for b in args.gate_budgets.split(",") if b),
        gate_threshold=args.gate_threshold,
        jobs=args.jobs,
        cache_dir=args.cache_dir,
    )
    from verl_ext.evolve.recipe import RecipeError

    try:
        if args.gate_only:
            from .gate import gate_only

            gate_only(cfg, args.out)
        elif scanning:
            budgets = tuple(int(b) for b in args.budgets.split(",")) if args.budgets else GPU_BUDGETS
            scan_cfg = gpu_config(cfg) if args.gpu else dataclasses.replace(cfg, gate=False)
            run_scan(scan_cfg, args.out, budgets, jobs=args.jobs)
        else:
            run_experiment(cfg, args.out)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
