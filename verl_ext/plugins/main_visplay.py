"""Entry point of VisPlay's two verl stages:
`python -m verl_ext.plugins.main_visplay --config-name questioner|reasoner`.

verl's own runner with one change: a TaskRunner whose `run` imports the VisPlay plugins inside the Ray actor
(registering the `visplay_sync` trainer there) before verl's V1 TaskRunner looks the trainer up. verl is imported
only when a run starts, so `--cfg job` prints the composed config in a couple of seconds.
"""

from __future__ import annotations

import functools
import os

import hydra
from omegaconf import DictConfig


@functools.cache
def _task_runner_class():
    from verl.trainer.main_ppo import TaskRunnerV1

    # TaskRunnerV1 is a Ray actor class, which cannot be subclassed; `__ray_actor_class__` is the plain class.
    class VisPlayTaskRunner(TaskRunnerV1.__ray_actor_class__):
        """verl's V1 TaskRunner; registers the VisPlay plugins in the actor process before running."""

        def register_plugins(self) -> None:
            # Ray pickles this class by value (it lives in __main__ under `python -m`), so no module-level import
            # of ours happens in the actor: import, and so register, here.
            import verl_ext.plugins.trainer  # noqa: F401

        def run(self, config: DictConfig):
            self.register_plugins()
            return super().run(config)

    VisPlayTaskRunner.__module__ = __name__
    return VisPlayTaskRunner


def __getattr__(name: str):
    if name == "VisPlayTaskRunner":
        return _task_runner_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_config(config: DictConfig) -> None:
    """VisPlay-specific checks verl does not make (each one a trap seen in verl 0.9.1)."""
    if not config.trainer.get("use_v1", True):
        raise ValueError("VisPlay runs on verl's V1 trainer: keep trainer.use_v1=true")
    visplay = config.get("visplay") or {}
    reward_model = config.reward.reward_model
    if visplay.get("stage") != "questioner":
        return
    if config.trainer.v1.trainer_mode != "visplay_sync":
        raise ValueError(
            "the questioner stage needs trainer.v1.trainer_mode=visplay_sync (it applies the repetition penalty)"
        )
    if reward_model.enable and reward_model.enable_resource_pool and reward_model.rollout.free_cache_engine:
        # verl sleeps a reward model at start-up when free_cache_engine is set and wakes it only on the colocated
        # path (RewardLoopManager.compute_rm_score); in its own pool it would never wake up.
        raise ValueError(
            "reward.reward_model.enable_resource_pool=true needs reward.reward_model.rollout.free_cache_engine=false"
        )
    if not reward_model.enable and reward_model.enable_resource_pool:
        # verl 0.9.1 reserves the reward pool whenever enable_resource_pool is set (trainer_base.py:823), even
        # with no reward model to put there: the run would wait for GPUs nothing uses.
        raise ValueError(
            "reward.reward_model.enable=false (an external reasoner) with enable_resource_pool=true would reserve "
            "GPUs for a reward model verl never starts: set reward.reward_model.enable_resource_pool=false"
        )
    if not reward_model.enable and not (visplay.get("reasoner") or {}).get("base_url"):
        raise ValueError(
            "no frozen reasoner: set reward.reward_model.enable=true (verl hosts it) or visplay.reasoner.base_url"
        )
    if reward_model.enable and (visplay.get("reasoner") or {}).get("base_url"):
        raise ValueError(
            "both reward.reward_model.enable=true and visplay.reasoner.base_url are set: the URL would be used and "
            "the reasoner verl starts would sit idle; keep one"
        )
    if (config.algorithm.get("filter_groups") or {}).get("enable", False):
        raise ValueError("algorithm.filter_groups would filter on rewards before the repetition penalty is applied")


PLUGIN_MODULE = "verl_ext.plugins.verl_fixes"


def export_plugin_module(environ=os.environ) -> None:
    """List VisPlay's verl plugin in VERL_USE_EXTERNAL_MODULES, so every process of the run (Ray workers inherit
    this environment) imports it with verl even where the installed metadata lacks the `verl.plugins` entry point
    (an editable install made before it existed)."""
    modules = [m for m in environ.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    if PLUGIN_MODULE not in modules:
        environ["VERL_USE_EXTERNAL_MODULES"] = ",".join([PLUGIN_MODULE, *modules])


@hydra.main(config_path="config", config_name="questioner", version_base=None)
def main(config: DictConfig) -> None:
    export_plugin_module()
    import ray
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    check_config(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=ray.remote(_task_runner_class()))


if __name__ == "__main__":
    main()
