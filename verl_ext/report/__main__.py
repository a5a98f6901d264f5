"""`python -m verl_ext.report --run RUN_DIR [--world-results PATH] [--out PATH]`: write the run's self-contained HTML
report; with --world-results, the controlled world's results (results table, co-evolution charts measured against
ground truth) as a section at the top, or as the whole page when no --run is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verl_ext.world.report import load_results

from .render import write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verl_ext.report", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("--run", help="an evolution run directory")
    p.add_argument("--out", help="output HTML file (default: RUN/report.html, else report.html beside PATH)")
    p.add_argument("--eval-dir", help="where `python -m verl_ext.eval` wrote results.json (default: RUN/eval)")
    p.add_argument(
        "--world-results",
        metavar="PATH",
        help="results.json of `python -m verl_ext.world`: adds the 'Controlled world (ground truth)' section",
    )
    p.add_argument("--gallery", type=int, default=12, metavar="K", help="sampled questions per iteration (default 12)")
    p.add_argument("--seed", type=int, default=0, help="gallery sampling seed")
    args = p.parse_args(argv)
    if not args.run and not args.world_results:
        p.error("give --run, --world-results or both")
    out = args.out or (None if args.run else Path(args.world_results).with_name("report.html"))
    try:
        world = load_results(args.world_results) if args.world_results else None
    except (FileNotFoundError, ValueError) as exc:  # a missing file, or not a world results.json
        print(f"error: --world-results: {exc}", file=sys.stderr)
        return 2
    try:
        path = write_report(
            args.run,
            out,
            eval_dir=args.eval_dir,
            gallery_per_iteration=args.gallery,
            seed=args.seed,
            world_results=world,
        )
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
