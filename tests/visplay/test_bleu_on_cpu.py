import random
import warnings

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from verl_ext.visplay import bleu, pairwise_bleu
from verl_ext.visplay.bleu import condensed_bleu

SMOOTH = SmoothingFunction().method1
WORDS = "the a of is what how many red blue car cat dog in on left right chart bar 3 7 ünï 猫 🙂".split()


def nltk_bleu(hypothesis: str, reference: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns on empty or very short sentences
        return sentence_bleu([reference.split()], hypothesis.split(), smoothing_function=SMOOTH)


def nltk_matrix(questions: list[str]) -> np.ndarray:
    """The reference: nltk per pair, earlier question as hypothesis, symmetrised from the upper triangle."""
    n = len(questions)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = nltk_bleu(questions[i], questions[j])
    return out


def random_batch(rng: random.Random, n: int) -> list[str]:
    """Questions with everything BLEU is touchy about: empties, 1-3 words, repeats, duplicates, near-duplicates."""
    questions: list[str] = []
    for _ in range(n):
        kind = rng.random()
        if questions and kind < 0.15:
            questions.append(rng.choice(questions))  # exact duplicate
        elif questions and kind < 0.35:
            words = rng.choice(questions).split() or ["the"]
            for _ in range(rng.randint(1, 3)):
                op = rng.randrange(3)
                pos = rng.randrange(len(words))
                if op == 0:
                    words[pos] = rng.choice(WORDS)
                elif op == 1:
                    words.insert(pos, rng.choice(WORDS))
                elif len(words) > 1:
                    del words[pos]
            questions.append(" ".join(words))
        elif kind < 0.42:
            questions.append("")
        elif kind < 0.55:
            questions.append(" ".join(rng.choices(WORDS, k=rng.randint(1, 3))))
        elif kind < 0.62:
            questions.append(" ".join([rng.choice(WORDS)] * rng.randint(2, 9)))  # one word repeated
        else:
            # small vocabulary: many shared n-grams and repeated words; odd whitespace split like str.split()
            questions.append(rng.choice([" ", "  ", "\t", "\n "]).join(rng.choices(WORDS[:12], k=rng.randint(4, 30))))
    return questions


@pytest.mark.parametrize("seed", range(40))
def test_equals_nltk_on_random_batches(seed):
    rng = random.Random(seed)
    questions = random_batch(rng, rng.randint(8, 60))
    ours = pairwise_bleu(questions)
    assert ours.dtype == np.float64 and ours.shape == (len(questions), len(questions))
    np.testing.assert_array_equal(ours, nltk_matrix(questions))  # bit-identical, not merely close


@pytest.mark.parametrize(
    "settings",
    [
        {"_DENSE_SHARE": -1.0},  # every n-gram column through the dense BLAS product
        {"_DENSE_SHARE": 2.0},  # every column through the sparse product
        {"_DENSE_SHARE": 0.1, "_BLOCK_ELEMENTS": 50},  # many small row blocks
        {"_TABLE_LIMIT": 1},  # every grouping by sorting instead of lookup tables
    ],
)
def test_every_code_path_equals_nltk(monkeypatch, settings):
    for name, value in settings.items():
        monkeypatch.setattr(bleu, name, value)
    rng = random.Random(1234)
    for _ in range(3):
        questions = random_batch(rng, 45)
        np.testing.assert_array_equal(pairwise_bleu(questions), nltk_matrix(questions))


def test_many_distinct_lengths_number_the_length_pairs_that_occur():
    # more than 64 distinct question lengths: the brevity penalties are computed per length pair that occurs, not
    # over a k x k table of all of them
    rng = random.Random(11)
    questions = [" ".join(rng.choices(WORDS[:10], k=length)) for length in range(1, 81)]
    rng.shuffle(questions)
    k = len({len(q.split()) for q in questions})
    pairs = len(questions) * (len(questions) - 1) // 2
    assert k * k > max(1 << 12, pairs >> 6)  # the branch this test is for
    np.testing.assert_array_equal(pairwise_bleu(questions), nltk_matrix(questions))


def test_hypothesis_is_the_earlier_question():
    short, long = "what color is the car", "what color is the car on the left of the picture"
    forward, backward = nltk_bleu(short, long), nltk_bleu(long, short)
    assert forward != backward  # BLEU is asymmetric (brevity penalty, precision denominators)
    assert pairwise_bleu([short, long])[0, 1] == forward
    assert pairwise_bleu([long, short])[0, 1] == backward
    assert pairwise_bleu([long, short])[1, 0] == backward


def test_symmetric_with_unit_diagonal():
    questions = random_batch(random.Random(7), 30)
    ours = pairwise_bleu(questions)
    np.testing.assert_array_equal(ours, ours.T)
    np.testing.assert_array_equal(np.diag(ours), np.ones(len(questions)))
    rows, cols = np.triu_indices(len(questions), k=1)
    np.testing.assert_array_equal(condensed_bleu(questions), ours[rows, cols])


def test_small_batches():
    assert pairwise_bleu([]).shape == (0, 0)
    np.testing.assert_array_equal(pairwise_bleu(["anything"]), [[1.0]])
    assert condensed_bleu([]).shape == (0,) and condensed_bleu(["x"]).shape == (0,)
    pair = ["a b c d e", "a b c d e"]
    np.testing.assert_array_equal(pairwise_bleu(pair), nltk_matrix(pair))
    assert pairwise_bleu(pair)[0, 1] == 1.0  # identical sentences of >= 4 words: every precision is exactly 1


def test_degenerate_inputs_match_nltk():
    questions = ["", "", "a", "a", "a a", "a a a a a", "b", "   ", "a b", "b a", "a b c", "a b c d", "x"]
    np.testing.assert_array_equal(pairwise_bleu(questions), nltk_matrix(questions))
    for only_empty in (["", ""], ["", " ", "\t\n"]):  # no token at all in the batch
        np.testing.assert_array_equal(pairwise_bleu(only_empty), nltk_matrix(only_empty))


def test_non_str_entries_count_as_empty():
    mixed = [None, "red car on the left", 3, 4.5, b"bytes", "red car on the right"]
    as_empty = [q if isinstance(q, str) else "" for q in mixed]
    np.testing.assert_array_equal(pairwise_bleu(mixed), pairwise_bleu(as_empty))
    np.testing.assert_array_equal(pairwise_bleu(mixed), nltk_matrix(as_empty))
    assert pairwise_bleu(mixed)[0, 2] == 0.0


def test_long_questions_match_nltk():
    rng = random.Random(3)
    base = rng.choices(WORDS, k=3000)
    edited = list(base)
    for pos in rng.sample(range(len(edited)), 40):
        edited[pos] = rng.choice(WORDS)
    questions = [" ".join(base), " ".join(edited), " ".join(base[:50]), "the"]
    np.testing.assert_array_equal(pairwise_bleu(questions), nltk_matrix(questions))


@pytest.mark.parametrize("longest", [62, 63, 64, 65])
def test_exact_around_the_float32_packing_limit(longest):
    # matches of all four orders share one float32 product while (second-largest length + 1) ** 4 <= 2 ** 24
    rng = random.Random(longest)
    questions = [" ".join(["a"] * longest)] * 2 + [" ".join(["a"] * (longest - 1) + ["b"]), "a a b a"]
    questions += [" ".join(rng.choices("a b".split(), k=longest)) for _ in range(4)]
    np.testing.assert_array_equal(pairwise_bleu(questions), nltk_matrix(questions))


def test_very_long_questions_split_the_packed_orders():
    # (12001 ** 4 > 2 ** 53): the orders no longer fit one float64 product and go in two
    rng = random.Random(8)
    base = rng.choices(WORDS[:6], k=12_000)
    edited = list(base)
    for pos in rng.sample(range(len(edited)), 300):
        edited[pos] = rng.choice(WORDS)
    questions = [" ".join(base), " ".join(edited), " ".join(base[:7000]), "the a of"]
    np.testing.assert_array_equal(pairwise_bleu(questions), nltk_matrix(questions))


def test_exact_just_above_the_float64_packing_limit():
    # 10001 ** 4 lies between 2 ** 53 and 2 ** 54: packed in one float64 product, the matches of two near-identical
    # 10000-token questions (about 10001 ** 3 x 9990 for the 4-grams) are no longer exact integers; with this seed
    # the unigram count would read 10000 instead of 9998
    rng = random.Random(1)
    base = rng.choices(WORDS[:6], k=10_000)
    edited = list(base)
    for pos in rng.sample(range(len(edited)), 2):
        edited[pos] = rng.choice(WORDS[6:])
    questions = [" ".join(base), " ".join(edited), "the a of"]
    assert 2**53 < (10_000 + 1) ** 4 < 2**54
    np.testing.assert_array_equal(pairwise_bleu(questions), nltk_matrix(questions))


def test_megabyte_question_does_not_blow_up():
    rng = random.Random(4)
    huge = " ".join(rng.choices(WORDS, k=300_000))  # more than 1 MB
    assert len(huge) > 1_000_000
    questions = [huge, "the red car", huge[:5000], "what is the 猫"]
    ours = pairwise_bleu(questions)
    for i, j in [(0, 2), (1, 2), (1, 3)]:  # nltk needs about a second per pair with the huge question
        assert ours[i, j] == nltk_bleu(questions[i], questions[j])


def test_large_batch_spot_checks():
    rng = random.Random(5)
    questions = [" ".join(rng.choices(WORDS, k=rng.randint(15, 40))) for _ in range(1024)]
    ours = pairwise_bleu(questions)
    for i, j in [(0, 1), (5, 900), (1022, 1023)]:
        assert ours[i, j] == nltk_bleu(questions[i], questions[j])
