"""FSDP2 CPU offload without pinned memory.

verl/workers/engine/fsdp/transformer_impl.py:462 gives forward-only engines (the reference policy)
CPUOffloadPolicy(pin_memory=True); torch then calls `.pin_memory()` on every shard
(torch/distributed/fsdp/_fully_shard/_fsdp_param.py:315), which needs an accelerator. Pinning buys nothing without
one, so the policy is built with pin_memory=False whatever the caller asks.
"""

from __future__ import annotations

from torch.distributed.fsdp import CPUOffloadPolicy


def install() -> None:
    original = CPUOffloadPolicy.__init__
    if getattr(original, "_visplay_cpu", False):
        return

    def __init__(self, pin_memory: bool = True):
        original(self, pin_memory=False)

    __init__._visplay_cpu = True
    CPUOffloadPolicy.__init__ = __init__
