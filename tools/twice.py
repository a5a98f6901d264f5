"""Run a test directory twice in one Python process (`pytest.main` twice): tests that lean on process-wide state
(the grader's verdict cache, strike list and counters) pass the first time and fail the second.

    python tools/twice.py [tests/visplay] [-- extra pytest args]

Exit status 0 when both runs pass. mutmut (`make mutate`) runs the suite twice in one process as well.
"""

from __future__ import annotations

import sys

import pytest


def main(argv: list[str]) -> int:
    paths = [a for a in argv if not a.startswith("-")] or ["tests/visplay"]
    extra = [a for a in argv if a.startswith("-")]
    codes = []
    for run in (1, 2):
        print(f"=== run {run} of 2 in process: pytest {' '.join(paths + extra)}", flush=True)
        codes.append(int(pytest.main([*paths, "-q", "-p", "no:cacheprovider", *extra])))
    print(f"=== exit codes: {codes}")
    return 0 if codes == [0, 0] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
