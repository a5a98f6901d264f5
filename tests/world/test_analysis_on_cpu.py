"""From per-seed records to claims: the endpoint keeps only the image-dependent items, the margin is real minus
swapped per item, gains are paired against the base, pooled precision adds counts over seeds."""

import pytest

from verl_ext.world.analysis import arm_matrix, compare, endpoint_mask, pooled_precision, questioner_effect
from verl_ext.world.results import questioner_verdict, render_markdown
from verl_ext.world.stats import paired_bootstrap

TEMPLATES = ["count_all", "exists", "bar_value", "color_of", "bar_sum"]  # endpoint: 0, 2, 4


def record(seed: int, base: tuple[str, str], arms: dict[str, tuple[str, str]]) -> dict:
    def items(pair):
        return {"greedy": pair[0], "greedy_swapped": pair[1]}

    return {
        "seed": seed,
        "eval_templates": TEMPLATES,
        "iterations": [
            {"t": 0, "items": {"base": items(base)}},
            {"t": 1, "items": {"base": items(base), **{a: items(p) for a, p in arms.items()}}},
        ],
    }


def test_endpoint_mask_and_matrices():
    assert endpoint_mask(TEMPLATES) == [True, False, True, False, True]
    runs = [record(1, ("10000", "00000"), {"visplay": ("11101", "10000")})]
    assert arm_matrix(runs, "visplay", 1) == [[1.0, 1.0, 1.0]]  # items 0, 2, 4
    assert arm_matrix(runs, "visplay", 1, "margin") == [[0.0, 1.0, 1.0]]  # real minus swapped
    assert arm_matrix(runs, "oracle", 1) is None


def test_compare_hand_computed():
    base = ("10000", "00000")  # endpoint items right: 1 of 3
    runs = [
        record(1, base, {"oracle": ("10101", "00000"), "visplay": ("10100", "00000")}),
        record(2, base, {"oracle": ("10101", "00000"), "visplay": ("10001", "10000")}),
    ]
    claims = {c["t"]: c for c in compare(runs, reps=200)}
    one = claims[1]
    assert one["arms"]["base"]["endpoint"]["mean"] == pytest.approx(1 / 3, abs=1e-6)
    assert one["arms"]["oracle"]["endpoint_gain"]["mean"] == pytest.approx(2 / 3, abs=1e-6)
    assert one["arms"]["visplay"]["endpoint_gain"]["mean"] == pytest.approx(1 / 3, abs=1e-6)
    # margins: base 1/3; VisPlay seed 1: 2/3, seed 2: (1-1 + 0 + 1)/3 = 1/3 -> mean 1/2, gain 1/6
    assert one["arms"]["visplay"]["margin_gain"]["mean"] == pytest.approx(1 / 6, abs=1e-6)
    rec = one["recovery"]["visplay"]
    assert rec["visplay_gain"] == pytest.approx(1 / 3, abs=1e-6)
    assert rec["oracle_gain"]["mean"] == pytest.approx(2 / 3, abs=1e-6)
    # three endpoint items: a resample of item 0 alone gives the oracle no gain, so its interval reaches 0 and the
    # recovery fraction is undefined; tests/world/test_stats_on_cpu.py has the defined case
    assert rec["oracle_gain"]["lo"] == 0.0 and not rec["defined"] and rec["mean"] is None
    assert "frozen" not in one["arms"] and "frozen" not in one["recovery"]
    assert one["questioner"] == {}  # no frozen-questioner arm: nothing to compare VisPlay with
    assert claims[0]["arms"].keys() == {"base"}


def test_pooled_precision_adds_counts_over_seeds():
    def run(n, precision):
        table = {"0.5": {"n": n, "precision": precision, "in_band": True}}
        return {"iterations": [{"t": 1, "loop": {"visplay": {"labels": {"precision_by_confidence": table}}}}]}

    pooled = pooled_precision([run(10, 0.3), run(30, 0.5)], "visplay")
    assert pooled["1"]["0.5"]["n"] == 40 and pooled["1"]["0.5"]["mean"] == pytest.approx(18 / 40)
    assert pooled["1"]["0.5"]["lo"] < 18 / 40 < pooled["1"]["0.5"]["hi"]
    assert pooled_precision([run(10, 0.3)], "frozen") == {}


def test_portable_paths_rewrites_machine_prefixes_only():
    from verl_ext.world.results import portable_paths

    places = {"/m/out": "<out>", "/m/out/cache": "<cache>", "/r": "<repo>"}
    data = {"a": ["/m/out/seed_1/x", "/m/out/cache/w", "/r", "/rx/y", 3], "b": {"c": "/m/outside"}}
    assert portable_paths(data, places) == {
        "a": ["<out>/seed_1/x", "<cache>/w", "<repo>", "/rx/y", 3],
        "b": {"c": "/m/outside"},
    }


def test_the_questioner_effect_is_visplay_minus_frozen_paired():
    base = ("10000", "00000")
    runs = [
        record(1, base, {"visplay": ("10101", "00001"), "frozen": ("10000", "00000")}),
        record(2, base, {"visplay": ("10100", "00000"), "frozen": ("10001", "10000")}),
    ]
    effect = compare(runs, reps=300)[1]["questioner"]
    # endpoint items (0, 2, 4): VisPlay 3/3 and 2/3 right, frozen 1/3 and 2/3 -> difference (2/3 + 0) / 2
    assert effect["endpoint_gain"]["mean"] == pytest.approx(1 / 3, abs=1e-6)
    # margins: VisPlay 2/3 and 2/3, frozen 1/3 and 1/3 (seed 2: item 0 right with its image and swapped) -> 1/3
    assert effect["margin_gain"]["mean"] == pytest.approx(1 / 3, abs=1e-6)
    visplay, frozen = arm_matrix(runs, "visplay", 1), arm_matrix(runs, "frozen", 1)
    assert effect["endpoint_gain"] == paired_bootstrap(visplay, frozen, 300, 0)  # the same paired draw
    assert effect["endpoint_gain"] != paired_bootstrap(visplay, arm_matrix(runs, "base", 1), 300, 0)
    assert questioner_effect(runs, 1, 300) == effect and questioner_effect(runs, 0, 300) == {}


@pytest.mark.parametrize(
    "lo, hi, found",
    [(0.01, 0.09, "a difference"), (-0.09, -0.01, "a difference"), (-0.02, 0.06, "no measurable difference")],
)
def test_the_questioner_verdict_needs_an_interval_that_excludes_zero(lo, hi, found):
    cell = {"mean": (lo + hi) / 2, "lo": lo, "hi": hi}
    wide = {"mean": 0.0, "lo": -0.1, "hi": 0.1}
    line = questioner_verdict(2, {"endpoint_gain": cell, "margin_gain": wide})
    assert line.startswith("Training the questioner at t = 2 (VisPlay minus VisPlay, Q frozen at Q0, paired)")
    assert line.endswith(f": {found}.")
    assert questioner_verdict(2, {"endpoint_gain": wide, "margin_gain": cell}).endswith(f": {found}.")


def test_results_show_the_questioner_effect_only_when_it_was_measured():
    base = ("10000", "00000")
    runs = [record(1, base, {"oracle": base, "visplay": ("10101", "00000"), "frozen": ("10000", "00000")})]
    results = {"config": {}, "per_seed": runs, "summary": [], "claims": compare(runs, reps=100)}
    markdown = render_markdown(results)
    assert "## Training the questioner: VisPlay minus VisPlay with Q frozen at Q0" in markdown
    assert "- Training the questioner at t = 1 (VisPlay minus VisPlay, Q frozen at Q0, paired): endpoint +0.667" in (
        markdown
    )
    for claim in results["claims"]:
        claim.pop("questioner")  # a results.json written before the comparison existed
    assert "Training the questioner" not in render_markdown(results)
