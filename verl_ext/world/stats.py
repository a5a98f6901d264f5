"""Intervals for the world's claims: a paired item x seed bootstrap against the base, the recovery fraction, Wilson
intervals for precisions, the gate's decision, the reasoner budgets. No torch; numpy for the bootstrap's replicates
(the tests check them against a plain indexing reference and hand-computed values).

The bootstrap is paired: every replicate draws seeds with replacement and items with replacement, and the same draw
is applied to every arm and to the base, so item difficulty and the shared eval set cancel in the differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LEVEL = 0.95
REPS = 2000


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile with linear interpolation between order statistics (numpy's default method)."""
    if not values:
        raise ValueError("quantile of no values")
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def bootstrap_draws(n_seeds: int, n_items: int, reps: int = REPS, seed: int = 0) -> tuple:
    """`reps` paired draws with replacement: (seed indices, reps x n_seeds; item indices, reps x n_items)."""
    import numpy as np

    rng = np.random.default_rng([seed, n_seeds, n_items, reps])
    return rng.integers(0, n_seeds, size=(reps, n_seeds)), rng.integers(0, n_items, size=(reps, n_items))


def _check(matrix: Sequence[Sequence[float]]) -> tuple[int, int]:
    if not matrix or not matrix[0]:
        raise ValueError("need at least one seed and one item")
    n_items = len(matrix[0])
    if any(len(row) != n_items for row in matrix):
        raise ValueError("every seed needs the same items")
    return len(matrix), n_items


def differences(arm: Sequence[Sequence[float]], base: Sequence[Sequence[float]]) -> list[list[float]]:
    """arm - base per (seed, item); `base` may have one row (one base model shared by every seed)."""
    n_seeds, n_items = _check(arm)
    if len(base) == 1:
        base = [base[0]] * n_seeds
    if _check(base) != (n_seeds, n_items):
        raise ValueError("arm and base differ in seeds or items")
    return [[float(a) - float(b) for a, b in zip(ra, rb, strict=True)] for ra, rb in zip(arm, base, strict=True)]


def replicate_means(values: Sequence[Sequence[float]], draws) -> list[float]:
    """The mean of `values` (seeds x items) under each draw: with W the drawn seeds' counts (reps x seeds) and C the
    drawn items' counts (reps x items), sum((W @ values) * C) / (seeds x items) per replicate."""
    import numpy as np

    seeds, items = draws
    d = np.asarray(values, dtype=float)
    w, c = _counts(seeds, d.shape[0]), _counts(items, d.shape[1])
    return (((w @ d) * c).sum(axis=1) / (seeds.shape[1] * items.shape[1])).tolist()


def _counts(index, n: int):
    """How often each of 0..n-1 occurs in each row of `index` (reps x k) -> reps x n."""
    import numpy as np

    reps = index.shape[0]
    flat = (index + n * np.arange(reps)[:, None]).ravel()
    return np.bincount(flat, minlength=reps * n).reshape(reps, n).astype(float)


def mean2(values: Sequence[Sequence[float]]) -> float:
    return sum(sum(row) for row in values) / sum(len(row) for row in values)


def interval(point: float, reps: Sequence[float], level: float = LEVEL) -> dict:
    alpha = (1 - level) / 2
    return {"mean": round(point, 6), "lo": round(quantile(reps, alpha), 6), "hi": round(quantile(reps, 1 - alpha), 6)}


def paired_bootstrap(
    arm: Sequence[Sequence[float]],
    base: Sequence[Sequence[float]],
    reps: int = REPS,
    seed: int = 0,
    level: float = LEVEL,
    draws=None,
) -> dict:
    """Mean of arm - base over seeds and items with its percentile interval under the paired item x seed bootstrap."""
    d = differences(arm, base)
    draws = draws if draws is not None else bootstrap_draws(len(d), len(d[0]), reps, seed)
    return {**interval(mean2(d), replicate_means(d, draws), level), "seeds": len(d), "items": len(d[0])}


def recovery_fraction(
    visplay: Sequence[Sequence[float]],
    oracle: Sequence[Sequence[float]],
    base: Sequence[Sequence[float]],
    reps: int = REPS,
    seed: int = 0,
    level: float = LEVEL,
) -> dict:
    """(VisPlay - base) / (oracle - base) with a paired bootstrap interval. Defined only when the oracle's gain is
    positive with the interval above zero: without a working positive control there is nothing to recover."""
    dv, do = differences(visplay, base), differences(oracle, base)
    if (len(dv), len(dv[0])) != (len(do), len(do[0])):
        raise ValueError("VisPlay and oracle arms differ in seeds or items")
    draws = bootstrap_draws(len(dv), len(dv[0]), reps, seed)
    gain_v, gain_o = mean2(dv), mean2(do)
    reps_o = replicate_means(do, draws)
    oracle_ci = interval(gain_o, reps_o, level)
    out = {"visplay_gain": round(gain_v, 6), "oracle_gain": oracle_ci}
    if oracle_ci["lo"] <= 0:
        return {**out, "mean": None, "lo": None, "hi": None, "defined": False,
                "why": "the oracle arm's gain over the base is not above zero (no positive control)"}  # fmt: skip
    # replicates whose oracle gain is not positive have no ratio; they are dropped and counted (at most a few %)
    ratios = [v / o for v, o in zip(replicate_means(dv, draws), reps_o, strict=True) if o > 0]
    return {**out, **interval(gain_v / gain_o, ratios, level), "defined": True,
            "dropped_replicates": len(reps_o) - len(ratios)}  # fmt: skip


def wilson(k: float, n: int, z: float = 1.959964) -> dict:
    """Wilson score interval of a proportion k / n."""
    if n <= 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"mean": round(p, 6), "lo": round(max(0.0, centre - half), 6), "hi": round(min(1.0, centre + half), 6),
            "n": n}  # fmt: skip


def precision_by_confidence(pairs: Sequence[tuple[float, bool]]) -> dict[str, dict]:
    """Pseudo-label precision per confidence value p with its Wilson interval; `pairs` = (p, label is right)."""
    cells: dict[float, list[int]] = {}
    for p, right in pairs:
        cells.setdefault(round(float(p), 6), []).append(int(bool(right)))
    return {f"{p:g}": wilson(sum(v), len(v)) for p, v in sorted(cells.items())}


def difficulty(confidences: Sequence[float]) -> float | None:
    """1 - mean confidence p of the labelled questions (the loop's difficulty, here under a fixed scorer)."""
    vals = [float(c) for c in confidences if c is not None]
    return round(1 - sum(vals) / len(vals), 6) if vals else None


# ---------------------------------------------------------------------------------------------------------------
# The gate and the reasoner budgets
# ---------------------------------------------------------------------------------------------------------------

GATE_GAIN = 0.05  # the oracle arm must gain this much on the endpoint (dev split) before the main run


def gate_choice(scan: Sequence[dict], threshold: float = GATE_GAIN) -> dict:
    """The smallest budget whose oracle gain on the endpoint reaches `threshold` (`scan`: dicts with budget and
    gain, any order); otherwise the smallest budget, marked as not passing. Without a working positive control no
    budget is better than another: the largest of several gains inside their noise would be a pick of noise, and
    the smallest budget is the cheapest main run. `gain` reports the chosen budget's own gain."""
    if not scan:
        raise ValueError("an empty gate scan")
    ordered = sorted(scan, key=lambda c: c["budget"])
    for cell in ordered:
        if cell["gain"] is not None and cell["gain"] >= threshold:
            return {"passed": True, "budget": cell["budget"], "gain": cell["gain"], "threshold": threshold}
    smallest = ordered[0]
    return {"passed": False, "budget": smallest["budget"], "gain": smallest["gain"], "threshold": threshold}


def budget_overrides(multiple: int, steps: int, batch: int, max_batch: int = 64) -> list[str]:
    """Recipe overrides giving the reasoner `multiple` x its rollouts per stage (steps x batch): the batch grows first,
    up to `max_batch` questions per step (a band-filtered iteration keeps about 230), then the steps."""
    if multiple < 1:
        raise ValueError("a budget multiple is at least 1")
    grow = max(1, min(multiple, max_batch // max(1, batch)))
    while multiple % grow:
        grow -= 1
    new_batch, new_steps = batch * grow, steps * (multiple // grow)
    return [
        f"reasoner.steps={new_steps}",
        f"reasoner.grpo.rollout_batch_size={new_batch}",
        f"reasoner.grpo.global_batch_size={new_batch}",
    ]
