"""The world generator, the question grammar and its oracle, and the three image sets (no models)."""

import random
from collections import Counter

import pyarrow.parquet as pq
import pytest

from verl_ext.world.data import write_unlabeled_parquet
from verl_ext.world.grammar import BY_ID, STATUSES, TEMPLATES, applicable, instantiate, match, oracle
from verl_ext.world.scenes import COLORS, GRID, SIZE, make_scene, parse_image_id, render, scene_for_id
from verl_ext.world.seedset import ITEMS_PER_SEED_IMAGE, PERCEPTION_TEMPLATES, perception_items, seed_items


def test_scenes_are_seeded_and_splits_never_share_an_image():
    assert make_scene("unlabeled", 3, 7) == make_scene("unlabeled", 3, 7)
    assert make_scene("unlabeled", 3, 7) != make_scene("unlabeled", 4, 7)
    scenes = {split: [make_scene(split, 0, i) for i in range(30)] for split in ("seed", "eval", "dev", "unlabeled")}
    ids = [s["id"] for group in scenes.values() for s in group]
    assert len(set(ids)) == len(ids)
    content = Counter(repr({k: v for k, v in s.items() if k != "id"}) for group in scenes.values() for s in group)
    assert max(content.values()) <= 2  # distinct draws; a rare coincidence of two tiny scenes at most
    with pytest.raises(ValueError):
        make_scene("train", 0, 0)


def test_scene_content_and_rendering():
    for i in range(60):
        scene = make_scene("seed", 1, i)
        assert scene_for_id(scene["id"]) == scene
        assert parse_image_id(scene["id"]) == ("seed", 1, i)
        image = render(scene)
        assert image.size == (SIZE, SIZE) and image.mode == "RGB"
        if scene["kind"] == "shapes":
            cells = [(o["row"], o["col"]) for o in scene["objects"]]
            assert len(set(cells)) == len(cells) and all(0 <= r < GRID and 0 <= c < GRID for r, c in cells)
            # every object is drawn in its own colour at its cell's centre
            for o in scene["objects"]:
                centre = (o["col"] * SIZE // GRID + SIZE // GRID // 2, o["row"] * SIZE // GRID + SIZE // GRID // 2)
                assert image.getpixel(centre) == COLORS[o["color"]]
        else:
            assert 3 <= len(scene["bars"]) <= GRID
    assert scene_for_id("synthetic-0-00001") is None


def test_every_generated_question_is_answered_by_the_oracle_as_generated():
    seen = Counter()
    for i in range(300):
        scene = make_scene("dev", 5, i)
        rng = random.Random(i)
        for template in applicable(scene):
            item = instantiate(template, scene, rng)
            if item is None:
                continue
            seen[template.id] += 1
            result = oracle(scene, item["question"])
            assert result.ok and result.template == template.id, (item, result)
            assert result.answer == item["answer"]
            assert item["type"] in ("numerical", "multiple choice")
    assert set(seen) == {t.id for t in TEMPLATES}


def test_oracle_statuses():
    shapes = {
        "kind": "shapes",
        "objects": [
            {"shape": "circle", "color": "red", "size": "large", "col": 0, "row": 0},
            {"shape": "circle", "color": "blue", "size": "small", "col": 2, "row": 1},
            {"shape": "square", "color": "red", "size": "small", "col": 3, "row": 3},
        ],
    }
    chart = {
        "kind": "chart",
        "bars": [{"color": "red", "value": 3}, {"color": "blue", "value": 7}, {"color": "green", "value": 7}],
    }
    cases = [
        (shapes, "How many red shapes are there?", "ok", "2"),
        (shapes, "  how MANY  red shapes are there ", "ok", "2"),  # case, spaces, missing "?"
        (shapes, "How many circles are there?", "ok", "2"),
        (shapes, "How many shapes would there be if 3 more were added?", "ok", "6"),
        (shapes, "Is there a red square?", "ok", "yes"),
        (shapes, "Is there an orange square?", "ok", "no"),
        (shapes, "Is the red circle left of the blue circle?", "ok", "yes"),
        (shapes, "Is the red circle larger than the red square?", "ok", "yes"),
        (shapes, "Are there more red shapes than blue shapes?", "ok", "yes"),
        (shapes, "What color is the square? A. blue B. red C. green D. yellow", "ok", "B"),
        (shapes, "Which color appears most often? A. blue B. green C. yellow D. red", "ok", "D"),
        (shapes, "What color is the circle? A. blue B. red C. green D. yellow", "bad_reference", None),  # two circles
        (shapes, "Is the green circle left of the blue circle?", "bad_reference", None),
        (shapes, "What color is the square? A. blue B. purple C. green D. yellow", "bad_options", None),
        (shapes, "What color is the square? A. red B. red C. green D. yellow", "bad_options", None),
        (shapes, "How many bars are there?", "wrong_kind", None),
        (shapes, "How many dogs are there?", "no_template", None),
        (shapes, "How many red shapes are there? Explain.", "no_template", None),
        (chart, "What is the value of the blue bar?", "ok", "7"),
        (chart, "What is the sum of the red bar and the blue bar?", "ok", "10"),
        (chart, "What is the difference between the tallest and the shortest bar?", "ok", "4"),
        (chart, "Is the red bar taller than the blue bar?", "ok", "no"),
        (chart, "Which bar is the tallest? A. blue B. green C. red D. yellow", "ambiguous", None),  # 7 and 7
        (chart, "What is the value of the purple bar?", "bad_reference", None),
        (chart, "How many shapes are there?", "wrong_kind", None),
    ]
    for scene, question, status, answer in cases:
        result = oracle(scene, question)
        assert (result.status, result.answer) == (status, answer), (question, result)
        assert result.status in STATUSES
    assert match(None) is None and match("") is None
    assert match("How many red circles are there?")[0] is BY_ID["count_color_shape"]


def test_seed_set_eval_set_and_unlabeled_pool(tmp_path):
    pairs = seed_items(12, 0, random.Random(0))
    assert len(pairs) == 12
    for image, items in pairs:
        assert image.size == (SIZE, SIZE)
        assert 1 <= len(items) <= ITEMS_PER_SEED_IMAGE
        assert len({it["template"] for it in items}) == len(items)
        assert {"type", "question", "answer", "reasoning"} <= set(items[0])

    # the perception variant's seed set: the same images, numerical templates only, true answers
    for i, (_, items) in enumerate(perception_items(12, 0, random.Random(0))):
        scene = make_scene("seed", 0, i)
        assert 1 <= len(items) <= ITEMS_PER_SEED_IMAGE
        for it in items:
            assert it["template"] in PERCEPTION_TEMPLATES and oracle(scene, it["question"]).answer == it["answer"]

    path = write_unlabeled_parquet(tmp_path / "images.parquet", n=10, seed=2)
    table = pq.read_table(path)
    assert table.column_names == ["id", "source", "image"]  # images only: no scene, no label
    assert all(parse_image_id(i)[0] == "unlabeled" for i in table.column("id").to_pylist())


def test_world_image_source_of_the_loop(tmp_path):
    from verl_ext.evolve import load_recipe
    from verl_ext.evolve.images import prepare_images
    from verl_ext.evolve.recipe import RecipeError
    from verl_ext.world.experiment import DEFAULT_RECIPE

    recipe = load_recipe(DEFAULT_RECIPE, overrides=["images.max_images=6"])
    assert recipe.images.source == "generator" and recipe.images.path == "verl_ext.world.data:write_unlabeled_parquet"
    summary = prepare_images(recipe.images, tmp_path / "images.parquet", seed=4)
    assert summary == {"images": 6, "source": "verl_ext.world.data:write_unlabeled_parquet"}
    ids = pq.read_table(tmp_path / "images.parquet").column("id").to_pylist()
    assert ids[0] == "world-unlabeled-4-00000"
    with pytest.raises(RecipeError, match="images.max_images"):
        load_recipe(DEFAULT_RECIPE, overrides=["images.max_images=null"])
