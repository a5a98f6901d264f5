"""The run report: one static, self-contained HTML page per evolution run (co-evolution plot, benchmark table,
per-iteration statistics, training curves, a gallery), optionally with the controlled world's results on top.
`write_report(run_dir, world_results=...)` or `python -m verl_ext.report`.
"""


def write_report(*args, **kwargs):
    from .render import write_report as _write_report

    return _write_report(*args, **kwargs)


__all__ = ["write_report"]
