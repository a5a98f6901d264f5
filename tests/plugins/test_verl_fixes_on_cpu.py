"""The three verl 0.9.1 blockers every GPU run of VisPlay hit, each checked against verl's own code.

- trl: verl's monkey patch imports a value-head model trl 1.16 does not have (verl_ext.plugins.verl_fixes);
- mrope: 3-D position ids served by TransferQueue break verl's update_actor iterator (verl_ext.plugins.verl_fixes);
- an external reasoner reserved a reward GPU pool (verl_ext/plugins/config/questioner.yaml).
Each test also runs the unfixed path and asserts it fails, so it keeps proving the fix is needed.
"""

import ast
import importlib
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensordict import TensorDict

import verl_ext
from verl_ext.plugins import verl_fixes as verl_plugin
from verl_ext.plugins.main_visplay import PLUGIN_MODULE, check_config, export_plugin_module

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(verl_ext.__file__).resolve().parent / "plugins" / "config"


def _compose(name: str, overrides=()):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


# ---- loading ---------------------------------------------------------------------------------------------------


def test_plugin_is_a_verl_plugins_entry_point_and_exported_to_ray_workers():
    tree = ast.parse((REPO / "setup.py").read_text())
    entry_points = next(
        node.value for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg == "entry_points"
    )
    groups = ast.literal_eval(entry_points)
    assert groups["verl.plugins"] == ["visplay = verl_ext.plugins.verl_fixes"]
    target = groups["verl.plugins"][0].split("=")[1].strip()
    assert importlib.import_module(target) is verl_plugin and target == PLUGIN_MODULE
    environ = {"VERL_USE_EXTERNAL_MODULES": "other.module"}
    export_plugin_module(environ)
    export_plugin_module(environ)  # idempotent
    assert environ["VERL_USE_EXTERNAL_MODULES"] == f"{PLUGIN_MODULE},other.module"


# ---- trl ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def restore_transformers_models():
    """verl's apply_monkey_patch rewrites Qwen2(.5)-VL's classes and module functions process-wide; put them back so
    later tests in this process generate with the model transformers ships."""
    import sys

    def snapshot():
        saved = {}
        for name, module in list(sys.modules.items()):
            if name.startswith(("transformers.models.qwen2", "transformers.integrations")) and module is not None:
                saved[module] = dict(vars(module))
                for value in list(vars(module).values()):
                    if isinstance(value, type) and value.__module__ == name:
                        saved[value] = dict(vars(value))
        return saved

    before = snapshot()
    yield
    for owner, attrs in before.items():
        for key, value in attrs.items():
            if key in ("__dict__", "__weakref__"):
                continue
            try:
                if getattr(owner, key, None) is not value:
                    setattr(owner, key, value)
            except (AttributeError, TypeError):
                pass


def test_verls_monkey_patch_runs_with_the_pinned_trl(tiny_vlm_path, monkeypatch, restore_transformers_models):
    from transformers import AutoModelForImageTextToText
    from verl.models.transformers import monkey_patch
    from verl.utils import import_utils

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm_path), torch_dtype=torch.float32)
    if not verl_plugin.trl_value_head_available():
        # the unfixed path: verl's own check says "trl is here", and the import that follows fails
        monkeypatch.setattr(monkey_patch, "is_trl_available", lambda: True)
        with pytest.raises(ImportError, match="AutoModelForCausalLMWithValueHead"):
            monkey_patch.apply_monkey_patch(model, use_remove_padding=False)
        monkeypatch.undo()
    verl_plugin.apply()
    assert monkey_patch.is_trl_available is verl_plugin.trl_value_head_available
    assert import_utils.is_trl_available is verl_plugin.trl_value_head_available
    monkey_patch.apply_monkey_patch(model, use_remove_padding=False)  # what FSDPEngine._build_module calls


# ---- mrope position ids --------------------------------------------------------------------------------------------


def _mrope(lengths):
    """Per-sample Qwen2.5-VL position ids: (4, seq) each (text row + t/h/w rows)."""
    return [torch.arange(4 * n).reshape(4, n) + 100 * i for i, n in enumerate(lengths)]


def _served_by_transfer_queue(samples):
    """The position_ids field as TransferQueue hands it to a worker: its own serializer's round trip."""
    from transfer_queue.utils import serial_utils
    from verl.utils.tensordict_utils import nested_tensor_from_tensor_list

    stored = nested_tensor_from_tensor_list(samples, ragged_idx=2)  # how verl builds it (agent loop output)
    return serial_utils.decode(serial_utils.encode(stored))


def _update_actor_iteration(data, fix):
    """engine_workers.py:252-290 (train_mini_batch): fix, split into mini-batches, fix each one."""
    from verl.utils import tensordict_utils as tu

    fix(data)
    batches = list(tu.make_iterator(data, mini_batch_size=2, epochs=1, seed=0))
    for batch in batches:
        fix(batch)
    return [sample for batch in batches for sample in batch["position_ids"].unbind()]


@pytest.mark.parametrize("lengths", [(7, 7, 7, 7), (3, 5, 2, 4)], ids=["equal_lengths", "ragged_lengths"])
def test_update_actor_iterates_over_mrope_position_ids_served_by_transfer_queue(lengths):
    verl_plugin.apply()
    verls_fix = verl_plugin.VERL_MAYBE_FIX
    samples = _mrope(lengths)
    served = _served_by_transfer_queue(samples)
    if len(set(lengths)) == 1:
        assert served._ragged_idx == 1  # the root cause: torch makes the first dim ragged when none differs
        with pytest.raises(RuntimeError):
            _update_actor_iteration(TensorDict({"position_ids": served}, batch_size=[4]), verls_fix)
    served = _served_by_transfer_queue(samples)
    got = _update_actor_iteration(
        TensorDict({"position_ids": served}, batch_size=[4]), verl_plugin.fix_3d_position_ids
    )
    expected = {tuple(s.flatten().tolist()) for s in samples}
    assert {tuple(s.flatten().tolist()) for s in got} == expected
    assert all(s.shape[0] == 4 for s in got)


def test_mrope_fix_restores_a_ragged_index_lost_by_pickling():
    from verl.utils.tensordict_utils import nested_tensor_from_tensor_list

    samples = _mrope((3, 5, 2, 4))
    data = TensorDict({"position_ids": nested_tensor_from_tensor_list(samples, ragged_idx=2)}, batch_size=[4])
    data = pickle.loads(pickle.dumps(data.consolidate()))
    verl_plugin.fix_3d_position_ids(data)
    assert data["position_ids"]._ragged_idx == 2
    assert [s.tolist() for s in data["position_ids"].unbind()] == [s.tolist() for s in samples]


def test_mrope_fix_is_what_verls_workers_call():
    import verl.workers.engine.base as engine_base
    import verl.workers.engine_workers as engine_workers
    from verl.utils import tensordict_utils

    verl_plugin.apply()
    for module in (tensordict_utils, engine_workers, engine_base):
        assert module.maybe_fix_3d_position_ids is verl_plugin.fix_3d_position_ids


# ---- questioner config: an external reasoner reserves no GPUs ----------------------------------------------------


def _reward_pool_spec(cfg):
    """verl's own resource-pool plan for this config (PPOTrainer._init_resource_pool_mgr, trainer_base.py:788)."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    trainer = SimpleNamespace(config=cfg)
    PPOTrainer._init_resource_pool_mgr(trainer)
    return trainer.resource_pool_manager.resource_pool_spec


def test_external_reasoner_reserves_no_reward_pool():
    external = ["reward.reward_model.enable=false", "visplay.reasoner.base_url=http://127.0.0.1:1/v1"]
    cfg = _compose("questioner", external)
    assert cfg.reward.reward_model.enable_resource_pool is False
    check_config(cfg)
    assert set(_reward_pool_spec(cfg)) == {"global_pool"}
    # verl-hosted reasoner: its own pool, as before
    hosted = _compose("questioner")
    assert hosted.reward.reward_model.enable_resource_pool is True
    assert _reward_pool_spec(hosted)["reward_pool"] == [4]
    # the old default (a pool with no reward model) is rejected with the fix to apply
    stale = _compose("questioner", [*external, "reward.reward_model.enable_resource_pool=true"])
    assert "reward_pool" in _reward_pool_spec(stale)
    with pytest.raises(ValueError, match="enable_resource_pool=false"):
        check_config(stale)
