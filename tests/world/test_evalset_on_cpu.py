"""The prior-free eval set: answer-balanced binary templates, uniform option letters, the same count per template,
true answers (the oracle agrees), one image per item, no image shared with the other splits."""

from collections import Counter

import pytest

from verl_ext.world.evalset import (
    ENDPOINT_FAMILIES,
    balance_report,
    balanced_items,
    is_endpoint,
    move_correct_option,
    quotas,
    template_kind,
)
from verl_ext.world.grammar import BY_ID, LETTERS, TEMPLATES, oracle
from verl_ext.world.seedset import PERCEPTION_TEMPLATES


@pytest.fixture(scope="module")
def items():
    return balanced_items(per_template=32, images=False)


def test_every_template_has_the_same_count_of_at_least_30(items):
    report = balance_report(items)
    assert set(report) == {t.id for t in TEMPLATES}
    assert {cell["n"] for cell in report.values()} == {32}


def test_binary_templates_are_answer_balanced_and_letters_uniform(items):
    report = balance_report(items)
    kinds = Counter(template_kind(BY_ID[t]) for t in report)
    assert kinds == {"binary": 5, "letter": 3, "number": 10}  # every yes/no and every option template is covered
    for template, cell in report.items():
        kind = template_kind(BY_ID[template])
        if kind == "binary":
            assert cell["answers"] == {"no": 16, "yes": 16}, template
        elif kind == "letter":
            assert cell["answers"] == dict.fromkeys(LETTERS, 8), template
        else:  # no number is a prior worth more than a quarter of a template (or 1/k with k possible answers)
            assert max(cell["answers"].values()) <= 16 and len(cell["answers"]) >= 2, template


def test_a_blind_answerer_is_at_chance_on_binary_and_letter_templates(items):
    # the best constant answer per template: what a prior alone scores
    for template, cell in balance_report(items).items():
        if template_kind(BY_ID[template]) != "number":
            assert max(cell["answers"].values()) / cell["n"] == pytest.approx(
                0.5 if template_kind(BY_ID[template]) == "binary" else 0.25
            )


def test_answers_are_true_and_images_distinct(items):
    for it in items:
        result = oracle(it["scene"], it["question"])
        assert result.ok and result.answer == it["answer"] and result.template == it["template"]
    assert len({it["id"] for it in items}) == len(items)
    dev = {it["id"] for it in balanced_items(["count_all", "exists"], 4, split="dev", images=False)}
    assert not dev & {it["id"] for it in items}


def test_items_interleave_templates_and_are_deterministic():
    a = balanced_items(PERCEPTION_TEMPLATES, 4, images=False)
    assert [it["template"] for it in a[: len(PERCEPTION_TEMPLATES)]] == list(PERCEPTION_TEMPLATES)
    b = balanced_items(PERCEPTION_TEMPLATES, 4, images=False)
    assert [it["question"] for it in a] == [it["question"] for it in b]
    assert all(is_endpoint(it) for it in a)  # the perception variant is all endpoint


def test_endpoint_families_are_the_image_dependent_ones(items):
    fams = {BY_ID[it["template"]].family for it in items if is_endpoint(it)}
    assert fams == set(ENDPOINT_FAMILIES)
    assert not any(is_endpoint(it) for it in items if it["answer"] in ("yes", "no", *LETTERS))


def test_quotas_and_option_moves():
    assert quotas("binary", 32) == {"yes": 16, "no": 16}
    assert quotas("letter", 30) == {"A": 8, "B": 8, "C": 7, "D": 7}
    assert quotas("number", 30) is None
    slots = {"o0": "red", "o1": "blue", "o2": "green", "o3": "purple", "shape": "circle"}
    moved = move_correct_option(slots, "B", "D")
    assert [moved[f"o{i}"] for i in range(4)] == ["red", "green", "purple", "blue"] and moved["shape"] == "circle"
    assert move_correct_option(slots, "C", "C") == slots
