"""Rollout name `hf`: Hugging Face `generate` behind verl 0.9.1's rollout interfaces, for CPU runs.

verl knows only vllm/sglang/trtllm (its `hf_rollout.py` and `naive/` are not reachable from the V1 trainer), and
the CPU wheels of vLLM do not fit this environment. Three pieces, each answering one verl interface:
- `HFGenerateServer`, a Ray actor with the server methods verl's LLMServerClient and replicas call
  (verl/workers/rollout/llm_server.py:150 `server.generate.remote(...)` -> replica.TokenOutput; wake_up/sleep/...
  from replica.py:277-311). One request at a time, batch size 1: prompt ids are already expanded with image
  placeholders by the agent loop, so `generate` needs only the images' pixel values.
- `HFReplica(RolloutReplica)`: registered in RolloutReplicaRegistry (replica.py:312) as `hf`; `launch_servers`
  starts one server per replica (replica.py:242, abstract).
- `HFServerAdapter(BaseRollout)`: the worker-side rollout verl builds inside the hybrid actor
  (engine_workers.py:667 get_rollout_class; registry rollout/base.py:89). verl's naive weight sync
  (engine_workers.py:728 update_weights) hands it the trainer's full tensors; it ships them to the server.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import ray
import torch
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry, TokenOutput

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "WARN"))

ROLLOUT_NAME = "hf"


def server_name(replica_rank: int) -> str:
    return f"visplay_hf_rollout_server_{replica_rank}"


class HFGenerateServer:
    """One HF model generating for verl's agent loop; receives the trainer's weights after every update."""

    def __init__(self, model_path: str, response_length: int, seed: int = 0, trust_remote_code: bool = False):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        torch.set_num_threads(1)
        self.processor = AutoProcessor.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForImageTextToText.from_pretrained(
            model_path, torch_dtype=torch.float32, trust_remote_code=trust_remote_code
        ).eval()
        self.response_length = int(response_length)
        self.generator_seed = int(seed)
        torch.manual_seed(self.generator_seed)
        tokenizer = self.processor.tokenizer
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))
        self.global_steps: int | None = None
        self.weight_updates = 0
        self.requests = 0

    # -- what LLMServerClient calls ------------------------------------------------------------------
    def generate(
        self, request_id: str, prompt_ids: list[int], sampling_params: dict, image_data=None, video_data=None, **_
    ) -> TokenOutput:
        if video_data:
            raise NotImplementedError("the hf rollout handles images only")
        self.requests += 1
        inputs = {"input_ids": torch.tensor([list(prompt_ids)], dtype=torch.long)}
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        if image_data:
            pixels = self.processor.image_processor(images=list(image_data), return_tensors="pt")
            inputs["pixel_values"] = pixels["pixel_values"]
            inputs["image_grid_thw"] = pixels["image_grid_thw"]
        max_new = int(sampling_params.get("max_tokens") or sampling_params.get("max_new_tokens") or 0)
        max_new = min(max_new, self.response_length) if max_new > 0 else self.response_length
        temperature = float(sampling_params.get("temperature", 1.0))
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self.pad_id}
        if temperature > 0:
            top_k = int(sampling_params.get("top_k", -1) or -1)
            kwargs.update(do_sample=True, temperature=temperature, top_p=float(sampling_params.get("top_p", 1.0)))
            kwargs["top_k"] = top_k if top_k > 0 else None
        else:
            kwargs["do_sample"] = False
        with torch.no_grad():
            out = self.model.generate(**inputs, **kwargs, output_logits=True, return_dict_in_generate=True)
        tokens = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
        stop = "length"
        for i, token in enumerate(tokens):
            if token in self.eos_ids:
                tokens, stop = tokens[: i + 1], "completed"
                break
        log_probs = None
        if sampling_params.get("logprobs"):
            # the sampled tokens' log-probabilities under logits / temperature, as verl's actor computes them
            scale = temperature if temperature > 0 else 1.0
            log_probs = [
                float(torch.log_softmax(out.logits[i][0].float() / scale, dim=-1)[token])
                for i, token in enumerate(tokens)
            ]
        extra = {"global_steps": self.global_steps}
        return TokenOutput(token_ids=tokens, log_probs=log_probs, stop_reason=stop, extra_fields=extra)

    def load_weights(self, named_tensors: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Copy the trainer's weights in; returns how many tensors matched (0 would mean a naming mismatch)."""
        own = self.model.state_dict()
        matched = {k: v for k, v in named_tensors.items() if k in own}
        if not matched:
            raise RuntimeError(
                f"hf rollout: none of the {len(named_tensors)} trainer weights match the model's names "
                f"(trainer {sorted(named_tensors)[:3]}..., model {sorted(own)[:3]}...)"
            )
        self.model.load_state_dict(matched, strict=False)
        self.global_steps = global_steps
        self.weight_updates += 1
        return len(matched)

    def stats(self) -> dict:
        return {"requests": self.requests, "weight_updates": self.weight_updates, "global_steps": self.global_steps}

    # -- lifecycle calls verl makes on every server (nothing to free on the CPU) -----------------------
    def wake_up(self, *_, **__):
        return None

    def sleep(self, *_, **__):
        return None

    def clear_kv_cache(self, *_, **__):
        return None

    def release_kv_cache(self, *_, **__):
        return None

    def resume_kv_cache(self, *_, **__):
        return None

    def abort_all_requests(self, *_, **__):
        return None

    def resume_generation(self, *_, **__):
        return None

    def start_profile(self, *_, **__):
        return None

    def stop_profile(self, *_, **__):
        return None


class HFReplica(RolloutReplica):
    """A rollout replica whose server is one `HFGenerateServer` actor (no GPU, no placement group)."""

    async def launch_servers(self):
        name = server_name(self.replica_rank)
        model = self.model_config  # the actor_rollout_ref.model DictConfig (a local path on CPU runs)
        actor = (
            ray.remote(HFGenerateServer)
            .options(name=name, num_cpus=0, max_concurrency=1)
            .remote(
                model.get("local_path") or model.path,
                self.config.response_length,
                seed=self.replica_rank,
                trust_remote_code=bool(model.get("trust_remote_code", False)),
            )
        )
        await actor.stats.remote()  # wait until the model is loaded
        self.servers = [actor]
        self._server_handle = actor
        self._server_address = f"hf://{name}"

    def rollout_worker_use_gpu(self) -> bool:
        return False


class HFServerAdapter(BaseRollout):
    """Worker-side half: forwards the trainer's weights to this replica's HF server after each update."""

    def __init__(self, config, model_config, device_mesh, *args, **kwargs):
        super().__init__(config, model_config, device_mesh)
        tp = self.config.tensor_model_parallel_size * self.config.data_parallel_size
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.replica_rank = rank // max(1, tp * self.config.pipeline_model_parallel_size)
        self.is_leader = rank % max(1, tp) == 0
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(self, weights, wire_format: str = "named_tensors", **kwargs):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout: weight wire format {wire_format!r}")
        state = {}
        for name, tensor in weights:
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = full.detach().to("cpu", copy=True)
        if self.is_leader:
            await self._server_handle().load_weights.remote(state, kwargs.get("global_steps"))


def register() -> None:
    """Make `actor_rollout_ref.rollout.name=hf` resolvable in this process."""
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = f"{__name__}.HFServerAdapter"
    RolloutReplicaRegistry.register(ROLLOUT_NAME, lambda: HFReplica)
