"""Batched sampling with HF `generate`: many (prompt, image) requests, n completions each, seeded per batch.

The local backend's one sampler: question generation, pseudo-labelling, the frozen reasoner inside the questioner
reward and the warm-up's parse-rate check all call `sample`. Never one image per call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .models import chat_text, suppressed_token_ids


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # completions per request
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 (or 0) = off
    max_new_tokens: int = 64


def batch_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"sample/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def generation_config(model, processor, params: SamplingParams):
    """Exactly the recipe's sampling: only token ids come from the model's own generation config."""
    from transformers import GenerationConfig

    tokenizer = processor.tokenizer
    own = model.generation_config
    eos = own.eos_token_id if own.eos_token_id is not None else tokenizer.eos_token_id
    pad = own.pad_token_id if own.pad_token_id is not None else tokenizer.pad_token_id
    return GenerationConfig(
        do_sample=True,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k > 0 else 0,
        max_new_tokens=params.max_new_tokens,
        num_return_sequences=params.n,
        eos_token_id=eos,
        pad_token_id=pad if pad is not None else (eos[0] if isinstance(eos, list) else eos),
        suppress_tokens=suppressed_token_ids(tokenizer) or None,
    )


def sample(
    model,
    processor,
    prompts: Sequence[str],
    images: Sequence[Any] | None,
    params: SamplingParams,
    *,
    seed: int = 0,
    batch_size: int = 16,
) -> list[list[str]]:
    """`params.n` completions (special tokens stripped) for each user instruction in `prompts`, with its image.

    `images[i]` is a PIL image (or None for all: text-only). Requests go `batch_size` at a time; batch k samples under
    its own seed derived from (`seed`, k), so a given request list and seed always give the same texts, whatever else
    the process did before.
    """
    import torch

    if images is not None and len(images) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    if not prompts:
        return []
    with_image = images is not None
    gen_config = generation_config(model, processor, params)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[list[str]] = []
    try:
        for k, start in enumerate(range(0, len(prompts), batch_size)):
            texts = [chat_text(processor, p, with_image) for p in prompts[start : start + batch_size]]
            kwargs = {"text": texts, "return_tensors": "pt", "padding": True, "padding_side": "left"}
            if with_image:
                kwargs["images"] = [[image] for image in images[start : start + batch_size]]
            enc = processor(**kwargs).to(device)
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(batch_seed(seed, k))
                generated = model.generate(**enc, generation_config=gen_config)
            decoded = processor.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            n = params.n
            out.extend(decoded[i * n : (i + 1) * n] for i in range(len(texts)))
    finally:
        model.train(was_training)
    return out
