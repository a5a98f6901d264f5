"""The run report: one static, self-contained HTML page per evolution run (co-evolution plot, benchmark table,
per-iteration statistics, training curves, a gallery), optionally with sections of the caller's on top.
`write_report(run_dir, sections=...)` or `python -m verl_ext.report`; `live.report_refresher` follows a running loop.
"""


def write_report(*args, **kwargs):
    from .render import write_report as _write_report

    return _write_report(*args, **kwargs)


__all__ = ["write_report"]
