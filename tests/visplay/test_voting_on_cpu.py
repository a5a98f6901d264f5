import random
import time

import pytest

from verl_ext.visplay import Vote, majority_vote
from verl_ext.visplay.grading import answers_equivalent, canonical_key, get_grader
from verl_ext.visplay.parsing import extract_boxed
from verl_ext.visplay.voting import majority_vote_batch


def box(answer: str) -> str:
    return f"Let me think step by step. ... So the final answer is \\boxed{{{answer}}}."


def plain_vote(responses) -> Vote:
    """The reference semantics: greedy first-match over answers in order, one answers_equivalent per comparison."""
    groups: list[list] = []
    unparsed = 0
    for response in responses:
        answer = extract_boxed(response)
        if not answer or not canonical_key(answer):
            unparsed += 1
            continue
        for group in groups:
            if answers_equivalent(group[0], answer):
                group[1] += 1
                break
        else:
            groups.append([answer, 1])
    counts = tuple((g[0], g[1]) for g in groups)
    if not groups:
        return Vote(None, 0.0, counts, len(responses), unparsed)
    best = max(range(len(groups)), key=lambda i: (groups[i][1], -i))
    return Vote(groups[best][0], groups[best][1] / len(responses), counts, len(responses), unparsed)


def test_basic_vote():
    responses = [box("12"), box("12.0"), box("13"), "I am not sure.", box("{12}")]
    vote = majority_vote(responses)
    assert vote == Vote("12", 3 / 5, (("12", 3), ("13", 1)), 5, 1)


def test_representative_is_first_member_as_written():
    vote = majority_vote([box("\\text{A}"), box("A"), box("(A)"), box("B")])
    assert vote.answer == "\\text{A}"
    assert vote.counts == (("\\text{A}", 3), ("B", 1))
    assert vote.confidence == 0.75


def test_math_equivalent_forms_group_together():
    vote = majority_vote([box("\\frac{1}{2}"), box("0.5"), box("1/2"), box("\\dfrac{1}{2}"), box("0.50"), box("2")])
    assert vote.answer == "\\frac{1}{2}"
    assert vote.confidence == pytest.approx(5 / 6)
    assert vote.counts == (("\\frac{1}{2}", 5), ("2", 1))


def test_ties_go_to_first_appearance():
    assert majority_vote([box("B"), box("A"), box("A"), box("B")]).answer == "B"
    assert majority_vote([box("7"), box("8")]) == Vote("7", 0.5, (("7", 1), ("8", 1)), 2, 0)


def test_greedy_compares_with_representatives_only():
    # x=3 ~ 3 and 3 ~ y=3, but x=3 !~ y=3: the greedy result depends on who represents the group.
    assert majority_vote([box("x=3"), box("3"), box("y=3")]).counts == (("x=3", 2), ("y=3", 1))
    assert majority_vote([box("3"), box("x=3"), box("y=3")]).counts == (("3", 3),)


def test_unparsed_count_in_denominator_only():
    responses = [box("5"), "no box", box(""), None, 42, "\\boxed{5", box("$ $"), box("5")]
    vote = majority_vote(responses)
    assert vote == Vote("5", 2 / 8, (("5", 2),), 8, 6)


@pytest.mark.parametrize("responses", [[], None, "\\boxed{1}", 5])
def test_empty_or_bad_response_list(responses):
    vote = majority_vote(responses)
    assert vote.answer is None and vote.confidence == 0.0 and vote.counts == ()


def test_nothing_parsed():
    assert majority_vote(["a", "b", None]) == Vote(None, 0.0, (), 3, 3)


def test_accepts_any_iterable():
    assert majority_vote(iter([box("1"), box("1")])).confidence == 1.0
    assert majority_vote((box("1"), box("2"))).answer == "1"


def test_huge_and_unicode_responses():
    huge = "reasoning " * 100_000 + "\\boxed{42}"
    responses = [huge, box("42"), "\\boxed{" * 100_000, box("四十二"), box("42.0"), "x" * 1_000_000]
    start = time.perf_counter()
    vote = majority_vote(responses)
    assert time.perf_counter() - start < 5.0
    assert vote == Vote("42", 0.5, (("42", 3), ("四十二", 1)), 6, 2)


def test_runaway_comparison_times_out_inside_a_vote():
    responses = [box("9^{9^{9}}+1"), box("9^{387420489}+1"), box("9^{9^{9}}+1")]
    start = time.perf_counter()
    vote = majority_vote(responses, timeout=1.0)
    assert time.perf_counter() - start < 1.0 + get_grader().kill_grace + 4.0
    assert vote.counts == (("9^{9^{9}}+1", 2), ("9^{387420489}+1", 1))


# Tricky surface forms: equal values written differently, near ties, asymmetric equations, junk.
POOL = [
    "12", "12.0", "{12}", "\\text{12}", "12.00", "+12", "12 cm", "13", "1,200", "1200",
    "A", "(A)", "\\text{A}", "a", "A.", "\\textbf{(A)}", "B", "(B)", "C",
    "\\frac{1}{2}", "1/2", "0.5", "\\dfrac{1}{2}", "0.50", "{1/2}", "\\frac{2}{4}", "0.05",
    "\\frac{1}{3}", "0.333333", "0.3333333", "0.33",
    "\\sqrt{2}", "2^{1/2}", "1.414", "\\sqrt{8}", "2\\sqrt{2}",
    "x=3", "3", "y=3", "3.0",
    "\\{1,2\\}", "\\{2,1\\}", "[1,2]", "(1,2)",
    "50\\%", "50", "0.5\\%",
    "\\pi", "3.14", "yes", "Yes", "no",
]  # fmt: skip


def random_responses(rng: random.Random) -> list:
    favourites = rng.sample(POOL, rng.randint(1, 5))
    responses: list = []
    for _ in range(rng.choice([1, 5, 9, 10, 10, 10])):
        r = rng.random()
        if r < 0.1:
            responses.append(rng.choice([None, "I give up.", "\\boxed{12", "\\boxed{}"]))
        elif r < 0.25:
            responses.append(box(rng.choice(POOL)))
        else:
            responses.append(box(rng.choice(favourites)))
    return responses


def test_same_votes_as_plain_greedy_loop_on_random_sets():
    rng = random.Random(7)
    sets = [random_responses(rng) for _ in range(200)]
    ours = majority_vote_batch(sets)  # first, on a cold cache for these pairs
    expected = [plain_vote(responses) for responses in sets]
    assert ours == expected
    assert [majority_vote(responses) for responses in sets[:50]] == expected[:50]


def test_batch_uses_few_round_trips():
    rng = random.Random(11)
    # Fresh random numbers so nothing is cached yet and every question needs real grader calls.
    sets = []
    for _ in range(60):
        n = rng.randint(2, 30)
        forms = [f"\\sqrt{{{n * n * 2}}}", f"{n}\\sqrt{{2}}", f"\\sqrt{{{n * n * 3}}}", f"{n}\\sqrt{{3}}"]
        sets.append([box(rng.choice(forms)) for _ in range(8)])
    grader = get_grader()
    requests, calls = grader.stats["requests"], grader.stats["grader_calls"]
    votes = majority_vote_batch(sets)
    assert votes == [plain_vote(responses) for responses in sets]
    new_calls = grader.stats["grader_calls"] - calls
    new_requests = grader.stats["requests"] - requests
    assert new_calls >= 60
    assert new_requests <= 4  # rounds = most comparisons any one question needs (<= 3 representatives here)
