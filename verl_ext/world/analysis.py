"""From the per-seed records to the claims: each arm's endpoint and image margin with paired item x seed bootstrap
intervals against the base, the recovery fraction, pooled pseudo-label precision by confidence. No torch, no models.

A per-seed record holds, per iteration t and arm, the eval items' correctness as strings of 0/1 (`items.<arm>.greedy`
and `items.<arm>.greedy_swapped`, in the order of the record's `eval_templates`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .evalset import ENDPOINT_FAMILIES
from .grammar import BY_ID
from .metrics import dig
from .stats import REPS, paired_bootstrap, recovery_fraction, wilson

ARMS = ("base", "oracle", "visplay", "frozen")  # frozen: VisPlay with the questioner frozen at Q_0
TRAINED = ("oracle", "visplay", "frozen")
PSEUDO_ARMS = ("visplay", "frozen")  # arms that learn from pseudo-labels


def bits(text: str) -> list[float]:
    return [float(c == "1") for c in text]


def endpoint_mask(templates: Sequence[str]) -> list[bool]:
    return [BY_ID[t].family in ENDPOINT_FAMILIES for t in templates]


def _select(values: list[float], mask: list[bool]) -> list[float]:
    return [v for v, keep in zip(values, mask, strict=True) if keep]


def arm_matrix(per_seed: list[dict], arm: str, t: int, kind: str = "endpoint") -> list[list[float]] | None:
    """Seeds x endpoint items of one arm at iteration t: greedy correctness (`endpoint`) or greedy minus greedy with
    the images swapped (`margin`); None when an arm or seed lacks it."""
    rows = []
    for run in per_seed:
        rec = next((r for r in run["iterations"] if r["t"] == t), None)
        items = dig(rec or {}, f"items.{arm}")
        if not items or "greedy" not in items:
            return None
        mask = endpoint_mask(run["eval_templates"])
        real = _select(bits(items["greedy"]), mask)
        if kind == "margin":
            if "greedy_swapped" not in items:
                return None
            swapped = _select(bits(items["greedy_swapped"]), mask)
            real = [a - b for a, b in zip(real, swapped, strict=True)]
        rows.append(real)
    return rows


def compare(per_seed: list[dict], reps: int = REPS, seed: int = 0) -> list[dict]:
    """Per iteration t >= 1: each arm's endpoint and margin (value with interval), its gain over the base on both
    (paired bootstrap), the recovery fractions of VisPlay and the frozen-questioner arm against the oracle, and what
    training the questioner adds (`questioner`: VisPlay minus the frozen-questioner arm, paired)."""
    ts = sorted({r["t"] for run in per_seed for r in run["iterations"]})
    out = []
    for t in ts:
        base = {k: arm_matrix(per_seed, "base", t, k) for k in ("endpoint", "margin")}
        if base["endpoint"] is None:
            continue
        zeros = [[0.0] * len(base["endpoint"][0])]
        rec: dict = {"t": t, "arms": {}}
        for arm in ARMS:
            cell = {}
            for kind in ("endpoint", "margin"):
                m = arm_matrix(per_seed, arm, t, kind)
                if m is None:
                    continue
                cell[kind] = paired_bootstrap(m, zeros, reps, seed)
                if arm != "base":
                    cell[f"{kind}_gain"] = paired_bootstrap(m, base[kind], reps, seed)
            if cell:
                rec["arms"][arm] = cell
        oracle = arm_matrix(per_seed, "oracle", t)
        rec["recovery"] = {}
        for arm in PSEUDO_ARMS:
            m = arm_matrix(per_seed, arm, t)
            if m is not None and oracle is not None:
                rec["recovery"][arm] = recovery_fraction(m, oracle, base["endpoint"], reps, seed)
        rec["questioner"] = questioner_effect(per_seed, t, reps, seed)
        out.append(rec)
    return out


def questioner_effect(per_seed: list[dict], t: int, reps: int = REPS, seed: int = 0) -> dict:
    """The questioner's own test: VisPlay minus VisPlay with the questioner frozen at Q_0 on the endpoint and the
    margin, paired over the same seeds and items (the two arms differ only in Q_t's training); {} without both."""
    out = {}
    for kind in ("endpoint", "margin"):
        trained, frozen = arm_matrix(per_seed, "visplay", t, kind), arm_matrix(per_seed, "frozen", t, kind)
        if trained is not None and frozen is not None:
            out[f"{kind}_gain"] = paired_bootstrap(trained, frozen, reps, seed)
    return out


def pooled_precision(per_seed: list[dict], arm: str) -> dict[str, dict[str, dict]]:
    """Per iteration, pseudo-label precision per confidence p pooled over seeds, with Wilson intervals."""
    out: dict[str, dict[str, dict]] = {}
    for run in per_seed:
        for rec in run["iterations"]:
            table = dig(rec, f"loop.{arm}.labels.precision_by_confidence") or {}
            slot = out.setdefault(str(rec["t"]), {})
            for p, cell in table.items():
                agg = slot.setdefault(p, {"n": 0, "right": 0})
                agg["n"] += cell["n"]
                agg["right"] += round((cell["precision"] or 0.0) * cell["n"])
    return {
        t: {p: wilson(c["right"], c["n"]) for p, c in sorted(slot.items(), key=lambda kv: float(kv[0]))}
        for t, slot in out.items()
        if slot
    }
