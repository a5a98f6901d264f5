"""The prior-free eval set: answer-balanced binary templates, uniform option letters, the same count per template.

A blind answerer cannot beat chance on it by a prior: every yes/no template has as many "yes" as "no" items, every
option-letter template has each of A-D as the right letter equally often (within one), and every template has
`per_template` items. The primary endpoint is greedy accuracy on the image-dependent families (`ENDPOINT_FAMILIES`:
counts, chart reading, arithmetic) plus the margin over the same questions with the images swapped. No torch.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from .grammar import BY_ID, LETTERS, TEMPLATES, Template, Unanswerable, instantiate, render_question
from .scenes import make_scene, png_bytes, render

ENDPOINT_FAMILIES = ("count", "chart", "arithmetic")  # answers a prior cannot give: the image decides
PER_TEMPLATE = 32  # items per template: >= 30, and divisible by 2 (yes/no) and 4 (letters)
MAX_TRIES = 20_000  # scenes tried per template before giving up (a template no scene can balance)


def answer_kind(answer: str) -> str:
    return "binary" if answer in ("yes", "no") else "letter" if answer in tuple(LETTERS) else "number"


def quotas(kind: str, n: int) -> dict[str, int] | None:
    """How many items of each answer a template of answer `kind` gets out of `n` (None: any answer)."""
    values = ("yes", "no") if kind == "binary" else tuple(LETTERS) if kind == "letter" else None
    if values is None:
        return None
    base, extra = divmod(n, len(values))
    return {v: base + (i < extra) for i, v in enumerate(values)}


def template_kind(template: Template) -> str:
    """The answer kind of a template, from its text: options -> letter; a yes/no question -> binary; else number."""
    if "{options}" in template.text:
        return "letter"
    return "binary" if template.text.split()[0] in ("Is", "Are") else "number"


def move_correct_option(slots: dict, answer: str, letter: str) -> dict:
    """Slots with the options reordered so that the right one (now at `answer`) sits at `letter`; the others keep
    their order."""
    opts = [slots[f"o{i}"] for i in range(len(LETTERS))]
    correct = opts.pop(LETTERS.index(answer))
    opts.insert(LETTERS.index(letter), correct)
    return {**slots, **{f"o{i}": o for i, o in enumerate(opts)}}


def balanced_items(
    templates: Sequence[str] | None = None,
    per_template: int = PER_TEMPLATE,
    split: str = "eval",
    seed: int = 0,
    images: bool = True,
) -> list[dict]:
    """`per_template` items of each template (default all 18), each on its own image of `split`, answer-balanced.

    Binary templates: half "yes", half "no" (scenes are drawn until the quota of the answer they give has room).
    Letter templates: the options are reordered so that the right letter cycles A, B, C, D. Numerical templates: no
    answer more than `number_cap` times (1/4 of the items, or 1/k for a template with k < 4 answers). Items are
    interleaved by template. Each item: id, image (PNG bytes, unless `images` is false), scene, template, type,
    question, answer, reasoning."""
    chosen = [BY_ID[t] for t in templates] if templates is not None else list(TEMPLATES)
    index = 0  # next unused image of the split: no two items share an image
    per: list[list[dict]] = []
    for template in chosen:
        kind = template_kind(template)
        left = quotas(kind, per_template)
        cap = number_cap(template, per_template, split, seed) if kind == "number" else per_template
        numbers: Counter = Counter()
        items: list[dict] = []
        tries = 0
        while len(items) < per_template:
            tries += 1
            if tries > MAX_TRIES:
                raise RuntimeError(f"{template.id}: no balanced set of {per_template} in {MAX_TRIES} scenes")
            scene = make_scene(split, seed, index)
            index += 1
            rng = random.Random(f"visplay-world/{split}-balanced/{seed}/{scene['id']}/{template.id}")
            if template.kind != scene["kind"]:
                continue
            if kind == "letter":
                item = _with_letter(template, scene, rng, LETTERS[len(items) % len(LETTERS)])
            else:
                item = instantiate(template, scene, rng)
            if item is None:
                continue
            if kind == "number":
                if numbers[item["answer"]] >= cap:
                    continue
                numbers[item["answer"]] += 1
            if kind == "binary":
                if left.get(item["answer"], 0) <= 0:
                    continue
                left[item["answer"]] -= 1
            item = {"id": scene["id"], "scene": scene, **item}
            if images:
                item["image"] = png_bytes(render(scene))
            items.append(item)
        per.append(items)
    return [items[j] for j in range(per_template) for items in per]


def number_cap(template: Template, n: int, split: str, seed: int, probe: int = 400) -> int:
    """The most items one answer of a numerical template may have among `n`: n / k for the k (at most 4) answers the
    template gives most often on `probe` scenes, so that no single number is a prior worth more than 1 / k."""
    seen: Counter = Counter()
    for i in range(probe):
        scene = make_scene(split, seed + 1_000_003, i)  # a probe only: these scenes never become items
        if scene["kind"] != template.kind:
            continue
        item = instantiate(template, scene, random.Random(f"visplay-world/cap/{template.id}/{i}"))
        if item is not None:
            seen[item["answer"]] += 1
    k = max(1, min(4, len(seen)))
    return -(-n // k)


def _with_letter(template: Template, scene: dict, rng: random.Random, letter: str) -> dict | None:
    slots = template.sample(scene, rng)
    if slots is None:
        return None
    try:
        slots = move_correct_option(slots, template.answer(scene, slots), letter)
        answer = template.answer(scene, slots)
    except Unanswerable:
        return None
    return {
        "type": template.qtype,
        "question": render_question(template, slots),
        "answer": answer,
        "reasoning": template.reason(scene, slots, answer),
        "template": template.id,
    }


def is_endpoint(item: dict) -> bool:
    return BY_ID[item["template"]].family in ENDPOINT_FAMILIES


def balance_report(items: Sequence[dict]) -> dict:
    """Per template: item count and answer counts (what the balance tests and the write-up check)."""
    out: dict[str, dict] = {}
    for it in items:
        cell = out.setdefault(it["template"], {"n": 0, "answers": Counter()})
        cell["n"] += 1
        cell["answers"][it["answer"]] += 1
    return {t: {"n": c["n"], "answers": dict(sorted(c["answers"].items()))} for t, c in sorted(out.items())}
