"""The questioner reward manager driven by verl 0.9.1's own RewardLoopManager / RewardLoopWorker actors under a
local Ray on CPU, the frozen reasoner being the tiny Qwen2.5-VL behind the OpenAI-compatible test server.

Two hosting modes, as verl wires them:
- verl-hosted, colocated (reward.reward_model.enable=True): RewardLoopManager starts a RewardModelManager and
  hands the workers its router address; the trainer calls compute_rm_score (wake, score, sleep). vLLM needs a GPU,
  so the RewardModelManager is replaced by one that puts verl's real NaiveRouter in front of the test server; the
  rest (router, worker routing through custom_reward_function.path, rm_scores assembly) is verl's code.
- a user's endpoint (enable=False, visplay.reasoner.base_url): the agent loop calls a worker's compute_score per
  rollout (the path AgentLoopWorker._compute_score takes).
"""

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import verl_ext
from verl_ext.plugins.reasoner_client import ReasonerClient
from verl_ext.plugins.reward_manager import EXTRA_INFO_KEYS, QuestionerRewardSettings, find_image, score_question
from verl_ext.plugins.trainer import PenaltySettings, compute_questioner_rewards
from verl_ext.visplay import questioner_reward

CONFIG_DIR = Path(verl_ext.__file__).resolve().parent / "plugins" / "config"
QUESTION = "<type>numerical</type><question>How many shapes are in the image?</question><answer>3</answer>"
ROLLOUTS = [
    QUESTION,
    "Thinking...\n" + QUESTION,  # the same question: one cluster of two
    "<type>bogus</type><question>?</question>",  # garbled: no valid block
    "",  # an empty rollout (only the end-of-turn token)
]


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="questioner", overrides=overrides)


def _base_overrides(tiny_vlm_path):
    return [
        f"actor_rollout_ref.model.path={tiny_vlm_path}",
        "reward.num_workers=1",
        "visplay.reasoner.num_samples=3",
        "visplay.reasoner.max_tokens=12",
        "visplay.reasoner.max_retries=1",
        "visplay.reasoner.timeout_s=120",
    ]


@pytest.fixture(scope="module")
def tokenizer(tiny_vlm_path):
    from verl.utils import hf_tokenizer

    return hf_tokenizer(str(tiny_vlm_path))


@pytest.fixture(scope="module")
def rollout_batch(tiny_vlm_path, tokenizer, image_parquet, tmp_path_factory):
    """A DataProto shaped like the one verl's reward path receives: prompts | responses, attention mask, and the
    dataset's raw_prompt (with its PIL image) per row."""
    from verl import DataProto
    from verl.utils import hf_processor

    from verl_ext.plugins.datasets import QuestionerDataset

    config = OmegaConf.create(
        {"cache_dir": str(tmp_path_factory.mktemp("c")), "min_pixels": 3136, "max_pixels": 12544}
    )
    dataset = QuestionerDataset(
        data_files=[str(image_parquet)], tokenizer=tokenizer, processor=hf_processor(str(tiny_vlm_path)), config=config
    )
    raw_prompts = np.empty(len(ROLLOUTS), dtype=object)
    raw_prompts[:] = [dataset[i // 2]["raw_prompt"] for i in range(len(ROLLOUTS))]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    responses = [tokenizer.encode(text, add_special_tokens=False) + [eos] for text in ROLLOUTS]
    width = max(len(r) for r in responses)
    response_ids = torch.full((len(responses), width), tokenizer.pad_token_id, dtype=torch.int64)
    response_mask = torch.zeros_like(response_ids)
    for i, ids in enumerate(responses):
        response_ids[i, : len(ids)] = torch.tensor(ids)
        response_mask[i, : len(ids)] = 1
    prompts = torch.full((len(responses), 6), 7, dtype=torch.int64)
    attention_mask = torch.cat([torch.ones_like(prompts), response_mask], dim=1)
    data = DataProto.from_dict(
        tensors={"prompts": prompts, "responses": response_ids, "attention_mask": attention_mask},
        non_tensors={"raw_prompt": raw_prompts},
    )
    return data, [len(r) for r in responses]


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _check_infos(infos):
    assert [i["vp_valid"] for i in infos] == [1.0, 1.0, 0.0, 0.0]
    assert [i["vp_question"] for i in infos] == ["How many shapes are in the image?"] * 2 + ["", ""]
    assert [i["vp_type"] for i in infos] == ["numerical", "numerical", "", ""]
    assert [i["vp_num_samples"] for i in infos] == [3, 3, 0, 0]
    assert all(i["vp_num_requested"] == 3 and i["vp_reasoner_failed"] == 0.0 for i in infos)
    assert [i["vp_empty_response"] for i in infos] == [0.0, 0.0, 0.0, 1.0]
    assert all(i["vp_image_missing"] == 0.0 for i in infos)
    for info in infos[:2]:
        # the random tiny reasoner rarely boxes an answer: p is whatever the vote says, in steps of 1/m
        assert info["vp_confidence"] in (0.0, 1 / 3, 2 / 3, 1.0)
        assert info["vp_num_unparsed"] + round(info["vp_confidence"] * 3) <= 3
        assert info["vp_uncertainty"] == questioner_reward(info["vp_confidence"], 0.0, True)


@pytest.mark.slow
def test_verl_hosted_colocated_reasoner_through_verls_router(
    local_ray, tiny_vlm_path, tiny_vlm_server, rollout_batch, monkeypatch
):
    import verl.experimental.reward_loop.reward_loop as reward_loop
    from verl.experimental.reward_loop.router.naive_router import launch_router_process

    calls = []

    class RouterOnlyRewardModelManager:
        """Stands in for verl's RewardModelManager (which starts vLLM replicas): verl's own router, in front of
        the OpenAI-compatible test server instead of vLLM."""

        def __init__(self, config, resource_pool=None):
            server_root = tiny_vlm_server[: -len("/v1")]
            self.address, self.process = launch_router_process(worker_urls=[server_root])

        def get_router_address(self):
            return self.address

        def wake_up(self):
            calls.append("wake_up")

        def sleep(self):
            calls.append("sleep")

    monkeypatch.setattr(reward_loop, "RewardModelManager", RouterOnlyRewardModelManager)
    config = _compose(
        _base_overrides(tiny_vlm_path)
        + [
            "reward.reward_model.enable=true",
            "reward.reward_model.enable_resource_pool=false",
            "reward.reward_model.rollout.free_cache_engine=true",
        ]
    )
    manager = reward_loop.RewardLoopManager(config)
    try:
        assert manager.reward_loop_worker_handles is None  # colocated: the trainer calls compute_rm_score
        data, lengths = rollout_batch
        output = manager.compute_rm_score(data)
    finally:
        for worker in manager.reward_loop_workers:
            local_ray.kill(worker)
        manager.reward_model_manager.process.terminate()
        manager.reward_model_manager.process.join(10)
    assert calls == ["wake_up", "sleep"]
    assert output.meta_info["reward_extra_keys"] == list(EXTRA_INFO_KEYS)
    infos = [{k: output.non_tensor_batch[k][i] for k in EXTRA_INFO_KEYS} for i in range(len(ROLLOUTS))]
    _check_infos(infos)
    scores = output.batch["rm_scores"]
    for i, length in enumerate(lengths):  # verl puts the score on the last valid response token
        assert float(scores[i, length - 1]) == pytest.approx(infos[i]["vp_uncertainty"])
        assert float(scores[i].abs().sum()) == pytest.approx(abs(infos[i]["vp_uncertainty"]))
    # the trainer hook's batch step on exactly these infos: the duplicates share a cluster (2/B); invalid rollouts
    # enter as "" and BLEU("", "") = 0, so each is its own cluster (1/B), as in the reference code
    outcome = compute_questioner_rewards(infos, PenaltySettings())
    assert outcome.penalties == [0.5, 0.5, 0.25, 0.25]
    assert outcome.rewards[2:] == [0.0, 0.0]
    assert outcome.rewards[0] == questioner_reward(infos[0]["vp_confidence"], 0.5, True)


@pytest.mark.slow
def test_user_endpoint_through_a_reward_loop_worker(local_ray, tiny_vlm_path, tiny_vlm_server, rollout_batch):
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    config = _compose(
        _base_overrides(tiny_vlm_path)
        + [
            "reward.reward_model.enable=false",
            f"visplay.reasoner.base_url={tiny_vlm_server}",
            "visplay.reward.mode=reference",
        ]
    )
    manager = RewardLoopManager(config)
    try:
        handles = manager.reward_loop_worker_handles
        assert handles is not None  # rewards are computed by the agent loop, per rollout, while rolling out
        data, _ = rollout_batch
        results = local_ray.get([handles[0].compute_score.remote(data[i : i + 1]) for i in range(len(ROLLOUTS))])
    finally:
        for worker in manager.reward_loop_workers:
            local_ray.kill(worker)
    infos = [r["reward_extra_info"] for r in results]
    assert all(list(info) == list(EXTRA_INFO_KEYS) for info in infos)
    _check_infos([{**i, "vp_uncertainty": questioner_reward(i["vp_confidence"], 0, i["vp_valid"])} for i in infos])
    assert [r["reward_score"] for r in results][2:] == [-1.0, -1.0]  # reference mode: invalid -> -1 (before penalty)


def test_manager_refuses_a_config_verl_would_route_past_it(tiny_vlm_path, tokenizer):
    from verl_ext.plugins.reward_manager import QuestionerRewardManager

    config = _compose(_base_overrides(tiny_vlm_path) + ["reward.custom_reward_function.path=null"])
    with pytest.raises(ValueError, match="custom_reward_function.path"):
        QuestionerRewardManager(config, tokenizer, None, reward_router_address="127.0.0.1:1")
    config = _compose(_base_overrides(tiny_vlm_path) + ["visplay.reward.mode=other"])
    with pytest.raises(ValueError, match="visplay.reward.mode"):
        QuestionerRewardManager(config, tokenizer, None, reward_router_address="127.0.0.1:1")


def test_bad_rollouts_and_a_dead_reasoner_have_clear_rules(synthetic_images):
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ReasonerClient(
        base_url=f"http://127.0.0.1:{port}/v1", model="m", num_samples=4, max_retries=1, backoff_s=0.01
    )
    settings = QuestionerRewardSettings()
    image = synthetic_images[0][0]

    async def run():
        try:
            return await asyncio.gather(
                score_question(QUESTION, image, client, settings),
                score_question("\x00\x01 garbage", image, client, settings),
                score_question(None, image, client, settings),
                score_question(QUESTION, None, client, settings),
            )
        finally:
            await client.aclose()

    dead, garbled, none, no_image = asyncio.run(run())
    assert dead["vp_valid"] == 1.0 and dead["vp_reasoner_failed"] == 1.0 and "unreachable" in dead["vp_reasoner_error"]
    assert dead["vp_confidence"] == 0.0 and dead["vp_num_samples"] == 0
    assert garbled["vp_valid"] == 0.0 and garbled["vp_reasoner_failed"] == 0.0 and garbled["vp_attempts"] == 0
    assert none["vp_valid"] == 0.0 and none["vp_empty_response"] == 1.0
    assert no_image["vp_image_missing"] == 1.0
    # a dead reasoner fails the step in the trainer hook: never a silent zero reward
    from verl_ext.plugins.reasoner_client import ReasonerEndpointError

    with pytest.raises(ReasonerEndpointError, match="unreachable"):
        compute_questioner_rewards([dead, garbled], PenaltySettings())


def test_find_image_accepts_verl_message_shapes(synthetic_images):
    image = synthetic_images[0][0]
    assert (
        find_image([{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image", "image": image}]}])
        is image
    )
    assert find_image([{"role": "user", "content": [{"type": "image", "image_url": {"url": "data:x"}}]}]) == "data:x"
    assert find_image([{"role": "user", "content": "text only"}]) is None
    assert find_image(None) is None
