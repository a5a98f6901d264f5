"""The questioner's batch-level reward in verl 0.9.1's V1 sync trainer.

The real VisPlayTrainer (constructed on CPU, without the GPU worker groups) runs its real `_compute_advantage` over
samples written to a real TransferQueue the way verl writes them in both reward layouts: by the agent loop
(reward_extra_info inside extra_fields) and by the trainer's colocated reward path (one field per key, through
verl's own `_compute_reward_colocate` and `RewardLoopManager.compute_rm_score`). Padding samples come from
verl's `upsample_batch_to_divisible_size`.
"""

import itertools
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import verl_ext
from verl_ext.plugins.reasoner_client import ReasonerEndpointError
from verl_ext.plugins.reward_manager import EXTRA_INFO_DEFAULTS
from verl_ext.plugins.trainer import PenaltySettings, compute_questioner_rewards
from verl_ext.visplay import questioner_reward, repetition_penalty

CONFIG_DIR = Path(verl_ext.__file__).resolve().parent / "plugins" / "config"

QUESTIONS = [
    "How many red circles are in the image?",
    "How many red circles are in the image?",
    "How many red circles are there in this image?",
    "Which bar in the chart is the tallest one?",
    "What is the sum of the two largest values in the chart?",
]


def _info(valid, question="", confidence=0.0, qtype="numerical", **extra):
    info = dict(EXTRA_INFO_DEFAULTS)
    info.update(vp_num_requested=10)
    if valid:
        info.update(vp_valid=1.0, vp_question=question, vp_type=qtype, vp_confidence=confidence, vp_num_samples=10)
    info.update(extra)
    return info


def _infos():
    """Eight rollouts (2 prompts x n=4): duplicates, one failed parse, one garbled empty rollout."""
    return [
        _info(True, QUESTIONS[0], 0.5),
        _info(True, QUESTIONS[1], 0.7, vp_num_unparsed=2),
        _info(True, QUESTIONS[2], 1.0),
        _info(False, vp_empty_response=1.0),
        _info(True, QUESTIONS[3], 0.3, qtype="multiple choice"),
        _info(True, QUESTIONS[4], 0.6, qtype="regression"),
        _info(False),
        _info(True, QUESTIONS[3], 0.0, qtype="multiple choice", vp_num_missing=3, vp_timeouts=1),
    ]


def _expected(infos, mode, lam):
    questions = [i["vp_question"] if i["vp_valid"] else "" for i in infos]
    penalties = repetition_penalty(questions, threshold=0.5)
    return [
        questioner_reward(i["vp_confidence"], pen, bool(i["vp_valid"]), mode=mode, lam=lam)
        for i, pen in zip(infos, penalties, strict=True)
    ]


@pytest.mark.parametrize("mode,lam", [("paper", 1.0), ("reference", 1.0), ("paper", 0.5), ("reference", 2.0)])
def test_final_reward_is_exactly_questioner_reward_with_the_batch_penalty(mode, lam):
    infos = _infos()
    outcome = compute_questioner_rewards(infos, PenaltySettings(mode=mode, lam=lam))
    assert outcome.rewards == _expected(infos, mode, lam)
    assert outcome.penalties == repetition_penalty([i["vp_question"] if i["vp_valid"] else "" for i in infos], 0.5)
    # the two identical questions share a cluster, so they are penalised
    assert outcome.penalties[0] == outcome.penalties[1] >= 2 / 8
    if mode == "reference":
        assert outcome.rewards[6] == pytest.approx(-1 - lam * outcome.penalties[6])  # invalid -> -1 - pen
    else:
        assert outcome.rewards[6] == 0.0
    metrics = outcome.metrics
    assert metrics["visplay/valid_rate"] == 6 / 8 and metrics["visplay/unparsable_share"] == 2 / 8
    assert metrics["visplay/confidence/mean"] == pytest.approx(np.mean([0.5, 0.7, 1.0, 0.3, 0.6, 0.0]))
    assert metrics["visplay/type/multiple_choice"] == 2 / 6 and metrics["visplay/type/regression"] == 1 / 6
    assert metrics["visplay/reasoner/unparsed_answer_share"] == 2 / 60
    assert metrics["visplay/reasoner/missing_samples"] == 3 and metrics["visplay/reasoner/timeouts"] == 1
    assert metrics["visplay/empty_response_share"] == 1 / 8
    assert metrics["visplay/penalty/mean"] > 0


def test_reasoner_failures_fail_the_step_unless_allowed():
    infos = _infos()
    infos[4] = _info(True, QUESTIONS[3], vp_reasoner_failed=1.0, vp_reasoner_error="endpoint http://x is unreachable")
    with pytest.raises(ReasonerEndpointError, match="failed on 1 of 8 questions.*unreachable"):
        compute_questioner_rewards(infos, PenaltySettings())
    outcome = compute_questioner_rewards(infos, PenaltySettings(max_failed_fraction=0.2))
    assert outcome.rewards[4] == 0.0 and outcome.metrics["visplay/reasoner/failed"] == 1
    assert compute_questioner_rewards([], PenaltySettings()).rewards == []


# ------------------------------------------------------------------------------ real TransferQueue + trainer


@pytest.fixture(scope="module")
def trainer(tiny_vlm_path):
    import ray
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import transfer_queue as tq

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        config = compose(
            config_name="questioner",
            overrides=[f"actor_rollout_ref.model.path={tiny_vlm_path}", "actor_rollout_ref.rollout.n=4"],
        )
    with open_dict(config):
        # the controller and each storage unit hold one CPU each: one unit fits a 2-CPU Ray
        config.transfer_queue.backend.SimpleStorage.num_data_storage_units = 1
    tq.init(config.transfer_queue)
    try:
        from verl.utils import hf_tokenizer

        from verl_ext.plugins.trainer import VisPlayTrainer

        instance = VisPlayTrainer(config)
        instance.tokenizer = hf_tokenizer(str(tiny_vlm_path))
        yield instance
    finally:
        tq.close()
        ray.shutdown()


_COUNTER = itertools.count()


def _agent_loop_samples(infos, with_reward: bool):
    """Per-sample fields as AgentLoopWorkerTQ._agent_loop_postprocess writes them (response lengths differ)."""
    keys, fields, tags = [], [], []
    step = next(_COUNTER)
    for i, info in enumerate(infos):
        uid, session = f"uid{step}x{i // 4}", i % 4
        response_len = 3 + i
        field = {
            "prompts": torch.arange(5, dtype=torch.int64),
            "responses": torch.arange(response_len, dtype=torch.int64) + 10,
            "response_mask": torch.ones(response_len, dtype=torch.int64),
            "rollout_log_probs": torch.zeros(response_len),
            "old_log_probs": torch.zeros(response_len),
            "ref_log_prob": torch.zeros(response_len),
            "uid": uid,
            "num_turns": 2,
            "raw_prompt": [{"role": "user", "content": f"sample-{i}"}],
            "extra_fields": {"turn_scores": [], "tool_rewards": []},
        }
        if with_reward:  # the agent loop scored it: score on the last token, info inside extra_fields
            field["rm_scores"] = torch.zeros(response_len)
            field["rm_scores"][-1] = info["vp_uncertainty"]
            field["extra_fields"] = {**field["extra_fields"], "reward_extra_info": info}
        keys.append(f"{uid}_{session}_0")
        fields.append(field)
        tags.append(
            {
                "status": "success",
                "prompt_len": 5,
                "response_len": response_len,
                "seq_len": 5 + response_len,
                "global_steps": 1,
                "min_global_steps": 0,
                "max_global_steps": 0,
            }
        )
    return keys, fields, tags


def _put(keys, fields, tags, pad_to: int):
    import transfer_queue as tq
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
    batch = KVBatchMeta(partition_id="train", keys=keys, tags=tags)
    return upsample_batch_to_divisible_size(batch, pad_to, eos_token_id=0)


def _check_step(trainer, batch, infos, metrics):
    import transfer_queue as tq
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    expected = _expected(infos, "paper", 1.0)
    data = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["rm_scores", "advantages"])
    scores = [row for row in data["rm_scores"].unbind()]
    real = [not tag.get("is_padding", False) for tag in batch.tags]
    assert sum(real) == len(infos) and len(batch) > len(infos)
    got = [float(row.sum()) for row, r in zip(scores, real, strict=True) if r]
    assert got == pytest.approx(expected, abs=1e-7)
    assert all(float(row[:-1].abs().sum()) == 0 for row in scores)  # the score sits on the last token only
    assert all(float(row.abs().sum()) == 0 for row, r in zip(scores, real, strict=True) if not r)
    # GRPO advantages of the real samples come from the penalised rewards
    lengths = [row.numel() for row in scores[: len(infos)]]
    width = max(lengths)
    token_rewards = torch.zeros(len(infos), width)
    mask = torch.zeros(len(infos), width)
    for i, (value, length) in enumerate(zip(expected, lengths, strict=True)):
        token_rewards[i, length - 1], mask[i, :length] = value, 1
    index = np.array([key.split("_")[0] for key in batch.keys[: len(infos)]], dtype=object)
    want, _ = compute_grpo_outcome_advantage(token_rewards, mask, index, norm_adv_by_std_in_grpo=True)
    advantages = list(data["advantages"].unbind())
    for i, length in enumerate(lengths):
        assert torch.allclose(advantages[i], want[i, :length], atol=1e-5)
    assert metrics["visplay/valid_rate"] == 6 / 8
    assert metrics["visplay/reward/mean"] == pytest.approx(np.mean(expected))
    tq.kv_clear(keys=batch.keys, partition_id="train")


@pytest.mark.slow
def test_agent_loop_layout_penalty_and_advantages(trainer):
    infos = _infos()
    batch = _put(*_agent_loop_samples(infos, with_reward=True), pad_to=5)  # 8 real + 2 padding copies of sample 0
    assert trainer._reward_info_layout() == "extra_fields"  # no reward_loop_manager yet: reward model in own pool
    metrics = {}
    trainer._compute_advantage(batch, metrics)
    _check_step(trainer, batch, infos, metrics)


@pytest.mark.slow
def test_colocated_layout_through_verls_reward_write_back(trainer):
    import ray
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    from verl_ext.plugins.reward_manager import QuestionerRewardManager

    infos = _infos()
    by_marker = {f"sample-{i}": info for i, info in enumerate(infos)}

    def score_chunk(chunk):
        out = []
        for messages in chunk.non_tensor_batch["raw_prompt"]:
            info = by_marker.get(messages[0]["content"], infos[0])  # verl pads chunks with copies
            out.append({"reward_score": info["vp_uncertainty"], "reward_extra_info": info})
        return ray.put(out)

    # verl's RewardLoopManager.compute_rm_score, run for real over a stand-in worker (the reward manager itself is
    # exercised through real RewardLoopWorkers in test_reward_manager_on_cpu.py)
    manager = types.SimpleNamespace(
        reward_model_manager=None,
        reward_loop_workers=[types.SimpleNamespace(compute_score_batch=types.SimpleNamespace(remote=score_chunk))],
        reward_manager_cls=QuestionerRewardManager,
        reward_loop_worker_handles=None,  # a colocated reward model: the trainer computes rewards
    )
    manager.compute_rm_score = types.MethodType(RewardLoopManager.compute_rm_score, manager)
    trainer.reward_loop_manager = manager
    try:
        keys, fields, tags = _agent_loop_samples(infos, with_reward=False)
        import transfer_queue as tq
        from transfer_queue import KVBatchMeta
        from verl.utils.tensordict_utils import list_of_dict_to_tensordict

        tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
        batch = KVBatchMeta(partition_id="train", keys=keys, tags=tags)
        batch = trainer._compute_reward_colocate(batch)  # verl writes rm_scores + one field per vp_* key
        from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size

        batch = upsample_batch_to_divisible_size(batch, 6, eos_token_id=0)
        assert trainer._reward_info_layout() == "fields"
        metrics = {}
        trainer._compute_advantage(batch, metrics)
        _check_step(trainer, batch, infos, metrics)
    finally:
        del trainer.reward_loop_manager


@pytest.mark.slow
def test_reasoner_stage_logs_reward_sub_scores(trainer):
    from omegaconf import open_dict

    infos = [{"score": 0.1 * i, "overall": 0.1 * i, "accuracy": float(i % 2), "format": 1.0} for i in range(8)]
    keys, fields, tags = _agent_loop_samples([{"vp_uncertainty": i["score"]} for i in infos], with_reward=True)
    for field, info in zip(fields, infos, strict=True):
        field["extra_fields"]["reward_extra_info"] = info
    batch = _put(keys, fields, tags, pad_to=8)
    with open_dict(trainer.config):
        trainer.config.visplay.stage = "reasoner"
    try:
        metrics = {}
        trainer._compute_advantage(batch, metrics)
    finally:
        with open_dict(trainer.config):
            trainer.config.visplay.stage = "questioner"
    assert metrics["visplay/reward_extra/accuracy/mean"] == 0.5
    assert metrics["visplay/reward_extra/format/mean"] == 1.0
    import transfer_queue as tq

    scores = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["rm_scores"])["rm_scores"]
    assert [float(r.sum()) for r in scores.unbind()] == pytest.approx([i["score"] for i in infos])  # untouched
    tq.kv_clear(keys=batch.keys, partition_id="train")


@pytest.mark.slow
def test_task_runner_registers_the_trainer_inside_its_actor(trainer, monkeypatch):
    import ray

    from verl_ext.plugins.main_visplay import VisPlayTaskRunner

    # under `python -m verl_ext.plugins.main_visplay` the class lives in __main__, so Ray pickles it by value and none
    # of our module-level imports run in the actor: registration must happen in `run` (register_plugins)
    monkeypatch.setattr(VisPlayTaskRunner, "__module__", "__main__")

    def probe(self):
        import sys

        from verl.trainer.ppo.v1 import get_trainer_cls

        imported_before = "verl_ext.plugins.trainer" in sys.modules
        self.register_plugins()
        return imported_before, get_trainer_cls("visplay_sync").__name__

    actor = ray.remote(VisPlayTaskRunner).options(num_cpus=0).remote()
    try:
        assert ray.get(actor.__ray_call__.remote(probe), timeout=180) == (False, "VisPlayTrainer")
    finally:
        ray.kill(actor)
    assert trainer.trainer_mode == "sync" and trainer.registered_mode == "visplay_sync"
    assert type(trainer.replay_buffer).__name__ == "ReplayBuffer"  # the sync buffer, not the async one
