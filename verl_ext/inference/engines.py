"""Batched image+text inference engines shared by the loop's offline stages and by evaluation: Hugging Face
`generate` (CPU or GPU) and vLLM (GPU). torch, transformers and vLLM are imported only inside the engines.
"""

from __future__ import annotations

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

    def sample(self, requests: list[Request], sampling: Sampling, seed: int) -> list[list[str]]:
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

    def sample(self, requests: list[Request], sampling: Sampling, seed: int) -> list[list[str]]:
        from vllm import SamplingParams

        prompts = [
            {
                "prompt": self.processor.apply_chat_template(
                    chat_messages(r.prompt), add_generation_prompt=True, tokenize=False
                ),
                "multi_modal_data": {"image": r.image},
            }
            for r in requests
        ]
        # A seed per request: results do not depend on how vLLM batches them.
        params = [
            SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                max_tokens=sampling.max_new_tokens,
                seed=(seed + i) & 0x7FFFFFFF,
            )
            for i in range(len(requests))
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[o.text for o in out.outputs] for out in outputs]
