"""VisPlay's repetition penalty: cluster a step's questions by 1 - BLEU and charge each its cluster's batch share.

The partition is exactly sklearn's `AgglomerativeClustering(n_clusters=None, distance_threshold=t,
metric="precomputed", linkage="average")` on that distance, computed with scipy alone (no sklearn at run time).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.cluster.hierarchy import linkage

from .bleu import condensed_bleu

DEFAULT_THRESHOLD = 0.5  # the paper's and the reference code's distance threshold on 1 - BLEU


def repetition_penalty(questions: Sequence[object], threshold: float = DEFAULT_THRESHOLD) -> list[float]:
    """Per question, |its cluster| / B: the share of the batch that repeats it (the paper's r_rep with lambda 1).

    Clusters are sklearn's average-linkage agglomerative clustering of d = 1 - BLEU (see `cluster_labels`), BLEU
    as `pairwise_bleu` computes it. B = 0 gives []; B = 1 gives [1.0] (a lone question is its own whole cluster;
    sklearn itself needs two samples). A non-str entry (None, a number) is treated as the empty question "".
    """
    n = len(questions)
    if n == 0:
        return []
    labels = cluster_labels(questions, threshold)
    sizes = np.bincount(labels)
    return (sizes[labels] / n).tolist()


def cluster_labels(questions: Sequence[object], threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Cluster labels (0, 1, ... in order of first appearance) of the questions under d = 1 - BLEU.

    The partition equals that of sklearn's `AgglomerativeClustering(n_clusters=None, distance_threshold=threshold,
    metric="precomputed", linkage="average").fit(d)`, labels up to renaming; a single question gets label 0.
    """
    n = len(questions)
    if n < 2:
        _check_threshold(threshold)
        return np.zeros(n, dtype=np.int64)
    return threshold_cut(1.0 - condensed_bleu(questions), n, threshold)


def threshold_cut(distances: np.ndarray, n: int, threshold: float) -> np.ndarray:
    """Average-linkage clusters of `n` points from condensed `distances`, cut as sklearn cuts at a threshold.

    sklearn builds the tree with this very scipy call, counts the merges at distance >= threshold, and undoes
    that many of the last merges; so the clusters are the first (n - 1) - count merges, ties included.
    """
    _check_threshold(threshold)
    tree = linkage(distances, method="average")
    applied = (n - 1) - int(np.count_nonzero(tree[:, 2] >= threshold))
    pairs = tree[:applied, :2].astype(np.int64).tolist()
    # A merged node's root is its parent's root: walk the applied merges from the last (highest node) down.
    root = list(range(n + applied))
    for step in range(applied - 1, -1, -1):
        left, right = pairs[step]
        root[left] = root[right] = root[n + step]
    _, labels = np.unique(np.asarray(root[:n]), return_inverse=True)
    return _first_appearance_order(labels.reshape(-1))


def _first_appearance_order(labels: np.ndarray) -> np.ndarray:
    _, first = np.unique(labels, return_index=True)
    rename = np.empty(len(first), dtype=np.int64)
    rename[np.argsort(first)] = np.arange(len(first))
    return rename[labels]


def _check_threshold(threshold: float) -> None:
    # sklearn's own constraint on distance_threshold (math.inf allowed: everything merges)
    if not float(threshold) >= 0:
        raise ValueError(f"threshold must be a distance >= 0, got {threshold!r}")
