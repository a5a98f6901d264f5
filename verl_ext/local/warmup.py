"""Format warm-up: a short supervised fine-tune that teaches a random tiny VLM the two output formats.

A randomly initialised model never writes `<type>..</type><question>..</question><answer>..</answer>` nor `\\boxed{}`,
so every stage after it would be empty. Targets are templated from the synthetic scenes of the test kit (counts,
colours, bar charts) in both roles. Built once per input hash into the cache, written to a temp dir then renamed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from verl_ext.atomic_io import seal_dir, seal_problem
from verl_ext.prompts import (
    DEFAULT_QUESTIONER_TEMPLATE,
    DEFAULT_REASONER_TEMPLATE,
    render_questioner_prompt,
    render_reasoner_prompt,
    resolve_template_path,
)
from verl_ext.visplay import extract_boxed, majority_vote, parse_question

from .models import atomic_dir, chat_text, configure_threads, load_model, load_processor, save_model_dir
from .sampling import SamplingParams, sample

WARMUP_VERSION = "1"
CACHE_PREFIX = "warmup"


@dataclass(frozen=True)
class WarmupConfig:
    """Hyperparameters of the warm-up (all part of the cache key)."""

    seed: int = 1
    num_images: int = 96  # synthetic training scenes (their own seed: never the run's images)
    steps: int = 220
    questioner_batch: int = 4  # sequences per step and role (one micro-batch each: no padding across roles)
    reasoner_batch: int = 6
    lr: float = 3e-3
    warmup_steps: int = 15
    eval_images: int = 16  # held-out scenes for the parse-rate check
    eval_m: int = 4  # reasoner samples per eval question (vote spread)
    eval_max_new_tokens: int = 64
    min_pixels: int | None = None
    max_pixels: int | None = None
    # "module:function" giving the labeled seed set, called as fn(num_images, seed, rng) -> [(PIL image, items)]
    # with items as `scene_questions` returns them (type, question, answer, reasoning); None = the test kit's scenes.
    examples: str | None = None


# ----------------------------------------------------------------------------------------------------------------
# Synthetic targets
# ----------------------------------------------------------------------------------------------------------------


def _plural(shape: str) -> str:
    return shape + "s"


def _choices(rng: random.Random, correct: str, pool: list[str]) -> tuple[str, str]:
    """Four options (A-D) holding `correct`, as inline text, and the correct letter."""
    others = rng.sample([p for p in pool if p != correct], 3)
    options = others + [correct]
    rng.shuffle(options)
    text = " ".join(f"{letter}. {opt}" for letter, opt in zip("ABCD", options, strict=True))
    return text, "ABCD"[options.index(correct)]


def scene_questions(scene: dict, rng: random.Random) -> list[dict]:
    """Templated (type, question, answer, reasoning) items about one synthetic scene, answers true to the scene."""
    from verl_ext.tiny.images import COLORS, SHAPES

    colors, shapes = sorted(COLORS), list(SHAPES)
    items = []

    def add(qtype, question, answer, reasoning):
        items.append({"type": qtype, "question": question, "answer": str(answer), "reasoning": reasoning})

    kind = scene["kind"]
    if kind == "count":
        shape, color, count = scene["shape"], scene["color"], scene["count"]
        add("numerical", f"How many {color} {_plural(shape)} are in the image?", count,
            f"I count the {color} {_plural(shape)}: there are {count}.")  # fmt: skip
        add("numerical", f"How many {_plural(shape)} would there be if two more were added?", count + 2,
            f"There are {count} {_plural(shape)}, and {count} + 2 = {count + 2}.")  # fmt: skip
        options, letter = _choices(rng, color, colors)
        add("multiple choice", f"What color are the {_plural(shape)}? {options}", letter,
            f"The {_plural(shape)} are {color}, option {letter}.")  # fmt: skip
        options, letter = _choices(rng, shape, shapes)
        add("multiple choice", f"Which shape is shown? {options}", letter, f"The shapes are {_plural(shape)}.")
    elif kind == "mixed":
        total = len(scene["objects"])
        add("numerical", "How many shapes are in the image in total?", total, f"I count {total} shapes in total.")
        shape = rng.choice(sorted(scene["shape_counts"]))
        n = scene["shape_counts"][shape]
        add("numerical", f"How many {_plural(shape)} are there?", n, f"I count the {_plural(shape)}: {n}.")
        color = rng.choice(sorted(scene["color_counts"]))
        n = scene["color_counts"][color]
        add("numerical", f"How many {color} shapes are there?", n, f"I count the {color} shapes: {n}.")
        top = max(scene["shape_counts"].values())
        common = [s for s, c in scene["shape_counts"].items() if c == top]
        if len(common) == 1:
            options, letter = _choices(rng, common[0], shapes)
            add("multiple choice", f"Which shape appears most often? {options}", letter,
                f"The {_plural(common[0])} appear {top} times, option {letter}.")  # fmt: skip
    elif kind == "bar_chart":
        values, bar_colors = scene["values"], scene["colors"]
        add("numerical", "How many bars are in the chart?", len(values), f"I count {len(values)} bars.")
        i = rng.randrange(len(values))
        add("regression", f"Estimate the height of the {bar_colors[i]} bar.", values[i],
            f"The {bar_colors[i]} bar reaches about {values[i]}.")  # fmt: skip
        diff = max(values) - min(values)
        add("numerical", "What is the difference between the tallest and the shortest bar?", diff,
            f"The tallest is {max(values)} and the shortest {min(values)}, so {diff}.")  # fmt: skip
        if values.count(max(values)) == 1:
            options, letter = _choices(rng, bar_colors[scene["max_index"]], colors)
            add("multiple choice", f"Which bar is the tallest? {options}", letter,
                f"The {bar_colors[scene['max_index']]} bar is the tallest, option {letter}.")  # fmt: skip
    return items


def questioner_target(item: dict) -> str:
    return f"<type>{item['type']}</type><question>{item['question']}</question><answer>{item['answer']}</answer>"


def reasoner_target(item: dict) -> str:
    return f"<think>{item['reasoning']}</think> \\boxed{{{item['answer']}}}"


def load_examples_source(spec: str) -> Callable:
    """The seed-set function named by `WarmupConfig.examples` ("package.module:function")."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"warm-up examples: expected 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


def _scene_items(source: str | None, num_images: int, seed: int, rng: random.Random) -> list[tuple]:
    """(image, items) pairs: the test kit's scenes with `scene_questions`, or the `source` seed set."""
    if source is not None:
        return load_examples_source(source)(num_images, seed, rng)
    from verl_ext.tiny.images import make_images

    return [(image, scene_questions(scene, rng)) for image, scene in make_images(num_images, seed=seed)]


def build_examples(
    num_images: int,
    seed: int,
    questioner_prompt: str | None,
    reasoner_prompt: str | None,
    source: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """(questioner examples, reasoner examples): dicts with image, prompt (instruction text) and target.
    `source`: `WarmupConfig.examples` (None = the test kit's scenes)."""
    rng = random.Random(f"warmup/{seed}")
    q_examples, r_examples = [], []
    q_instruction = render_questioner_prompt(questioner_prompt)
    for image, items in _scene_items(source, num_images, 10_000 + seed, rng):
        for item in items:
            q_examples.append({"image": image, "prompt": q_instruction, "target": questioner_target(item)})
            r_prompt = render_reasoner_prompt(item["question"], reasoner_prompt, item["type"])
            r_examples.append({"image": image, "prompt": r_prompt, "target": reasoner_target(item), "item": item})
    return q_examples, r_examples


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def _encode(processor, example: dict, end_token: str) -> dict:
    """Token ids of prompt + target + end-of-turn, with labels on the target and end token only."""
    target = example["target"] + end_token
    text = chat_text(processor, example["prompt"], with_image=True, answer=target)
    enc = processor(text=[text], images=[[example["image"]]], return_tensors="pt")
    n_target = len(processor.tokenizer(target, add_special_tokens=False).input_ids)
    ids = enc["input_ids"][0]
    labels = ids.clone()
    labels[: len(ids) - n_target] = -100
    decoded = processor.tokenizer.decode(ids[len(ids) - n_target :])
    if decoded != target:  # the boundary between prompt and target must tokenise apart
        raise RuntimeError(f"warm-up target does not tokenise on its own: {decoded!r} != {target!r}")
    return {
        "input_ids": ids,
        "labels": labels,
        "pixel_values": enc["pixel_values"],
        "image_grid_thw": enc["image_grid_thw"],
        **({"mm_token_type_ids": enc["mm_token_type_ids"][0]} if "mm_token_type_ids" in enc else {}),
    }


def _collate(batch: list[dict], pad_id: int) -> dict:
    import torch

    length = max(len(b["input_ids"]) for b in batch)
    out = {
        "input_ids": torch.full((len(batch), length), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(batch), length), dtype=torch.long),
        "labels": torch.full((len(batch), length), -100, dtype=torch.long),
    }
    if "mm_token_type_ids" in batch[0]:
        out["mm_token_type_ids"] = torch.zeros((len(batch), length), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        out["input_ids"][i, :n] = b["input_ids"]
        out["attention_mask"][i, :n] = 1
        out["labels"][i, :n] = b["labels"]
        if "mm_token_type_ids" in out:
            out["mm_token_type_ids"][i, :n] = b["mm_token_type_ids"]
    out["pixel_values"] = torch.cat([b["pixel_values"] for b in batch])
    out["image_grid_thw"] = torch.cat([b["image_grid_thw"] for b in batch])
    return out


def _target_loss(model, inputs: dict):
    """Mean next-token cross-entropy on the labelled positions; lm_head only runs there (most tokens are prompt)."""
    import torch.nn.functional as F

    labels = inputs.pop("labels")
    if not (hasattr(model, "model") and hasattr(model, "lm_head")):
        return model(**inputs, labels=labels).loss
    hidden = model.model(**inputs).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    mask = targets != -100
    logits = model.lm_head(hidden[mask])
    return F.cross_entropy(logits.float(), targets[mask])


def train_format(model, processor, q_examples, r_examples, cfg: WarmupConfig, log: Callable[[str], None]) -> list:
    """The supervised loop: AdamW, linear warm-up then cosine decay; each step one micro-batch per role (their mean
    loss). Returns the losses per step."""
    import math

    import torch

    end = "<|im_end|>"
    encoded = [[_encode(processor, e, end) for e in q_examples], [_encode(processor, e, end) for e in r_examples]]
    sizes = [cfg.questioner_batch, cfg.reasoner_batch]
    rng = random.Random(f"warmup-order/{cfg.seed}")
    pad_id = processor.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    orders: list[list[int]] = [[], []]
    losses = []
    model.train()
    started = time.monotonic()
    for step in range(cfg.steps):
        total = 0.0
        for role in (0, 1):
            if len(orders[role]) < sizes[role]:  # epochs of a fresh shuffle each
                orders[role] += rng.sample(range(len(encoded[role])), len(encoded[role]))
            batch = [encoded[role][i] for i in orders[role][: sizes[role]]]
            del orders[role][: sizes[role]]
            loss = _target_loss(model, _collate(batch, pad_id)) / 2
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
        if step % 25 == 0 or step == cfg.steps - 1:
            log(f"[warmup] step {step + 1}/{cfg.steps} loss {total:.3f} ({time.monotonic() - started:.0f}s)")
    model.eval()
    return losses


# ----------------------------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------------------------


def parse_rates(model, processor, cfg: WarmupConfig, questioner_prompt=None, reasoner_prompt=None, seed=0) -> dict:
    """Sampled at T = 1: share of parsable questions, share of boxed answers, and the vote spread over m samples."""
    rng = random.Random(f"warmup-eval/{seed}")
    if cfg.examples is None:
        from verl_ext.tiny.images import make_images

        scenes = make_images(cfg.eval_images, seed=20_000 + seed)
        images = [image for image, _ in scenes]
        items = [rng.choice(scene_questions(scene, rng)) for _, scene in scenes]
    else:
        pairs = [p for p in _scene_items(cfg.examples, cfg.eval_images, 20_000 + seed, rng) if p[1]]
        images = [image for image, _ in pairs]
        items = [rng.choice(group) for _, group in pairs]
    q_instruction = render_questioner_prompt(questioner_prompt)
    params = SamplingParams(n=1, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=cfg.eval_max_new_tokens)
    q_texts = [t[0] for t in sample(model, processor, [q_instruction] * len(images), images, params, seed=seed)]
    parsed = [parse_question(t) for t in q_texts]
    r_prompts = [render_reasoner_prompt(it["question"], reasoner_prompt, it["type"]) for it in items]
    r_params = SamplingParams(
        n=cfg.eval_m, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=cfg.eval_max_new_tokens
    )
    answers = sample(model, processor, r_prompts, images, r_params, seed=seed + 1)
    flat = [a for group in answers for a in group]
    votes = [majority_vote(group) for group in answers]
    confidences = [v.confidence for v in votes]
    return {
        "question_parse_rate": sum(p is not None for p in parsed) / len(parsed),
        "question_types": sorted({p.type for p in parsed if p is not None}),
        "boxed_rate": sum(bool(extract_boxed(a)) for a in flat) / len(flat),
        "answer_correct_rate": sum(
            bool(v.answer) and v.answer.strip() == it["answer"] for v, it in zip(votes, items, strict=True)
        )
        / len(items),
        "confidence_histogram": {
            f"{k}/{cfg.eval_m}": sum(round(c * cfg.eval_m) == k for c in confidences) for k in range(cfg.eval_m + 1)
        },
        "examples": {"question": q_texts[:2], "answer": flat[:2]},
    }


# ----------------------------------------------------------------------------------------------------------------
# Cached build
# ----------------------------------------------------------------------------------------------------------------


def _model_fingerprint(path: Path) -> list:
    """Content hashes of the model dir's files (name and size only for files over 64 MiB)."""
    parts = []
    for p in sorted(path.rglob("*")):
        if p.is_file():
            size = p.stat().st_size
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if size <= 64 << 20 else ""
            parts.append([p.relative_to(path).as_posix(), size, digest])
    return parts


def _source_code(spec: str) -> list[str]:
    """Source of the seed-set function's module and of the modules it lists in `WARMUP_DEPENDS`."""
    import importlib
    import inspect

    module = importlib.import_module(spec.partition(":")[0])
    names = [module.__name__, *getattr(module, "WARMUP_DEPENDS", ())]
    return [inspect.getsource(importlib.import_module(name)) for name in names]


def warmup_key(base: str | Path, cfg: WarmupConfig, questioner_prompt=None, reasoner_prompt=None) -> str:
    """Hash of everything the warmed model depends on: base model files, prompts, settings, code, library versions."""
    h = hashlib.sha256()
    prompts = [
        resolve_template_path(questioner_prompt, DEFAULT_QUESTIONER_TEMPLATE).read_text(),
        resolve_template_path(reasoner_prompt, DEFAULT_REASONER_TEMPLATE).read_text(),
    ]
    versions = [importlib.metadata.version(n) for n in ("torch", "transformers", "tokenizers")]
    here = Path(__file__).resolve().parent
    code = [(here / name).read_text() for name in ("warmup.py", "models.py", "sampling.py")]
    payload = [WARMUP_VERSION, asdict(cfg), _model_fingerprint(Path(base)), prompts, versions, code]
    if cfg.examples is not None:
        payload.append(_source_code(cfg.examples))
    h.update(json.dumps(payload, sort_keys=True).encode())
    return h.hexdigest()[:16]


def build_warmup(
    base: str | Path,
    out_dir: str | Path,
    cfg: WarmupConfig,
    questioner_prompt=None,
    reasoner_prompt=None,
    log: Callable[[str], None] = print,
    measure: bool = True,
) -> dict:
    """Fine-tune `base` into `out_dir` (an HF model dir plus warmup.json with losses and parse rates before/after)."""
    import torch

    started = time.monotonic()
    processor = load_processor(base, cfg.min_pixels, cfg.max_pixels)
    model = load_model(base, train=True)
    threads = configure_threads(sum(p.numel() for p in model.parameters()))
    torch.manual_seed(cfg.seed)
    q_examples, r_examples = build_examples(
        cfg.num_images, cfg.seed, questioner_prompt, reasoner_prompt, source=cfg.examples
    )
    report = {"config": asdict(cfg), "base": str(base), "threads": threads,
              "examples": {"questioner": len(q_examples), "reasoner": len(r_examples)}}  # fmt: skip
    if measure:
        report["before"] = parse_rates(model, processor, cfg, questioner_prompt, reasoner_prompt, seed=cfg.seed)
        log(f"[warmup] before: {_brief(report['before'])}")
    t0 = time.monotonic()
    losses = train_format(model, processor, q_examples, r_examples, cfg, log)
    report["train_seconds"] = round(time.monotonic() - t0, 1)
    report["loss"] = {"first": losses[0], "last": losses[-1], "last10_mean": sum(losses[-10:]) / len(losses[-10:])}
    if measure:
        report["after"] = parse_rates(model, processor, cfg, questioner_prompt, reasoner_prompt, seed=cfg.seed)
        log(f"[warmup] after: {_brief(report['after'])}")
    save_model_dir(model, processor, out_dir)
    report["seconds"] = round(time.monotonic() - started, 1)
    (Path(out_dir) / "warmup.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


def _brief(rates: dict) -> str:
    return (
        f"question parse rate {rates['question_parse_rate']:.2f}, boxed rate {rates['boxed_rate']:.2f}, "
        f"votes {rates['confidence_histogram']}"
    )


def warmed_model_path(
    base: str | Path,
    cfg: WarmupConfig,
    questioner_prompt=None,
    reasoner_prompt=None,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """The warmed model in the cache (VISPLAY_CACHE, default ~/.cache/visplay), built on first use."""
    from verl_ext.tiny.tiny_vlm import default_cache_dir

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / f"{CACHE_PREFIX}-{warmup_key(base, cfg, questioner_prompt, reasoner_prompt)}"
    if (final / "warmup.json").is_file():
        problem = seal_problem(final)
        if problem is None:
            log(f"[warmup] cached: {final}")
            return final
        log(f"[warmup] cache entry damaged ({problem}); rebuilding it")
        shutil.rmtree(final)
    with atomic_dir(final) as tmp:
        build_warmup(base, tmp, cfg, questioner_prompt, reasoner_prompt, log=log)
        seal_dir(tmp)
    return final
