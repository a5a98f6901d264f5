"""VisPlay's verl plugin: fixes for verl 0.9.1 that every VisPlay run needs, GPU or not.

Loaded in every process that imports verl (driver, TaskRunner, each Ray worker) through the `verl.plugins` entry
point `visplay` (setup.py; verl/__init__.py:64 loads the group), and through VERL_USE_EXTERNAL_MODULES, which
`verl_ext.plugins.main_visplay` sets for installs whose metadata predates the entry point. Importing it is cheap: it
imports nothing heavy and patches only module attributes verl looks up at call time.

1. trl: verl/models/transformers/monkey_patch.py:352-356 imports `AutoModelForCausalLMWithValueHead` from
   `trl.experimental.ppo` or `trl` whenever trl is importable. trl 1.16 (pinned here: the local backend's
   GRPOTrainer) has neither, so the FSDP engine's `_build_module` raises ImportError. The patch only sets a
   `state_dict` on that value-head class; VisPlay trains no value head (GRPO, no critic). So verl's
   `is_trl_available` is made to answer "is trl's value-head model importable", which is what verl means by it
   (the other caller, verl/utils/model.py:654, loads that class). Pinning an older trl instead would break the
   local backend's GRPOTrainer.
2. mrope position ids (Qwen2.5-VL's 3-D `position_ids`, one (4, seq_i) tensor per sample, stored by verl as a jagged
   nested tensor whose ragged dim is 2): TransferQueue rebuilds every nested field it serves with
   `torch.nested.as_nested_tensor(samples, layout=torch.jagged)` (transfer_queue/utils/serial_utils.py:323 and
   storage/managers/simple_storage_manager.py:574). When all samples of a fetch have the same length (all
   questions of a step cut at max_response_length, for instance) torch cannot see a ragged dim and makes the
   first one ragged (`_ragged_idx == 1`, offsets over the 4 mrope rows). verl's `maybe_fix_3d_position_ids`
   (utils/tensordict_utils.py:910) then sets `_ragged_idx = 2` without looking at the offsets, so the tensor no
   longer describes its own values, and the next unbind (`index_select_tensor_dict` in `make_iterator`,
   engine_workers.py:273 in update_actor) fails with "split_with_sizes expects split_sizes to sum exactly to ...".
   `fix_3d_position_ids` repairs both cases it can meet, reading the offsets; it replaces verl's function in
   every module that imported it by name.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys

VALUE_HEAD = "AutoModelForCausalLMWithValueHead"
_VALUE_HEAD_MODULES = ("trl.experimental.ppo", "trl")


@functools.cache
def trl_value_head_available() -> bool:
    """True when trl is installed and exposes the value-head model where verl 0.9.1 imports it from."""
    try:
        if importlib.util.find_spec("trl") is None:
            return False
    except (ImportError, ValueError):
        return False
    for name in _VALUE_HEAD_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, VALUE_HEAD):
            return True
    return False


def patch_trl_check() -> None:
    """Point verl's `is_trl_available` (and the copies modules imported by name) at `trl_value_head_available`."""
    import verl.utils.import_utils as import_utils

    import_utils.is_trl_available = trl_value_head_available
    for name in ("verl.models.transformers.monkey_patch", "verl.utils.model"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "is_trl_available"):
            module.is_trl_available = trl_value_head_available


def fix_3d_position_ids(data) -> None:
    """Make a TensorDict's nested 3-D `position_ids` ragged on dim 2 again, whichever way it was lost.

    - offsets index the values' dim 0 (as_nested_tensor of equal-length samples): rebuild from the samples;
    - offsets index the values' dim 1 but `_ragged_idx` says 1 (tensordict pickling drops it): set it to 2.
    The repaired tensor is stored back, so it survives TensorDicts that hand out copies on `__getitem__`.
    """
    if "position_ids" not in data.keys():
        return
    position_ids = data["position_ids"]
    if not (
        getattr(position_ids, "is_nested", False) and position_ids.dim() == 3 and position_ids.layout == torch_jagged()
    ):
        return
    if position_ids._ragged_idx == 2:
        return
    from verl.utils.tensordict_utils import nested_tensor_from_tensor_list

    values, total = position_ids.values(), int(position_ids.offsets()[-1])
    if values.shape[0] == total:  # ragged over the mrope rows: each sample is still one (4, seq) slice
        data["position_ids"] = nested_tensor_from_tensor_list(list(position_ids.unbind()), ragged_idx=2)
    elif values.dim() > 1 and values.shape[1] == total:
        position_ids._ragged_idx = 2
        data["position_ids"] = position_ids


def torch_jagged():
    import torch

    return torch.jagged


VERL_MAYBE_FIX = None  # verl's own maybe_fix_3d_position_ids, before the patch
_FIX_USERS = (
    "verl.utils.tensordict_utils",
    "verl.workers.engine_workers",
    "verl.workers.engine.base",
    "verl.workers.engine_workers_tinker",
)


def patch_position_ids_fix() -> None:
    """Install `fix_3d_position_ids` as verl's `maybe_fix_3d_position_ids`, also where it was imported by name."""
    import verl.utils.tensordict_utils as tensordict_utils  # loaded with verl; later by-name imports get the fix

    global VERL_MAYBE_FIX
    if VERL_MAYBE_FIX is None and tensordict_utils.maybe_fix_3d_position_ids is not fix_3d_position_ids:
        VERL_MAYBE_FIX = tensordict_utils.maybe_fix_3d_position_ids  # kept for the tests that show it fails
    for name in _FIX_USERS:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "maybe_fix_3d_position_ids"):
            module.maybe_fix_3d_position_ids = fix_3d_position_ids


def apply() -> None:
    patch_trl_check()
    patch_position_ids_fix()


apply()
