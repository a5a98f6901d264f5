"""Batched image+text inference engines shared by the loop's offline stages and by evaluation: Hugging Face
`generate` (CPU or GPU) and vLLM (GPU). torch, transformers and vLLM are imported only inside the engines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sampling:
    n: int
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int


@dataclass
class Request:
    prompt: str  # the user text; the image goes before it in the same user message (as in training)
    image: object  # PIL image


def sample_seed(request_seed: int, j: int) -> int:
    """The seed of sample j of a request: a pure function of the request's own seed (never of its batch)."""
    digest = hashlib.sha256(f"{request_seed}/{j}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFFFFFFFFFF


def seeded_sampler(torch, seeds: list[int], sampling: Sampling):
    """A transformers logits processor that samples each row from its own generator (temperature, top-k, top-p as
    HF's warpers apply them) and leaves only the drawn token: greedy decoding over its output is per-row seeded
    sampling, so a row's text depends on its seed and prompt, not on which rows share its batch."""
    from transformers import LogitsProcessor

    class SeededSampler(LogitsProcessor):
        def __init__(self):
            self.generators = None

        def __call__(self, input_ids, scores):
            if self.generators is None:
                self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in seeds]
            logits = scores.float() / sampling.temperature
            if sampling.top_k > 0:
                kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if sampling.top_p < 1.0:
                sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
                cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
                drop = cumulative <= (1 - sampling.top_p)
                drop[..., -1:] = False  # keep at least the most likely token
                logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
            probs = logits.softmax(dim=-1)
            chosen = torch.stack([torch.multinomial(probs[r], 1, generator=g) for r, g in enumerate(self.generators)])
            return torch.full_like(scores, float("-inf")).scatter_(-1, chosen, 0.0)

    return SeededSampler()


# --------------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------------


def chat_messages(prompt: str) -> list[dict]:
    # The chat verl's datasets build (verl_ext.plugins.datasets._build_messages): image first, then the text.
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


class HFEngine:
    """transformers `generate`, batched; float32 on CPU, bfloat16 on GPU."""

    def __init__(self, model: str, trust_remote_code: bool = False, batch_size: int = 8):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.processor = AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(
            model, dtype=dtype, trust_remote_code=trust_remote_code
        ).to(self.device)
        self.model.eval()
        self.batch_size = batch_size

    def text_tokens(self, prompt: str) -> int:
        """Tokens of a request's text alone (the chat template and image are counted by image_io.prompt_tokens)."""
        return len(self.processor.tokenizer.encode(prompt, add_special_tokens=False))

    def sample(self, requests: list[Request], sampling: Sampling, seed: int | Sequence[int]) -> list[list[str]]:
        """`n` samples per request. `seed`: one seed per request (each row sampled from its own generator: the
        texts do not depend on batching), or one int for the whole call (torch's global generator)."""
        if not isinstance(seed, int):
            return self._sample_per_request(requests, sampling, list(seed))
        torch = self.torch
        torch.manual_seed(seed)  # one seed per shard; batches run in a fixed order, so a shard is reproducible
        out: list[list[str]] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            texts = [
                self.processor.apply_chat_template(chat_messages(r.prompt), add_generation_prompt=True, tokenize=False)
                for r in batch
            ]
            inputs = self.processor(
                text=texts, images=[[r.image] for r in batch], padding=True, return_tensors="pt"
            ).to(self.device)
            with torch.no_grad():
                generated = self.model.generate(
                    **inputs,
                    do_sample=True,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    top_k=max(sampling.top_k, 0),  # 0 = off (not the model's generation_config default)
                    max_new_tokens=sampling.max_new_tokens,
                    num_return_sequences=sampling.n,
                )
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
            out.extend(decoded[i * sampling.n : (i + 1) * sampling.n] for i in range(len(batch)))
        return out

    def _inputs(self, batch: list[Request], copies: int):
        texts = [
            self.processor.apply_chat_template(chat_messages(r.prompt), add_generation_prompt=True, tokenize=False)
            for r in batch
            for _ in range(copies)
        ]
        images = [[r.image] for r in batch for _ in range(copies)]
        return self.processor(text=texts, images=images, padding=True, return_tensors="pt").to(self.device)

    def _sample_per_request(self, requests: list[Request], sampling: Sampling, seeds: list[int]):
        import copy

        from transformers import LogitsProcessorList

        torch, n = self.torch, sampling.n
        if len(seeds) != len(requests):
            raise ValueError(f"{len(seeds)} seeds for {len(requests)} requests")
        config = copy.deepcopy(self.model.generation_config)
        config.do_sample, config.num_beams, config.num_return_sequences = False, 1, 1
        config.temperature = config.top_p = config.top_k = None  # the sampler applies the request's own
        config.max_new_tokens = sampling.max_new_tokens
        out: list[list[str]] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            inputs = self._inputs(batch, n)  # each request n times: one row per sample
            row_seeds = [sample_seed(s, j) for s in seeds[start : start + len(batch)] for j in range(n)]
            sampler = seeded_sampler(torch, row_seeds, sampling)
            with torch.no_grad():
                generated = self.model.generate(
                    **inputs, generation_config=config, logits_processor=LogitsProcessorList([sampler])
                )
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
            out.extend(decoded[i * n : (i + 1) * n] for i in range(len(batch)))
        return out


class VLLMEngine:
    """vLLM offline `LLM` on the GPUs this process sees (tensor parallel inside, data parallel across processes)."""

    def __init__(self, model: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.8,
                 trust_remote_code: bool = False, max_model_len: int | None = None):  # fmt: skip
        from transformers import AutoProcessor
        from vllm import LLM

        self.processor = AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.llm = LLM(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            trust_remote_code=trust_remote_code,
            max_model_len=max_model_len,
            limit_mm_per_prompt={"image": 1},
        )

    def text_tokens(self, prompt: str) -> int:
        """Tokens of a request's text alone (the chat template and image are counted by image_io.prompt_tokens)."""
        return len(self.processor.tokenizer.encode(prompt, add_special_tokens=False))

    def sample(self, requests: list[Request], sampling: Sampling, seed: int | Sequence[int]) -> list[list[str]]:
        from vllm import SamplingParams

        seeds = [(seed + i) & 0x7FFFFFFF for i in range(len(requests))] if isinstance(seed, int) else list(seed)

        prompts = [
            {
                "prompt": self.processor.apply_chat_template(
                    chat_messages(r.prompt), add_generation_prompt=True, tokenize=False
                ),
                "multi_modal_data": {"image": r.image},
            }
            for r in requests
        ]
        # A seed per request: results do not depend on how vLLM batches them (vLLM seeds sample j from it).
        params = [
            SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                max_tokens=sampling.max_new_tokens,
                seed=s,
            )
            for s in seeds
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[o.text for o in out.outputs] for out in outputs]
