"""Reasoner accuracy on the held-out labeled eval set: greedy (the paper's protocol) and sampled at T = 1.

Uses the local backend's sampler and the reasoner prompt of the run, so the model is asked exactly as in training.
Greedy decoding is sampling with top_k = 1.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from verl_ext.visplay import extract_boxed
from verl_ext.visplay.grading import answers_equivalent_batch
from verl_ext.visplay.voting import majority_vote_batch

from .grammar import BY_ID


def _correct(golds: Sequence[str], preds: Sequence[str | None]) -> list[bool]:
    pairs = [(g, p) for g, p in zip(golds, preds, strict=True) if p]
    verdicts = iter(answers_equivalent_batch(pairs))
    return [bool(p) and next(verdicts) for p in preds]


def evaluate_reasoner(
    model_dir: str,
    items: list[dict],
    *,
    min_pixels: int | None,
    max_pixels: int | None,
    prompt_template: str | None = None,
    samples: int = 4,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 40,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 16,
    swapped: bool = True,
) -> dict:
    """Accuracy of the reasoner in `model_dir` on `items` (from `evalset.balanced_items`): greedy, mean over `samples`
    sampled answers, and their majority vote, and greedy with the images swapped between questions (`swapped`);
    overall and per template / family / answer format."""
    from verl_ext.local.models import decode_image, load_model, load_processor
    from verl_ext.local.sampling import SamplingParams, sample
    from verl_ext.prompts import render_reasoner_prompt

    model = load_model(model_dir, train=False)
    processor = load_processor(model_dir, min_pixels, max_pixels)
    prompts = [render_reasoner_prompt(it["question"], prompt_template, it["type"]) for it in items]
    images = [decode_image(it["image"]) for it in items]
    golds = [it["answer"] for it in items]
    greedy_params = SamplingParams(n=1, temperature=1.0, top_p=1.0, top_k=1, max_new_tokens=max_new_tokens)
    greedy_text = [
        g[0] for g in sample(model, processor, prompts, images, greedy_params, seed=seed, batch_size=batch_size)
    ]
    greedy = [extract_boxed(t) for t in greedy_text]
    per_item = {"greedy": _correct(golds, greedy)}
    result = {"n": len(items), "boxed_rate": sum(a is not None for a in greedy) / max(1, len(items))}
    if swapped:
        # The same questions, each shown another eval image of the same kind: what accuracy owes to the image.
        other = [decode_image(it["image"]) for it in swap_images(items)]
        groups = sample(model, processor, prompts, other, greedy_params, seed=seed, batch_size=batch_size)
        per_item["greedy_swapped"] = _correct(golds, [extract_boxed(g[0]) for g in groups])
    if samples:
        params = SamplingParams(n=samples, temperature=temperature, top_p=top_p, top_k=top_k,
                                max_new_tokens=max_new_tokens)  # fmt: skip
        groups = sample(model, processor, prompts, images, params, seed=seed + 1, batch_size=batch_size)
        flat_gold = [g for g in golds for _ in range(samples)]
        flat = _correct(flat_gold, [extract_boxed(t) for group in groups for t in group])
        per_item["sampled"] = [sum(flat[i * samples : (i + 1) * samples]) / samples for i in range(len(items))]
        votes = majority_vote_batch(groups)
        per_item["majority"] = _correct(golds, [v.answer for v in votes])
        per_item["self_consistency"] = [v.confidence for v in votes]
    del model
    # per item, as strings of 0/1 in the order of `items`: what the paired bootstrap resamples
    result["items"] = {k: "".join("1" if v else "0" for v in per_item[k]) for k in ("greedy", "greedy_swapped")
                       if k in per_item}  # fmt: skip
    result["accuracy"] = {k: _mean(v) for k, v in per_item.items()}
    for group_key in ("template", "family", "format"):
        buckets: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            buckets[_group(it, group_key)].append(i)
        result[f"by_{group_key}"] = {
            name: {"n": len(idx), **{k: _mean([v[i] for i in idx]) for k, v in per_item.items()}}
            for name, idx in sorted(buckets.items())
        }
    result["examples"] = [
        {"question": it["question"], "answer": it["answer"], "greedy": text}
        for it, text in zip(items[:5], greedy_text[:5], strict=True)
    ]
    return result


def swap_images(items: list[dict], seed: int = 0) -> list[dict]:
    """`items` with images permuted among the items of the same scene kind (a fixed derangement where possible)."""
    out = [dict(it) for it in items]
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_kind[it["scene"]["kind"]].append(i)
    rng = random.Random(f"visplay-world/swap/{seed}")
    for idx in by_kind.values():
        order = idx[:]
        rng.shuffle(order)
        perm = order[1:] + order[:1]  # a rotation of a shuffle: no item keeps its own image
        for a, b in zip(order, perm, strict=True):
            out[a]["image"] = items[b]["image"]
    return out


def prior_accuracy(items: list[dict], labeled: list[dict]) -> float | None:
    """Accuracy of a blind answerer: each question gets the most common answer of its template in `labeled`
    (the seed set), without looking at the image. What a model that learned only answer priors would score."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for it in labeled:
        counts[it["template"]][it["answer"]] += 1
    hits = [
        bool(counts[it["template"]]) and counts[it["template"]].most_common(1)[0][0] == it["answer"] for it in items
    ]
    return _mean(hits)


def _group(item: dict, key: str) -> str:
    if key == "template":
        return item["template"]
    if key == "family":
        template = BY_ID.get(item["template"])
        return template.family if template else "other"
    answer = item["answer"]
    return "yes/no" if answer in ("yes", "no") else "letter" if answer in tuple("ABCD") else "number"


def _mean(values) -> float | None:
    values = list(values)
    return round(sum(float(v) for v in values) / len(values), 6) if values else None
