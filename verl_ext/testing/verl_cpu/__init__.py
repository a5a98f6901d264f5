"""A CPU execution target for verl 0.9.1's real V1 trainer (test support; production code never imports it).

verl imports this module in every process of a run (driver, TaskRunner, workers) through
`VERL_USE_EXTERNAL_MODULES=verl_ext.testing.verl_cpu` (verl/__init__.py:49); `activate()` then applies the shims,
and only when VISPLAY_VERL_CPU=1 asks for them and torch sees no accelerator. Each shim is small and names the verl
source it answers (see README.md here for the list):
- `platform`: verl platform `cpu` (VERL_PLATFORM=cpu);
- `distributed`: one `cpu:gloo` process-group backend;
- `offload`: FSDP2 CPU offload without pinned memory;
- `hf_rollout`: rollout name `hf`, Hugging Face `generate` behind verl's replica/server interface.
Everything else the CPU needs is configuration: the `device:` block of recipes/tiny-verl.yaml (env vars and Hydra
overrides), the one place where the CPU run differs from the GPU recipe. README.md here lists both.
"""

from __future__ import annotations

import os

import torch

FLAG = "VISPLAY_VERL_CPU"
_ACTIVE = False


def requested() -> bool:
    return os.environ.get(FLAG, "").strip().lower() in ("1", "true", "yes")


def accelerator_present() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "npu") and torch.npu.is_available())


def activate() -> bool:
    """Apply the CPU shims in this process (idempotent). False when not requested or an accelerator exists."""
    global _ACTIVE
    if _ACTIVE:
        return True
    if not requested() or accelerator_present():
        return False
    from . import distributed, hf_rollout, offload, platform  # noqa: F401  (platform registers on import)

    distributed.install()
    offload.install()
    hf_rollout.register()
    _ACTIVE = True
    return True


activate()
