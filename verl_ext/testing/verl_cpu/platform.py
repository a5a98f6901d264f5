"""verl platform `cpu`: the device layer verl's workers ask for, answered by the CPU.

Answers verl/plugin/platform/platform_base.py (PlatformBase, the abstract device interface) through verl's own
extension point, PlatformRegistry.register (platform_manager.py:43), selected with VERL_PLATFORM=cpu
(platform_manager.py:92). Differences from PlatformCUDA (platform_cuda.py) that matter:
- current_device() returns torch.device("cpu"), not an int: verl passes it to `.to()`/`device_id=` (FSDP2's
  fully_shard mesh, `torch.device(get_device_name(), get_device_id())`), where an int would mean a CUDA index;
- communication backend `gloo`;
- Ray resource "GPU": CPU runs start Ray with logical GPUs (ray_init.num_gpus), one per trainer rank, so verl's
  resource accounting (ResourcePoolManager._check_resource_available, single_controller/ray/base.py:226, which
  counts only GPU/NPU) and its placement-group bundles work unchanged;
- the torch device module is a small stand-in (`CpuDeviceModule`) for the torch.cuda functions verl calls.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

PLATFORM_NAME = "cpu"


class CpuDeviceModule(ModuleType):
    """What verl calls on `get_torch_device()` (torch.cuda on GPUs), for the CPU: memory queries report 0 bytes,
    streams and caches are no-ops, RNG state is torch's CPU generator."""

    def __init__(self):
        super().__init__("verl_ext.testing.verl_cpu.device")

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def current_device(self) -> torch.device:
        return torch.device("cpu")

    def set_device(self, *_args, **_kwargs) -> None:
        return None

    def synchronize(self, *_args, **_kwargs) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def ipc_collect(self) -> None:
        return None

    def mem_get_info(self, *_args) -> tuple[int, int]:
        return (0, 0)

    def memory_allocated(self, *_args) -> int:
        return 0

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    def reset_peak_memory_stats(self, *_args) -> None:
        return None

    def set_per_process_memory_fraction(self, *_args, **_kwargs) -> None:
        return None

    def get_device_name(self, *_args) -> str:
        return "cpu"

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    def get_rng_state(self, *_args) -> torch.Tensor:
        return torch.get_rng_state()

    def set_rng_state(self, state: torch.Tensor, *_args) -> None:
        torch.set_rng_state(state)

    def current_stream(self, *_args):
        return torch.cpu.current_stream()

    def stream(self, *_args):
        return contextlib.nullcontext()

    Stream = torch.cpu.Stream
    Event = torch.cpu.Event


DEVICE_MODULE = CpuDeviceModule()


@PlatformRegistry.register(platform=PLATFORM_NAME)
class CpuPlatform(PlatformBase):
    """verl's platform interface on the CPU (test support: never picked by auto-detection, see module doc)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return False  # only ever selected explicitly (VERL_PLATFORM=cpu), never by auto-detection

    def current_device(self) -> torch.device:
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for the logical GPUs; nothing reads it on the CPU

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
