"""The report of a run in progress: a callback for the loop's `after_stage` hook that rewrites RUN_DIR/report.html
after each filter and reasoner merge, so a person can follow a run as it goes. A report failure never stops a run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

REFRESH_AFTER = ("filter", "reasoner_merge")  # the stages after which the report has something new to show


def report_refresher(log: Callable[[str], None] = print) -> Callable[[object, Path], None]:
    """`after_stage(spec, run_dir)` for `run_evolution`: rewrite the run's report after the stages that change it."""

    def refresh(spec, run_dir: Path) -> None:
        if spec.name not in REFRESH_AFTER:
            return
        try:
            from .render import write_report

            write_report(run_dir)
        except Exception as exc:  # noqa: BLE001 - the report is a by-product of the run
            log(f"[evolve] report not refreshed: {type(exc).__name__}: {exc}")

    return refresh
