"""Both stage configs compose against the installed verl 0.9.1 and put VisPlay's settings where verl reads them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

import verl_ext
from verl_ext.plugins.main_visplay import check_config

CONFIG_DIR = Path(verl_ext.__file__).resolve().parent / "plugins" / "config"
REPO = Path(__file__).resolve().parents[2]


def _compose(name: str, overrides=()):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


def test_questioner_config_lands_where_verl_reads_it():
    cfg = _compose("questioner")
    # the V1 trainer and our registered trainer name (main_ppo.TaskRunnerV1.run -> get_trainer_cls)
    assert cfg.trainer.use_v1 is True
    assert cfg.trainer.v1.trainer_mode == "visplay_sync"
    # reward manager: verl.trainer.ppo.reward.resolve_reward_manager_cls reads reward.reward_manager.*
    assert cfg.reward.reward_manager.source == "importlib"
    assert cfg.reward.reward_manager.module.path == "pkg://verl_ext.plugins.reward_manager"
    assert cfg.reward.reward_manager.name == "QuestionerRewardManager"
    # with a reward model enabled, RewardLoopWorker.compute_score only reaches run_single when a path is set
    assert cfg.reward.custom_reward_function.path == "pkg://verl_ext.plugins.reward_functions"
    # the legacy top-level keys are ignored by verl 0.9.1's main_ppo: they must stay empty
    assert cfg.custom_reward_function.path is None and cfg.reward_model.reward_manager is None
    # dataset: get_dataset_class reads data.custom_cls.*
    assert cfg.data.custom_cls.path == "pkg://verl_ext.plugins.datasets"
    assert cfg.data.custom_cls.name == "QuestionerDataset"
    # GRPO defaults of the reference run
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.actor_rollout_ref.rollout.n == 8
    assert cfg.actor_rollout_ref.actor.optim.lr == 1e-6
    assert cfg.actor_rollout_ref.actor.optim.weight_decay == 1e-2
    assert cfg.actor_rollout_ref.actor.use_kl_loss is True
    assert cfg.actor_rollout_ref.actor.kl_loss_coef == 1e-2
    assert cfg.actor_rollout_ref.actor.kl_loss_type == "low_var_kl"
    assert cfg.data.train_batch_size == 512 and cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 128
    assert cfg.trainer.total_training_steps == 20
    # VisPlay: m, sampling, lambda, reward mode, and verl hosting the frozen reasoner in its own pool
    assert cfg.visplay.reasoner.num_samples == 10
    assert (cfg.visplay.reasoner.temperature, cfg.visplay.reasoner.top_p, cfg.visplay.reasoner.top_k) == (1.0, 1.0, 40)
    assert cfg.visplay.reward.mode == "paper" and cfg.visplay.reward.lam == 1.0
    assert cfg.reward.reward_model.enable is True and cfg.reward.reward_model.enable_resource_pool is True
    assert cfg.reward.reward_model.rollout.name == "vllm"
    assert cfg.reward.reward_model.rollout.free_cache_engine is False
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["reward"]["reward_model"]["model_path"] == resolved["actor_rollout_ref"]["model"]["path"]
    assert resolved["data"]["prompt_template"] is None


def test_reasoner_config_lands_where_verl_reads_it():
    cfg = _compose("reasoner")
    assert cfg.trainer.v1.trainer_mode == "visplay_sync"
    assert cfg.reward.reward_manager.source == "register" and cfg.reward.reward_manager.name == "naive"
    assert cfg.reward.custom_reward_function.path == "pkg://verl_ext.plugins.reward_functions"
    assert cfg.reward.custom_reward_function.name == "reasoner_compute_score"
    assert cfg.reward.custom_reward_function.reward_kwargs.format_weight == 0.1
    assert cfg.reward.reward_model.enable is False
    assert cfg.data.custom_cls.name == "ReasonerDataset"
    assert cfg.data.max_response_length == 4096
    assert list(cfg.data.keep_filter_reasons) == ["kept"]


def test_verl_loads_our_plugins_from_the_composed_config():
    from verl.trainer.ppo.reward import get_custom_reward_fn, resolve_reward_manager_cls
    from verl.utils.dataset.rl_dataset import get_dataset_class

    from verl_ext.plugins.datasets import QuestionerDataset, ReasonerDataset
    from verl_ext.plugins.reward_manager import QuestionerRewardManager

    questioner, reasoner = _compose("questioner"), _compose("reasoner")
    assert resolve_reward_manager_cls(questioner) is QuestionerRewardManager
    assert get_dataset_class(questioner.data) is QuestionerDataset
    assert get_dataset_class(reasoner.data) is ReasonerDataset
    score = get_custom_reward_fn(reasoner)  # verl wraps it with reward_kwargs (format_weight)
    result = score(data_source="x", solution_str="so \\boxed{3}", ground_truth="3", extra_info={})
    assert result == {"score": 1.0, "overall": 1.0, "accuracy": 1.0, "format": 1.0}
    assert score(data_source="x", solution_str="so \\boxed{4}", ground_truth="3")["score"] == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["questioner", "reasoner"])
def test_verl_config_validation_passes(name):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    cfg = _compose(name)
    check_config(cfg)
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))


def test_check_config_catches_the_known_traps():
    cfg = _compose("questioner")
    with open_dict(cfg):
        cfg.reward.reward_model.rollout.free_cache_engine = True
    with pytest.raises(ValueError, match="free_cache_engine=false"):
        check_config(cfg)
    cfg = _compose("questioner", ["reward.reward_model.enable=false"])
    with pytest.raises(ValueError, match="no frozen reasoner"):
        check_config(cfg)
    check_config(
        _compose("questioner", ["reward.reward_model.enable=false", "visplay.reasoner.base_url=http://h:1/v1"])
    )
    with pytest.raises(ValueError, match="keep one"):
        check_config(_compose("questioner", ["visplay.reasoner.base_url=http://h:1/v1"]))
    with pytest.raises(ValueError, match="visplay_sync"):
        check_config(_compose("questioner", ["trainer.v1.trainer_mode=sync"]))


def _cfg_job(args, env=None):
    return subprocess.Popen(
        args,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # the scripts call `python3`: make it this interpreter (a CI virtualenv need not be activated)
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(env or {}),
        },
    )


@pytest.mark.slow
def test_run_scripts_print_the_composed_config(tmp_path):
    """The example and smoke scripts end in `python -m verl_ext.plugins.main_visplay --config-name <stage> ... "$@"`:
    with `--cfg job` they print the composed config on a CPU machine, which also proves every override they pass
    exists in verl 0.9.1's schema. One process per script, side by side."""
    env = {"MODEL_PATH": "/models/qwen-vl", "REASONER_HOSTING": "external", "REASONER_URL": "http://h:8000/v1"}
    cases = {
        "run_questioner": "examples/visplay/run_questioner_qwen2_5_vl_7b.sh",
        "run_reasoner": "examples/visplay/run_reasoner_qwen2_5_vl_7b.sh",
        "smoke_questioner": "tests/special_e2e/run_questioner_smoke.sh",
        "smoke_reasoner": "tests/special_e2e/run_reasoner_smoke.sh",
    }
    procs = {}
    for name, script in cases.items():
        work_dir = tmp_path / name
        work_dir.mkdir()
        procs[name] = _cfg_job(["bash", script, "--cfg", "job"], {**env, "WORK_DIR": str(work_dir)})
    configs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        configs[name] = yaml.safe_load(out)
    run_q = configs["run_questioner"]
    assert run_q["visplay"]["stage"] == "questioner"
    assert run_q["actor_rollout_ref"]["model"]["path"] == "/models/qwen-vl"
    assert run_q["reward"]["reward_model"]["enable"] is False
    assert run_q["visplay"]["reasoner"]["base_url"] == "http://h:8000/v1"
    assert configs["run_reasoner"]["visplay"]["stage"] == "reasoner"
    assert configs["run_reasoner"]["reward"]["custom_reward_function"]["reward_kwargs"]["format_weight"] == 0.1
    smoke_q = configs["smoke_questioner"]
    assert smoke_q["reward"]["reward_model"]["enable_resource_pool"] is False
    assert smoke_q["reward"]["reward_model"]["rollout"]["free_cache_engine"] is True
    assert (tmp_path / "smoke_questioner" / "images.parquet").is_file()
    assert (tmp_path / "smoke_reasoner" / "pseudo_labels.parquet").is_file()
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    for name in ("run_questioner", "run_reasoner", "smoke_questioner", "smoke_reasoner"):
        cfg = OmegaConf.create(configs[name])
        check_config(cfg)
        validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
