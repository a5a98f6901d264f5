"""Majority vote: the plain pairwise greedy grader loop (math_verify per comparison) against majority_vote_batch,
on synthetic reasoner outputs. Exits 1 if any vote (label, confidence, groups) differs.

Two mixes of 1,000 questions x 10 responses: "brief" (numerals 12/12.0/{12}, letters A/(A)/\\text{A}, fractions
and decimals, unparsable responses, long reasoning before the box) and "hard" (the same plus answers with units and
surds, which need sympy). `--reference` adds the loop as the reference code runs it: exact match, else math_verify
on every comparison, no canonical key and no cache (slow).

    python benchmarks/bench_majority_vote.py              # both mixes
    python benchmarks/bench_majority_vote.py --reference  # plus the reference-style loop
    python benchmarks/bench_majority_vote.py --quick      # CI smoke: 100 questions
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from fractions import Fraction

from verl_ext.visplay.grading import MathGrader, canonical_key
from verl_ext.visplay.parsing import extract_boxed
from verl_ext.visplay.voting import majority_vote_batch

FILLER = (
    "Looking at the image, the chart shows several bars. Let me count them carefully and compare heights. "
    "The tallest bar is labelled with a value, and the axis ticks increase by 5 each step. "
)


def _int_forms(v: int) -> list[str]:
    return [str(v)] * 4 + [f"{v}.0", f"{{{v}}}", f"\\text{{{v}}}", f"{v}.00", f"${v}$"]


def _int_forms_with_units(v: int) -> list[str]:
    return _int_forms(v) + [f"{v} \\text{{ units}}", f"{v}\\,\\mathrm{{cm}}"]


def _letter_forms(c: str) -> list[str]:
    return [c] * 4 + [f"({c})", f"\\text{{{c}}}", f"{c}.", f"\\textbf{{{c}}}", f"\\text{{({c})}}"]


def _frac_forms(f: Fraction) -> list[str]:
    forms = [f"\\frac{{{f.numerator}}}{{{f.denominator}}}"] * 3 + [
        f"{f.numerator}/{f.denominator}",
        f"\\dfrac{{{f.numerator}}}{{{f.denominator}}}",
    ]
    if f.denominator in (2, 4, 5, 8, 10, 20, 25):
        forms += [str(float(f))] * 2
    return forms


def _expr_forms(a: int, b: int) -> list[str]:
    return [f"{a}\\sqrt{{{b}}}", f"{a} \\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a}\\sqrt{{{b}}}"]


def make_question(rng: random.Random, m: int = 10, hard: bool = False) -> list[object]:
    kind = rng.choices(["int", "letter", "frac", "decimal", "expr"], weights=[45, 30, 10, 10, 5 if hard else 0])[0]
    if kind == "int":
        values = rng.sample(range(0, 2000), 4)
        forms = _int_forms_with_units if hard else _int_forms
    elif kind == "letter":
        values = rng.sample("ABCDE", 4)
        forms = _letter_forms
    elif kind == "frac":
        values = list({Fraction(rng.randint(1, 40), rng.choice([2, 3, 4, 5, 6, 8, 12])) for _ in range(4)})
        forms = _frac_forms
    elif kind == "decimal":
        values = list({round(rng.uniform(0, 100), rng.choice([1, 2])) for _ in range(4)})

        def forms(v):
            return [
                f"{v}",
                f"{v}0",
                f"{v:.3f}",
                f"\\frac{{{Fraction(str(v)).numerator}}}{{{Fraction(str(v)).denominator}}}",
            ]
    else:
        values = [(rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7])) for _ in range(3)]

        def forms(v):
            return _expr_forms(*v)

    p_correct = rng.uniform(0.2, 0.95)
    responses: list[object] = []
    for _ in range(m):
        r = rng.random()
        if r < 0.08:
            responses.append(
                rng.choice(["I cannot tell from the image.", "The answer is \\boxed{12", None, "\\boxed{}"])
            )
            continue
        value = values[0] if rng.random() < p_correct else rng.choice(values[1:])
        answer = rng.choice(forms(value))
        text = FILLER * rng.choice([0, 1, 3, 20]) + f"Therefore the answer is \\boxed{{{answer}}}."
        responses.append(text)
    return responses


def plain_vote(responses, equivalent):
    """The reference's greedy first-match loop, one equivalence call per comparison."""
    groups: list[list] = []
    for response in responses:
        answer = extract_boxed(response)
        if not answer or not canonical_key(answer):
            continue
        for group in groups:
            if equivalent(group[0], answer):
                group[1] += 1
                break
        else:
            groups.append([answer, 1])
    if not groups:
        return None, 0.0, ()
    best = max(range(len(groups)), key=lambda i: (groups[i][1], -i))
    return groups[best][0], groups[best][1] / len(responses), tuple((g[0], g[1]) for g in groups)


def plain_grader(grader: MathGrader):
    """The plain pairwise grader loop: canonical keys equal, else math_verify on every comparison (no cache, no
    shortcuts, no grouping by key). Same grader semantics as ours, so labels must be identical."""

    def equivalent(a: str, b: str) -> bool:
        ka, kb = canonical_key(a), canonical_key(b)
        return ka == kb or grader._run([(ka, kb)], grader.timeout)[0][0]

    return equivalent


def reference_style(grader: MathGrader):
    """What the reference code pays per comparison: exact string match, else math_verify (no key, no cache)."""

    def equivalent(a: str, b: str) -> bool:
        return a == b or grader._run([(a, b)], grader.timeout)[0][0]

    return equivalent


def _worker_cpu(grader: MathGrader) -> float:
    """CPU seconds used so far by the grader's worker process (Linux /proc; nan elsewhere)."""
    try:
        with open(f"/proc/{grader._proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):
        return math.nan


def timed(fn, data, baseline: str = "cached"):
    """Run on a fresh worker (start-up excluded). Returns (results, wall s, cpu s of this process + worker, stats).

    CPU time is reported next to wall time because the wall clock of a shared 2-core box is mostly other load.
    """
    grader = MathGrader()
    grader.start()
    worker_cpu = _worker_cpu(grader)
    wall, cpu = time.perf_counter(), time.process_time()
    if fn is majority_vote_batch:
        results = [(v.answer, v.confidence, v.counts) for v in majority_vote_batch(data, grader=grader)]
    else:
        equivalent = {"cached": grader.equivalent, "plain": plain_grader, "reference": reference_style}[baseline]
        equivalent = equivalent if baseline == "cached" else equivalent(grader)
        results = [fn(responses, equivalent) for responses in data]
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu + _worker_cpu(grader) - worker_cpu
    stats = dict(grader.stats)
    grader.close()
    return results, wall, cpu, stats


def _row(name: str, n: int, base: tuple[float, float], ours: tuple[float, float], same: str) -> str:
    return (
        f"| {name} | {n} | {base[0]:.2f} / {base[1]:.2f} | {ours[0]:.2f} / {ours[1]:.2f} "
        f"| {base[0] / max(ours[0], 1e-9):.1f}x / {base[1] / max(ours[1], 1e-9):.1f}x | {same} |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 questions (CI smoke)")
    parser.add_argument("--questions", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", action="store_true", help="add the (slow) reference-style loop")
    args = parser.parse_args(argv)
    n = args.questions or (100 if args.quick else 1000)

    columns = ["mix", "baseline loop", "n questions", "plain s (wall / cpu)", "ours s (wall / cpu)"]
    print("| " + " | ".join(columns) + " | ratio (wall / cpu) | labels identical |")
    print("|---|---|---|---|---|---|---|")
    all_same = True
    details = []
    for mix in ("brief", "hard"):
        rng = random.Random(args.seed)
        data = [make_question(rng, hard=mix == "hard") for _ in range(n)]
        ours, ours_wall, ours_cpu, ours_stats = timed(majority_vote_batch, data)
        plain, plain_wall, plain_cpu, plain_stats = timed(plain_vote, data, baseline="plain")
        same = plain == ours
        all_same &= same
        name = f"{mix} | plain pairwise grader loop (key equal, else math_verify)"
        print(_row(name, n, (plain_wall, plain_cpu), (ours_wall, ours_cpu), str(same)), flush=True)
        cached, cached_wall, cached_cpu, _ = timed(plain_vote, data)
        same = cached == ours
        all_same &= same
        name = f"{mix} | greedy loop over our cached answers_equivalent"
        print(_row(name, n, (cached_wall, cached_cpu), (ours_wall, ours_cpu), str(same)), flush=True)
        if args.reference:
            ref, ref_wall, ref_cpu, _ = timed(plain_vote, data, baseline="reference")
            agree = sum(r[:2] == o[:2] for r, o in zip(ref, ours, strict=True))
            name = f"{mix} | reference-style: exact match else math_verify, no key, no cache"
            print(_row(name, n, (ref_wall, ref_cpu), (ours_wall, ours_cpu), f"n/a (same y*, p: {agree}/{n})"))
        details.append(f"{mix}: ours grader {ours_stats}\n{mix}: plain grader {plain_stats}")
    print("\n" + "\n".join(details))
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
