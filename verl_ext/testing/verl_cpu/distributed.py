"""One gloo backend for torch.distributed on the CPU.

verl/utils/distributed.py:89 (initialize_global_process_group_ray, called by TrainingWorker, engine_workers.py:89)
builds the backend string f"cpu:gloo,{device}:{backend}"; with device `cpu` that is "cpu:gloo,cpu:gloo", which
torch rejects (a device may appear once). The wrapper drops repeated `device:backend` entries before calling torch.
"""

from __future__ import annotations

import functools

import torch.distributed


def dedupe_backend(backend: str | None) -> str | None:
    """ "cpu:gloo,cpu:gloo" -> "cpu:gloo"; anything else unchanged."""
    if not backend or "," not in backend:
        return backend
    parts = []
    for part in (p.strip() for p in backend.split(",")):
        if part and part not in parts:
            parts.append(part)
    return ",".join(parts)


def install() -> None:
    original = torch.distributed.init_process_group
    if getattr(original, "_visplay_cpu", False):
        return

    @functools.wraps(original)
    def init_process_group(backend=None, *args, **kwargs):
        return original(dedupe_backend(backend), *args, **kwargs)

    init_process_group._visplay_cpu = True
    torch.distributed.init_process_group = init_process_group
