"""Evaluation of VisPlay checkpoints on the paper's benchmarks: registry, loaders, greedy decoding, rule and judge
scoring with per-item caches, and the benchmark x checkpoint table. `python -m verl_ext.eval --help`.

Names resolve lazily, so importing the package does not import torch.
"""

import importlib

_EXPORTS = {
    "BENCHMARKS": "benchmarks",
    "DEFAULT_BENCHMARKS": "benchmarks",
    "Benchmark": "benchmarks",
    "EvalItem": "benchmarks",
    "register_benchmark": "benchmarks",
    "DataSource": "data",
    "load_items": "data",
    "score_response": "scoring",
    "JudgeConfig": "judge",
    "JudgeClient": "judge",
    "GenerationConfig": "generate",
    "Checkpoint": "runner",
    "checkpoints_from_run": "runner",
    "evaluate": "runner",
    "table_rows": "table",
    "render_markdown": "table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
