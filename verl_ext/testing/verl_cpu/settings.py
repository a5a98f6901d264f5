"""Everything a verl stage needs to run on the CPU that is configuration, not code: env vars and Hydra overrides.

The GPU recipe's stage commands plus exactly these lines are what CI executes; the lines of the GPU path CI does
not execute are the ones these override (flash-attn remove-padding, FSDP1, vLLM, NCCL, real GPU placement).
`recipes/tiny-verl.yaml` carries the same lists (`device:` block) for `make evolve MODEL=tiny-verl`;
tests/verl_cpu checks the two agree.
"""

from __future__ import annotations

import os

MODULE = "verl_ext.testing.verl_cpu"

# Env vars of every process of the run (Ray workers inherit the driver's environment).
ENV = {
    "VISPLAY_VERL_CPU": "1",  # verl_ext.testing.verl_cpu.activate(): apply the shims (ignored with a GPU)
    "VERL_USE_EXTERNAL_MODULES": MODULE,  # verl/__init__.py:49 imports it in every process
    "VERL_PLATFORM": "cpu",  # plugin/platform/platform_manager.py:92 -> the `cpu` platform registered by the shim
    "VERL_ENGINE_DEVICE": "cuda",  # workers/engine/base.py:405: the FSDP engine is registered for cuda/npu only
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}

# Hydra overrides appended to the stage command. Keys verl 0.9.1 defines, or `+` for the ones it leaves open.
OVERRIDES = [
    "trainer.device=cpu",
    "trainer.nnodes=1",
    "trainer.n_gpus_per_node=1",
    # Ray: one logical GPU per trainer rank (single_controller/ray/base.py:232 counts GPU/NPU only), and enough
    # logical CPUs for TransferQueue's actors (tq.init waits forever, silently, when they cannot be scheduled).
    "+ray_kwargs.ray_init.num_gpus=1",
    "ray_kwargs.ray_init.num_cpus=8",
    "+ray_kwargs.ray_init.include_dashboard=False",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    # FSDP2 (FSDP1's sync_module_states broadcasts from a GPU), attention without flash-attn.
    "actor_rollout_ref.actor.strategy=fsdp2",
    "actor_rollout_ref.actor.fsdp_config.strategy=fsdp2",
    "actor_rollout_ref.ref.fsdp_config.strategy=fsdp2",
    "actor_rollout_ref.model.use_remove_padding=False",
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    "actor_rollout_ref.model.enable_gradient_checkpointing=False",
    # Hugging Face generate instead of vLLM (verl_ext.testing.verl_cpu.hf_rollout).
    "actor_rollout_ref.rollout.name=hf",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    "actor_rollout_ref.rollout.free_cache_engine=False",
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "reward.num_workers=1",
    "data.dataloader_num_workers=0",
]


def environment(base: dict | None = None) -> dict[str, str]:
    """`base` (default os.environ) plus ENV; VERL_USE_EXTERNAL_MODULES keeps modules already listed."""
    env = dict(os.environ if base is None else base)
    existing = [m for m in env.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m and m != MODULE]
    env.update(ENV)
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join([*existing, MODULE])
    return env
