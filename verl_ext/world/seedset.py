"""The labeled seed set: templated questions with their true answers on seed-split images, for the format warm-up.

The analogue of an Instruct model's labeled data: used once, before the loop, through the warm-up hook
(`model.warmup.examples: verl_ext.world.seedset:seed_items` in recipes/tiny-world.yaml). Its source (and
WARMUP_DEPENDS) keys the warm-up cache.
"""

from __future__ import annotations

import random

from .grammar import applicable, instantiate
from .scenes import make_scene, render

ITEMS_PER_SEED_IMAGE = 4  # labeled questions per seed-set image
# The perception variant's templates: numerical questions whose answer is in the image (counts, chart values and the
# arithmetic on them); no yes/no, relation or option-letter question, whose answers a prior can guess.
PERCEPTION_TEMPLATES = (
    "count_all", "count_color", "count_shape", "count_color_shape", "count_size", "add_count",
    "bar_count", "bar_value", "bar_sum", "bar_range",
)  # fmt: skip
# Modules whose source is part of the warm-up cache key (verl_ext.local.warmup): a change to the world rebuilds it.
WARMUP_DEPENDS = ("verl_ext.world.scenes", "verl_ext.world.grammar")


def image_items(scene: dict, rng: random.Random, k: int, only: tuple[str, ...] | None = None) -> list[dict]:
    """Up to `k` items of distinct templates on `scene`, templates drawn uniformly among those that apply (and are in
    `only`, when given)."""
    templates = [t for t in applicable(scene) if only is None or t.id in only]
    rng.shuffle(templates)
    items = []
    for template in templates:
        item = instantiate(template, scene, rng)
        if item is not None:
            items.append(item)
        if len(items) == k:
            break
    return items


def seed_items(num_images: int, seed: int, rng: random.Random) -> list[tuple]:
    """The labeled seed set: (PIL image, items) for `num_images` images of the `seed` split (warm-up hook)."""
    out = []
    for i in range(num_images):
        scene = make_scene("seed", seed, i)
        out.append((render(scene), image_items(scene, rng, ITEMS_PER_SEED_IMAGE)))
    return out


def perception_items(num_images: int, seed: int, rng: random.Random) -> list[tuple]:
    """The perception variant's labeled seed set: as `seed_items`, with the `PERCEPTION_TEMPLATES` only."""
    out = []
    for i in range(num_images):
        scene = make_scene("seed", seed, i)
        out.append((render(scene), image_items(scene, rng, ITEMS_PER_SEED_IMAGE, PERCEPTION_TEMPLATES)))
    return out
