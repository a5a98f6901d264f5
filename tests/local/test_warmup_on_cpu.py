"""Format warm-up: templated targets true to the scene, parse rates raised in both roles, a cached loadable model."""

import random
import time

import pytest

from verl_ext.local.warmup import questioner_target, reasoner_target, scene_questions
from verl_ext.visplay import extract_boxed, parse_question

pytestmark = pytest.mark.slow  # the session's warm-up (~1 min on 2 cores) is built by the first test that asks


def test_targets_parse_and_are_true_to_the_scene(synthetic_images):
    rng = random.Random(0)
    for _, scene in synthetic_images:
        items = scene_questions(scene, rng)
        assert len(items) >= 3
        for item in items:
            record = parse_question(questioner_target(item))
            assert record is not None and (record.type, record.question, record.answer) == (
                item["type"],
                item["question"],
                item["answer"],
            )
            assert extract_boxed(reasoner_target(item)) == item["answer"]
        if scene["kind"] == "count":
            assert items[0]["answer"] == str(scene["count"])
        if scene["kind"] == "bar_chart":
            assert items[0]["answer"] == str(len(scene["values"]))


def test_warmup_raises_parse_rates_of_both_roles(warmed):
    _, report = warmed
    before, after = report["before"], report["after"]
    # The random tiny model never writes the formats; after the warm-up most T = 1 samples parse
    # (measured 0.75-0.9 questions and 0.95-1.0 boxed answers across seeds).
    assert before["question_parse_rate"] <= 0.1 and before["boxed_rate"] <= 0.1
    assert after["question_parse_rate"] >= 0.5
    assert after["boxed_rate"] >= 0.8
    # Votes of m samples are neither all-agree nor all-unparsable: the confidence band has questions in it.
    hist = after["confidence_histogram"]
    m = report["config"]["eval_m"]
    inside = sum(hist[f"{k}/{m}"] for k in range(1, m))
    assert inside >= sum(hist.values()) // 3
    assert len(after["question_types"]) >= 2
    assert report["loss"]["last10_mean"] < report["loss"]["first"] / 4


def test_warmup_is_cached_and_loads(warmed, tiny_vlm_path, warm_cache):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from verl_ext.local.warmup import WarmupConfig, warmed_model_path

    path, _ = warmed
    started = time.monotonic()
    again = warmed_model_path(
        tiny_vlm_path, WarmupConfig(seed=1, min_pixels=3136, max_pixels=12544), cache_dir=warm_cache, log=print
    )
    assert again == path and time.monotonic() - started < 5
    assert not [p for p in warm_cache.iterdir() if p.name.startswith(".")]  # no temp dir left behind
    other = WarmupConfig(seed=2, min_pixels=3136, max_pixels=12544)
    from verl_ext.local.warmup import warmup_key

    assert warmup_key(tiny_vlm_path, other) not in path.name  # another seed is another build
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert processor.chat_template and model.config.model_type == "qwen2_5_vl"
