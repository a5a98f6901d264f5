"""VisPlay's verl plugin: fixes for verl 0.9.1 that every VisPlay run needs, GPU or not.

Loaded in every process that imports verl (driver, TaskRunner, each Ray worker) through the `verl.plugins` entry
point `visplay` (setup.py; verl/__init__.py:63 loads the group), and through VERL_USE_EXTERNAL_MODULES, which
`verl_ext.main_visplay` sets for installs whose metadata predates the entry point. Importing it is cheap: it
imports nothing heavy and patches only module attributes verl looks up at call time.

1. trl: verl/models/transformers/monkey_patch.py:352-356 imports `AutoModelForCausalLMWithValueHead` from
   `trl.experimental.ppo` or `trl` whenever trl is importable. trl 1.16 (pinned here: the local backend's
   GRPOTrainer) has neither, so the FSDP engine's `_build_module` raises ImportError. The patch only sets a
   `state_dict` on that value-head class; VisPlay trains no value head (GRPO, no critic). So verl's
   `is_trl_available` is made to answer "is trl's value-head model importable", which is what verl means by it
   (the other caller, verl/utils/model.py:654, loads that class). Pinning an older trl instead would break the
   local backend's GRPOTrainer.
2. mrope position ids: see `fix_3d_position_ids` below.
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


def apply() -> None:
    patch_trl_check()


apply()
