"""Speed and exactness of `repetition_penalty` against the reference pipeline (nltk BLEU matrix + sklearn clustering).

    python benchmarks/bench_repetition_penalty.py          # B = 256, 512 side by side; 1024..4096 ours, nltk projected
    python benchmarks/bench_repetition_penalty.py --quick  # B = 64, 128 side by side; 4096 ours

Prints a markdown table; exits 1 if a measured partition (or a BLEU value) differs from the reference's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from questions import generate_questions  # noqa: E402

from verl_ext.visplay import pairwise_bleu, repetition_penalty  # noqa: E402

THRESHOLD = 0.5


def reference(questions: list[str], threshold: float = THRESHOLD) -> tuple[list[float], np.ndarray]:
    """What the reference code does: nltk sentence BLEU per pair, then sklearn's agglomerative clustering."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from sklearn.cluster import AgglomerativeClustering

    smooth = SmoothingFunction().method1
    n = len(questions)
    similarity = np.eye(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            hypothesis = questions[i].split()
            for j in range(i + 1, n):
                value = sentence_bleu([questions[j].split()], hypothesis, smoothing_function=smooth)
                similarity[i, j] = similarity[j, i] = value
    model = AgglomerativeClustering(
        n_clusters=None, distance_threshold=threshold, metric="precomputed", linkage="average"
    )
    labels = model.fit(1 - similarity).labels_
    sizes = np.bincount(labels)
    return [int(sizes[label]) / n for label in labels], similarity


def time_ours(questions: list[str], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of `repeats` calls (the first call included), and the result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = repetition_penalty(questions, THRESHOLD)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller side-by-side sizes, for a CI smoke run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    measured, ours_only = ((64, 128), (4096,)) if args.quick else ((256, 512), (1024, 2048, 4096))

    print(f"repetition_penalty vs nltk sentence_bleu + sklearn AgglomerativeClustering (threshold {THRESHOLD})")
    print(f"{os.cpu_count()} CPU cores; questions: benchmarks/questions.py, seed {args.seed}; ours = median of runs\n")
    print("| B | ours (s) | nltk+sklearn (s) | ratio | identical |")
    print("|---:|---:|---:|---:|:---|")
    failures = 0
    base_b = base_time = None
    for b in measured:
        questions = generate_questions(b, seed=args.seed)
        ours_time, ours = time_ours(questions, repeats=5)
        start = time.perf_counter()
        expected, similarity = reference(questions)
        ref_time = time.perf_counter() - start
        same_partition = ours == expected
        same_bleu = np.array_equal(pairwise_bleu(questions), similarity)
        failures += not (same_partition and same_bleu)
        verdict = "yes" if same_partition and same_bleu else f"NO (penalties {same_partition}, BLEU {same_bleu})"
        print(f"| {b} | {ours_time:.4f} | {ref_time:.2f} | {ref_time / ours_time:.0f}x | {verdict} |", flush=True)
        base_b, base_time = b, ref_time
    for b in ours_only:
        questions = generate_questions(b, seed=args.seed)
        ours_time, _ = time_ours(questions, repeats=3)
        projected = base_time * (b * (b - 1)) / (base_b * (base_b - 1))  # the reference is quadratic in pairs
        print(
            f"| {b} | {ours_time:.3f} | {projected:.0f} (projected) | {projected / ours_time:.0f}x (projected) "
            "| not measured |",
            flush=True,
        )
    if failures:
        print(f"\n{failures} measured batch(es) differ from the reference", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
