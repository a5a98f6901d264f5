import random
import warnings

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform
from sklearn.cluster import AgglomerativeClustering

from verl_ext.visplay import repetition_penalty
from verl_ext.visplay.bleu import condensed_bleu
from verl_ext.visplay.diversity import cluster_labels, threshold_cut

SMOOTH = SmoothingFunction().method1
TOPICS = "car cat dog bus chart bar line pie tree sky boat bird".split()
FILLER = "what how many is the of in on left right color red blue green count total value".split()


def nltk_distance(questions: list[str]) -> np.ndarray:
    """1 - BLEU with nltk (earlier question as hypothesis), as the reference code feeds sklearn."""
    n = len(questions)
    similarity = np.eye(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            for j in range(i + 1, n):
                hyp, ref = questions[i].split(), questions[j].split()
                similarity[i, j] = similarity[j, i] = sentence_bleu([ref], hyp, smoothing_function=SMOOTH)
    return 1 - similarity


def sklearn_labels(distance: np.ndarray, threshold: float) -> np.ndarray:
    model = AgglomerativeClustering(
        n_clusters=None, distance_threshold=threshold, metric="precomputed", linkage="average"
    )
    return model.fit(distance).labels_


def canonical(labels) -> list[int]:
    """Labels renamed in order of first appearance: equal lists <=> equal partitions."""
    names: dict[int, int] = {}
    return [names.setdefault(int(label), len(names)) for label in labels]


def sklearn_penalty(labels: np.ndarray) -> list[float]:
    sizes = np.bincount(labels)
    return [int(sizes[label]) / len(labels) for label in labels]


def question_batch(rng: random.Random, n: int) -> list[str]:
    """Questions on a few topics, with exact and near duplicates, so that clusters of many sizes form."""
    questions: list[str] = []
    for _ in range(n):
        roll = rng.random()
        if questions and roll < 0.2:
            questions.append(rng.choice(questions))
        elif questions and roll < 0.5:
            words = rng.choice(questions).split()
            for pos in rng.sample(range(len(words)), min(len(words), rng.randint(1, 4))):
                words[pos] = rng.choice(FILLER + TOPICS)
            questions.append(" ".join(words))
        elif roll < 0.55:
            questions.append(rng.choice(["", "car", "what color"]))
        else:
            topic = rng.choice(TOPICS)
            words = rng.choices(FILLER, k=rng.randint(5, 18)) + [topic] * rng.randint(1, 3)
            rng.shuffle(words)
            questions.append(" ".join(words))
    return questions


@pytest.mark.parametrize("seed", range(40))
def test_partition_equals_sklearn_on_random_batches(seed):
    rng = random.Random(seed)
    questions = question_batch(rng, rng.randint(2, 60))
    distance = nltk_distance(questions)
    for threshold in (0.5, rng.choice([0.2, 0.35, 0.65, 0.8, 0.95])):
        expected = sklearn_labels(distance, threshold)
        assert canonical(cluster_labels(questions, threshold)) == canonical(expected)
        assert repetition_penalty(questions, threshold) == sklearn_penalty(expected)


@pytest.mark.parametrize(
    "questions",
    [
        ["how many red cars are on the left"] * 7,  # all identical: every distance exactly 0
        [f"{a} {b} {c} {d}" for a, b, c, d in zip("abcdefgh", "ijklmnop", "qrstuvwx", "ABCDEFGH", strict=True)],
        ["what is the color of the car", "what is the color of the bus"],  # B = 2
        ["one two three four"] * 3 + ["five six seven eight"] * 3 + ["one two three four five six"] * 2,  # ties
        ["", "", "", "a"],  # empty questions: BLEU 0, distance 1, even between two empties
    ],
)
def test_partition_equals_sklearn_on_special_batches(questions):
    distance = nltk_distance(questions)
    for threshold in (0.0, 0.5, 1.0, 1.5):
        expected = sklearn_labels(distance, threshold)
        assert canonical(cluster_labels(questions, threshold)) == canonical(expected)
        assert repetition_penalty(questions, threshold) == sklearn_penalty(expected)


def test_all_identical_is_one_cluster_and_all_distinct_are_singletons():
    assert repetition_penalty(["same question here"] * 4) == [1.0] * 4
    distinct = ["alpha beta gamma delta", "one two three four", "red green blue black", "cat dog cow pig"]
    assert repetition_penalty(distinct) == [0.25] * 4


@pytest.mark.parametrize("seed", range(12))
def test_cut_ties_at_the_threshold_like_sklearn(seed):
    """Distances from a tiny set of values, thresholds equal to merge heights: the >= vs < cut and tie order."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    condensed = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=n * (n - 1) // 2)
    distance = squareform(condensed)
    heights = np.unique(linkage(condensed, method="average")[:, 2])
    for threshold in {0.5, 0.0, *heights.tolist()}:
        expected = sklearn_labels(distance, threshold)
        assert canonical(threshold_cut(condensed, n, threshold)) == canonical(expected)


def test_threshold_exactly_at_a_bleu_distance():
    questions = question_batch(random.Random(99), 40)
    condensed = 1.0 - condensed_bleu(questions)
    distance = nltk_distance(questions)
    for threshold in np.unique(condensed)[::7].tolist():
        expected = sklearn_labels(distance, threshold)
        assert canonical(cluster_labels(questions, threshold)) == canonical(expected)


def test_small_batches_and_non_str():
    assert repetition_penalty([]) == []
    assert repetition_penalty(["only one"]) == [1.0]
    assert repetition_penalty([None]) == [1.0]
    # non-str entries count as "": BLEU 0 with anything, so they never merge at the default threshold
    assert repetition_penalty([None, 7, "a red car", "a red car"]) == [0.25, 0.25, 0.5, 0.5]
    expected = sklearn_labels(nltk_distance(["", "", "a red car", "a red car"]), 0.5)
    assert repetition_penalty([None, 7, "a red car", "a red car"]) == sklearn_penalty(expected)


def test_labels_are_in_order_of_first_appearance():
    labels = cluster_labels(["x y z w", "a b c d", "x y z w", "q r s t", "a b c d"])
    assert labels.tolist() == [0, 1, 0, 2, 1]


@pytest.mark.parametrize("threshold", [-0.1, float("nan")])
def test_rejects_invalid_threshold(threshold):
    with pytest.raises(ValueError):
        repetition_penalty(["a b", "a c"], threshold)
    with pytest.raises(ValueError):
        repetition_penalty(["a b"], threshold)
