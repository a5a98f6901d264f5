"""Greedy decoding of benchmark prompts with the reasoner prompt, on the loop's own inference engines.

`hf`: `verl_ext.inference.engines.HFEngine` (model + processor as generation and pseudo-labelling load them), batched
`generate` with sampling off. `vllm`: `engines.VLLMEngine` at temperature 0, run in a child process per checkpoint
(`python -m verl_ext.eval.generate`), so each checkpoint's GPU memory is returned when it ends. Images go through
`verl_ext.image_io.load_image` with the run's pixel bounds; a question with several images (MMMU) gets them side by
side in one image, as the single-image engines and the reasoner's training prompt expect.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_MAX_NEW_TOKENS = 2048


@dataclass
class GenerationConfig:
    engine: str = "auto"  # auto: vllm when a GPU and vllm are there, else hf
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    min_pixels: int = 262144
    max_pixels: int = 4194304
    batch_size: int = 8
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.8
    max_model_len: int | None = None
    trust_remote_code: bool = False
    prompt_template: str | None = None  # the reasoner's Jinja template (None: the packaged default)

    def resolved_engine(self) -> str:
        if self.engine != "auto":
            return self.engine
        try:
            import torch

            if not torch.cuda.is_available():
                return "hf"
            import vllm  # noqa: F401
        except ImportError:
            return "hf"
        return "vllm"

    def output_key(self) -> dict:
        """Settings that change the decoded text (cache key): not batch size, not the engine's memory knobs."""
        return {"max_new_tokens": self.max_new_tokens, "min_pixels": self.min_pixels, "max_pixels": self.max_pixels}


def render_prompt(question: str, cfg: GenerationConfig, question_type: str | None = None) -> str:
    from verl_ext.prompts import render_reasoner_prompt

    return render_reasoner_prompt(question, cfg.prompt_template, question_type)


def combine_images(images: list, cfg: GenerationConfig):
    """One RGB image within the pixel bounds: the image itself, or several side by side at a common height."""
    from PIL import Image

    from verl_ext.image_io import load_image

    loaded = [load_image(img, cfg.min_pixels, cfg.max_pixels) for img in images]
    if len(loaded) == 1:
        return loaded[0]
    height = max(im.height for im in loaded)
    scaled = [
        im if im.height == height else im.resize((max(1, round(im.width * height / im.height)), height))
        for im in loaded
    ]
    gap = max(4, height // 50)
    canvas = Image.new("RGB", (sum(im.width for im in scaled) + gap * (len(scaled) - 1), height), (255, 255, 255))
    x = 0
    for im in scaled:
        canvas.paste(im, (x, 0))
        x += im.width + gap
    return load_image(canvas, cfg.min_pixels, cfg.max_pixels)


# --------------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------------


class HFGreedy:
    """Greedy, batched HF `generate` on the model `engines.HFEngine` loads (float32 on CPU, bfloat16 on GPU)."""

    def __init__(self, model_path: str, cfg: GenerationConfig):
        from verl_ext.inference.engines import HFEngine

        self.cfg = cfg
        self.engine = HFEngine(model_path, trust_remote_code=cfg.trust_remote_code, batch_size=cfg.batch_size)
        gen = copy.deepcopy(self.engine.model.generation_config)
        gen.do_sample, gen.num_beams, gen.num_return_sequences = False, 1, 1
        gen.temperature = gen.top_p = gen.top_k = None  # sampling knobs of the model's defaults would only warn
        gen.max_new_tokens = cfg.max_new_tokens
        self.generation_config = gen

    def __call__(self, prompts: list[str], images: list) -> list[str]:
        from verl_ext.inference.engines import chat_messages

        eng, torch = self.engine, self.engine.torch
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
        out: dict[int, str] = {}
        for start in range(0, len(order), self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            texts = [
                eng.processor.apply_chat_template(
                    chat_messages(prompts[i]), add_generation_prompt=True, tokenize=False
                )
                for i in idx
            ]
            inputs = eng.processor(
                text=texts, images=[[images[i]] for i in idx], padding=True, return_tensors="pt"
            ).to(eng.device)
            with torch.no_grad():
                generated = eng.model.generate(**inputs, generation_config=self.generation_config)
            decoded = eng.processor.batch_decode(
                generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            )
            out.update(zip(idx, decoded, strict=True))
        return [out[i] for i in range(len(prompts))]

    def close(self) -> None:
        del self.engine


class VLLMGreedy:
    def __init__(self, model_path: str, cfg: GenerationConfig):
        from verl_ext.inference.engines import VLLMEngine

        self.cfg = cfg
        self.engine = VLLMEngine(
            model_path,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            trust_remote_code=cfg.trust_remote_code,
            max_model_len=cfg.max_model_len,
        )

    def __call__(self, prompts: list[str], images: list) -> list[str]:
        from verl_ext.inference.engines import Request, Sampling

        requests = [Request(p, im) for p, im in zip(prompts, images, strict=True)]
        greedy = Sampling(n=1, temperature=0.0, top_p=1.0, top_k=-1, max_new_tokens=self.cfg.max_new_tokens)
        return [texts[0] if texts else "" for texts in self.engine.sample(requests, greedy, seed=0)]

    def close(self) -> None:
        del self.engine


def make_generator(model_path: str, cfg: GenerationConfig):
    engine = cfg.resolved_engine()
    if engine == "hf":
        return HFGreedy(model_path, cfg)
    if engine == "vllm":
        return VLLMGreedy(model_path, cfg)
    raise ValueError(f"unknown engine {engine!r} (hf | vllm | auto)")


# --------------------------------------------------------------------------------------------------
# A checkpoint's pending requests: in this process (hf) or a child process (vllm)
# --------------------------------------------------------------------------------------------------


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def generate_for_checkpoint(model_path: str, cfg: GenerationConfig, prompts: list[str], images: list, log=print):
    """Greedy responses for (prompt, prepared image) pairs. vLLM runs in a child process, HF in this one."""
    if not prompts:
        return []
    engine = cfg.resolved_engine()
    if engine == "hf":
        gen = HFGreedy(model_path, cfg)
        try:
            return gen(prompts, images)
        finally:
            gen.close()
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="visplay-eval-") as tmp:
        req, resp = Path(tmp) / "requests.parquet", Path(tmp) / "responses.jsonl"
        pq.write_table(pa.table({"prompt": prompts, "image": [_png(im) for im in images]}), req)
        cmd = [
            sys.executable,
            "-m",
            "verl_ext.eval.generate",
            "--model",
            model_path,
            "--requests",
            str(req),
            "--out",
            str(resp),
            "--config",
            json.dumps(asdict(cfg)),
        ]
        log(f"[eval] {engine}: {len(prompts)} prompts in a child process ({model_path})")
        code = subprocess.call(cmd)
        if code:
            raise RuntimeError(f"generation for {model_path} exited with {code}")
        return [json.loads(line)["response"] for line in resp.read_text().splitlines()]


def _child(argv: list[str]) -> int:
    import pyarrow.parquet as pq

    from verl_ext.image_io import decode_rgb

    p = argparse.ArgumentParser(prog="python -m verl_ext.eval.generate", description="greedy decoding (internal)")
    p.add_argument("--model", required=True)
    p.add_argument("--requests", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config", required=True, help="GenerationConfig as JSON")
    args = p.parse_args(argv)
    cfg = GenerationConfig(**json.loads(args.config))
    table = pq.read_table(args.requests).to_pydict()
    images = [decode_rgb(b) for b in table["image"]]  # already fitted by the parent: decoded, not resized
    gen = make_generator(args.model, cfg)
    responses = gen(table["prompt"], images)
    tmp = f"{args.out}.tmp"
    with open(tmp, "w") as f:
        for r in responses:
            f.write(json.dumps({"response": r}) + "\n")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
