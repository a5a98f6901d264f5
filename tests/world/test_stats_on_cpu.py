"""The world's interval arithmetic against numpy and hand-computed values: quantiles, the paired item x seed bootstrap,
the recovery fraction, Wilson intervals, precision by confidence, the gate's choice and the reasoner budgets."""

import random

import numpy as np
import pytest

from verl_ext.world import stats


def test_quantile_matches_numpy():
    rng = random.Random(3)
    for n in (1, 2, 7, 100):
        xs = [rng.uniform(-1, 1) for _ in range(n)]
        for q in (0.0, 0.025, 0.5, 0.975, 1.0):
            assert stats.quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)))
    with pytest.raises(ValueError):
        stats.quantile([], 0.5)


def _matrix(rng, seeds, items, p):
    return [[float(rng.random() < p) for _ in range(items)] for _ in range(seeds)]


def test_paired_bootstrap_matches_a_numpy_reference_on_the_same_draws():
    rng = random.Random(0)
    arm, base = _matrix(rng, 3, 40, 0.6), _matrix(rng, 1, 40, 0.4)
    draws = stats.bootstrap_draws(3, 40, reps=500, seed=1)
    got = stats.paired_bootstrap(arm, base, draws=draws)
    d = np.array(arm) - np.array(base)  # the base row broadcast to every seed
    reps = [d[np.ix_(s, i)].mean() for s, i in zip(*draws, strict=True)]  # each replicate by plain indexing
    assert got["mean"] == pytest.approx(d.mean(), abs=1e-6)
    assert got["lo"] == pytest.approx(np.quantile(reps, 0.025), abs=1e-6)
    assert got["hi"] == pytest.approx(np.quantile(reps, 0.975), abs=1e-6)
    assert got["lo"] <= got["mean"] <= got["hi"] and (got["seeds"], got["items"]) == (3, 40)


def test_paired_bootstrap_hand_cases():
    # a constant difference has a zero-width interval at that constant
    assert stats.paired_bootstrap([[1, 1, 0], [1, 1, 0]], [[0, 0, -1]], reps=50) == {
        "mean": 1.0, "lo": 1.0, "hi": 1.0, "seeds": 2, "items": 3}  # fmt: skip
    # pairing: the same items in both arms cancel exactly, however hard each item is
    same = [[1, 0, 1, 0, 1]]
    assert stats.paired_bootstrap(same, same, reps=50)["hi"] == 0.0
    # a real, consistent gain: the interval is above zero
    rng = random.Random(5)
    base = _matrix(rng, 1, 200, 0.3)
    arm = [[max(b, float(rng.random() < 0.3)) for b in base[0]] for _ in range(3)]
    assert stats.paired_bootstrap(arm, base, reps=300)["lo"] > 0
    with pytest.raises(ValueError):
        stats.paired_bootstrap([[1, 0]], [[1, 0, 1]])


def test_seed_resampling_widens_the_interval_when_seeds_disagree():
    base = [[0.0] * 50]
    agree = [[1.0] * 25 + [0.0] * 25 for _ in range(3)]
    disagree = [[1.0] * 50, [0.0] * 50, [0.5] * 50]  # same mean, all the variance between seeds
    a, d = stats.paired_bootstrap(agree, base, reps=400), stats.paired_bootstrap(disagree, base, reps=400)
    assert a["mean"] == d["mean"] == 0.5
    assert d["hi"] - d["lo"] > a["hi"] - a["lo"]


def test_recovery_fraction():
    base = [[0.0] * 100]
    oracle = [[1.0] * 40 + [0.0] * 60] * 2  # +0.4 over the base
    visplay = [[1.0] * 10 + [0.0] * 90] * 2  # +0.1
    rec = stats.recovery_fraction(visplay, oracle, base, reps=300)
    assert rec["defined"] and rec["mean"] == pytest.approx(0.25) and rec["lo"] <= 0.25 <= rec["hi"]
    assert rec["oracle_gain"]["mean"] == pytest.approx(0.4)
    flat = stats.recovery_fraction(visplay, [[0.0] * 100] * 2, base, reps=100)
    assert not flat["defined"] and flat["mean"] is None and "positive control" in flat["why"]


def test_wilson_matches_the_formula():
    k, n, z = 7, 20, 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    w = stats.wilson(k, n)
    assert (w["mean"], w["n"]) == (0.35, 20)
    assert w["lo"] == pytest.approx(centre - half, abs=1e-6) and w["hi"] == pytest.approx(centre + half, abs=1e-6)
    assert stats.wilson(0, 10)["lo"] == 0.0 and stats.wilson(10, 10)["hi"] == 1.0
    assert stats.wilson(0, 0)["mean"] is None


def test_precision_by_confidence_and_difficulty():
    pairs = [(0.5, True), (0.5, False), (0.75, True), (0.75, True), (0.75, False), (0.25, False)]
    got = stats.precision_by_confidence(pairs)
    assert list(got) == ["0.25", "0.5", "0.75"]
    assert got["0.75"]["mean"] == pytest.approx(2 / 3) and got["0.75"]["n"] == 3
    assert got["0.25"]["mean"] == 0.0
    assert stats.difficulty([0.5, 0.75, 1.0, None]) == 0.25 and stats.difficulty([]) is None


def test_gate_choice():
    scan = [{"budget": 4, "gain": 0.07}, {"budget": 1, "gain": 0.01}, {"budget": 2, "gain": 0.06}]
    assert stats.gate_choice(scan) == {"passed": True, "budget": 2, "gain": 0.06, "threshold": 0.05}
    # none passes: the smallest budget, whatever the (noisy) gains of the larger ones
    low = [{"budget": 4, "gain": 0.03}, {"budget": 2, "gain": None}, {"budget": 1, "gain": -0.01}]
    assert stats.gate_choice(low) == {"passed": False, "budget": 1, "gain": -0.01, "threshold": 0.05}
    assert stats.gate_choice(low, threshold=0.03)["budget"] == 4  # the threshold itself counts as passing
    with pytest.raises(ValueError):
        stats.gate_choice([])


@pytest.mark.parametrize("multiple", [1, 2, 4, 8, 32])
def test_budget_overrides_multiply_the_rollouts(multiple):
    got = dict(o.split("=") for o in stats.budget_overrides(multiple, steps=32, batch=8))
    steps, batch = int(got["reasoner.steps"]), int(got["reasoner.grpo.rollout_batch_size"])
    assert steps * batch == 32 * 8 * multiple
    assert batch <= 64 and got["reasoner.grpo.global_batch_size"] == got["reasoner.grpo.rollout_batch_size"]
    with pytest.raises(ValueError):
        stats.budget_overrides(0, 32, 8)
