"""`python -m verl_ext.report --run RUN_DIR [--out PATH]`: write the run's self-contained HTML report.

(The controlled world's results go on top of a run's report with `python -m verl_ext.world report`.)
"""

from __future__ import annotations

import argparse
import sys

from .render import write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verl_ext.report", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("--run", required=True, help="an evolution run directory")
    p.add_argument("--out", help="output HTML file (default: RUN/report.html)")
    p.add_argument("--eval-dir", help="where `python -m verl_ext.eval` wrote results.json (default: RUN/eval)")
    p.add_argument("--gallery", type=int, default=12, metavar="K", help="sampled questions per iteration (default 12)")
    p.add_argument("--seed", type=int, default=0, help="gallery sampling seed")
    args = p.parse_args(argv)
    try:
        path = write_report(
            args.run, args.out, eval_dir=args.eval_dir, gallery_per_iteration=args.gallery, seed=args.seed
        )
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
