"""Mutation testing of visplay's pure core with mutmut 3: `make mutate` (not part of `make test`).

Copies the package, the chosen tests and the pytest settings into a scratch directory (default build/mutate, which
git ignores), runs `mutmut run` there, and prints the kill rate per file from mutmut's result files:

    killed / (killed + survived + timeout + suspicious + no tests)

Equivalent mutants (listed, with a one-line reason each, in tests/visplay/EQUIVALENT_MUTANTS.md) are counted apart:
the second rate leaves them out. `--list-survivors` prints every surviving mutant's name and diff.

    python tools/mutate.py [--paths verl_ext/visplay] [--tests tests/visplay] [--jobs 2] [--workdir build/mutate]

A full run of verl_ext/visplay (about 2000 mutants) takes hours on a shared 2-core machine (the grader protocol's
mutants wait on its timeouts). `--incremental` keeps the last run's results in --workdir: changed functions are
mutated and tested again, and every survivor is re-tested against the current tests (the loop when killing
survivors with new tests); `--incremental --mutants NAME...` re-tests only the mutants named.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = "tests/visplay/EQUIVALENT_MUTANTS.md"
# mutmut 3's exit codes (mutmut.stats.status_by_exit_code), the ones that count here.
KILLED = {1, 3}
SURVIVED = {0}
NOT_RUN = {None, 34}  # not checked, skipped
TIMEOUT = {36, 24, -24, 152, 255}
ALIVE = ("survived", "suspicious", "no tests")  # what a mutant that no test killed is reported as


def status_of(exit_code) -> str:
    if exit_code in KILLED:
        return "killed"
    if exit_code in SURVIVED:
        return "survived"
    if exit_code in NOT_RUN:
        return "not run"
    if exit_code in TIMEOUT:
        return "timeout"  # a mutant that loops forever is caught, as a kill
    if exit_code in (5, 33):
        return "no tests"
    return "suspicious"


def equivalent_names(path: Path) -> dict[str, str]:
    """`mutant name -> reason` from the equivalent-mutants file: lines `- `name`: reason`."""
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*[-*]\s+`([^`]+__mutmut_\d+)`\s*[:\u2014-]+\s*(.+)", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def prepare(workdir: Path, paths: list[str], tests: list[str], incremental: bool = False) -> None:
    """The scratch tree: the whole package (imports resolve), the tests, conftest and pytest settings.

    `incremental` keeps mutmut's state: sources are copied over with their times (mutmut re-mutates a file whose
    source is newer than its mutants, and keeps the results of functions whose text did not change)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    if incremental and (workdir / "mutants").is_dir():
        shutil.copytree(ROOT / "verl_ext", workdir / "verl_ext", ignore=ignore, dirs_exist_ok=True)
        for stale in (workdir / "tests", workdir / "mutants" / "tests"):
            shutil.rmtree(stale, ignore_errors=True)
    else:
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        shutil.copytree(ROOT / "verl_ext", workdir / "verl_ext", ignore=ignore)
        # The copy is in mutants/ before mutmut starts: a .pth file may import verl_ext at interpreter start-up (the
        # torchvision shim), which must find these copies, never another checkout's package.
        shutil.copytree(workdir / "verl_ext", workdir / "mutants" / "verl_ext")
    (workdir / "tests").mkdir()
    shutil.copy2(ROOT / "tests" / "conftest.py", workdir / "tests" / "conftest.py")
    for test in tests:
        src = ROOT / test
        dst = workdir / test
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy2(src, dst))
    only = [p.rstrip("/") + ("/*" if (ROOT / p).is_dir() else "") for p in paths]
    pyproject = (ROOT / "pyproject.toml").read_text()
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["verl_ext"]\n'
        f"only_mutate = {json.dumps(only)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
        # A mutant that loops forever is stopped after 3 x (its tests' time + 5 s), not mutmut's 15 x (+ 1 s).
        "timeout_multiplier = 3.0\n"
        "timeout_constant = 5.0\n"
    )
    (workdir / "pyproject.toml").write_text(pyproject)


def mutmut_run(workdir: Path, jobs: int, names: list[str] = ()) -> int:
    env = {**os.environ, "PYTHONPATH": str(workdir / "mutants")}
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *names]
    return subprocess.run(command, cwd=workdir, env=env).returncode


def results(workdir: Path) -> dict[str, dict[str, str]]:
    """Per mutated source file (path inside the package): mutant name -> status, from mutmut's .meta files."""
    per_file = {}
    for meta in sorted((workdir / "mutants").rglob("*.py.meta")):
        source = str(meta.relative_to(workdir / "mutants"))[: -len(".meta")]
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            per_file[source] = {name: status_of(code) for name, code in codes.items()}
    return per_file


def report(workdir: Path, equivalent: dict[str, str], list_survivors: bool) -> float:
    """Print the per-file table; return the overall kill rate with the listed equivalent mutants left out."""
    per_file = results(workdir)
    rows, survivors = [], []
    for source, statuses in per_file.items():
        counts = Counter(statuses.values())
        caught = counts["killed"] + counts["timeout"]
        checked = caught + counts["survived"] + counts["suspicious"] + counts["no tests"]
        alive = [name for name, status in statuses.items() if status in ALIVE]
        equiv = sum(name in equivalent for name in alive)
        survivors += [name for name in alive if name not in equivalent]
        rows.append((source, caught, checked, equiv, counts["not run"]))
    rows.append(("TOTAL", *(sum(row[i] for row in rows) for i in range(1, 5))))
    print(f"{'file':<36} {'killed':>7} {'mutants':>8} {'rate':>7} {'equiv':>6} {'rate w/o equiv':>15}")
    for source, caught, checked, equiv, not_run in rows:
        rate = caught / checked if checked else 1.0
        rate_eq = caught / (checked - equiv) if checked - equiv else 1.0
        note = f"  ({not_run} not run)" if not_run else ""
        print(f"{source:<36} {caught:>7} {checked:>8} {rate:>7.1%} {equiv:>6} {rate_eq:>15.1%}{note}")
    all_names = {name for statuses in per_file.values() for name in statuses}
    alive_names = {n for st in per_file.values() for n, status in st.items() if status in ALIVE}
    stale = sorted(name for name in equivalent if name not in all_names or name not in alive_names)
    if stale:
        print(f"\n{len(stale)} listed as equivalent but killed or gone (drop them from {EQUIVALENT_FILE}):")
        print("  " + "\n  ".join(stale))
    if survivors:
        print(f"\n{len(survivors)} surviving mutants not listed as equivalent:")
        for name in survivors:
            print("  " + name)
            if list_survivors:
                show = [sys.executable, "-m", "mutmut", "show", name]
                diff = subprocess.run(show, cwd=workdir, capture_output=True, text=True).stdout
                print("    " + diff.strip().replace("\n", "\n    "))
    _, caught, checked, equiv, _ = rows[-1]
    return caught / (checked - equiv) if checked - equiv else 1.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="+", default=["verl_ext/visplay"], help="files or folders to mutate")
    parser.add_argument("--tests", nargs="+", default=["tests/visplay"], help="the tests that must kill them")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutmut --max-children")
    parser.add_argument("--workdir", default=str(ROOT / "build" / "mutate"))
    parser.add_argument("--report-only", action="store_true", help="print the table of the last run in --workdir")
    parser.add_argument(
        "--incremental", action="store_true", help="keep the last run's results: re-test changed code and survivors"
    )
    parser.add_argument(
        "--mutants", nargs="+", default=None, metavar="NAME",
        help="with --incremental: re-test only these mutants (e.g. the survivors a new test should kill)",
    )  # fmt: skip
    parser.add_argument("--list-survivors", action="store_true", help="show each surviving mutant's diff")
    parser.add_argument("--min-rate", type=float, default=0.0, help="exit 1 below this kill rate (e.g. 0.97)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir).resolve()
    if args.mutants and not args.incremental:
        parser.error("--mutants re-tests mutants of an earlier run: it needs --incremental")
    if not args.report_only:
        prepare(workdir, args.paths, args.tests, incremental=args.incremental)
        code = mutmut_run(workdir, args.jobs, args.mutants or ())
        if code == 0 and args.incremental and not args.mutants:  # survivors again, against the tests as they are
            alive = [n for statuses in results(workdir).values() for n, st in statuses.items() if st in ALIVE]
            code = mutmut_run(workdir, args.jobs, alive) if alive else 0
        if code != 0:
            print(f"mutmut run exited {code}", file=sys.stderr)
            return code
    rate = report(workdir, equivalent_names(ROOT / EQUIVALENT_FILE), args.list_survivors)
    print(f"\nkill rate (equivalent mutants left out): {rate:.1%}")
    return 0 if rate >= args.min_rate else 1


if __name__ == "__main__":
    sys.exit(main())
