import logging
import os
import random
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest
from math_verify import parse, verify

from verl_ext.visplay.grading import (
    MathGrader,
    _fast_verdict,
    answers_equivalent,
    answers_equivalent_batch,
    canonical_key,
    get_grader,
    grader_stats,
)

# A hang guard, not a speed target (that is benchmarks/): a quadratic pass over 1 MB needs hours, a linear one well
# under a second, so the guard is loose enough that no machine load (nor mutmut's tracing) can trip it.
HANG_GUARD_S = 30.0


logging.getLogger("math_verify").setLevel(logging.ERROR)


def math_verify_on_keys(a: str, b: str) -> bool:
    """The reference semantics: equal keys, else math_verify on the two keys (as the worker runs it)."""
    ka, kb = canonical_key(a), canonical_key(b)
    if ka and ka == kb:
        return True
    return verify(parse(f"${ka}$", parsing_timeout=None), parse(f"${kb}$", parsing_timeout=None), timeout_seconds=None)


@pytest.fixture
def shared():
    """The process-wide grader (one worker start-up, about a second on a busy machine, for the whole session).

    Tests that stop or kill its worker check that it recovers; the kill grace is shortened to keep them quick.
    """
    g = get_grader()
    grace, g.kill_grace = g.kill_grace, 0.3
    yield g
    g.kill_grace = grace


# ---------------------------------------------------------------------------------------------------------------
# canonical_key
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "forms",
    [
        ["12", "12.0", "12.00", "{12}", "+12", "012", "$12$", "\\text{12}", "12.", " 12 ", "{{12}}", "\\(12\\)"],
        ["1,000", "1000", "1000.0", "\\$1,000"],
        ["0.1", "0.10", ".1", "+0.100"],
        ["-3", "\u22123", "-3.0", "{-3}"],
        ["0", "-0", "0.0", "+0"],
        ["A", "a", "(A)", "A.", "A)", "A:", "[A]", "\\text{A}", "\\textbf{(A)}", "\\mathrm{A}", "$A$", "(A)."],
        ["x + 1", "x+1", "X+1", "$x +1$"],
        ["\\frac{1}{2}", "\\dfrac{1}{2}", "\\tfrac{1}{2}", "\\left.\\frac{1}{2}\\right."],
        ["50\\%", "50%"],
        ["3 \\text{ cm}", "3\\ \\mathrm{cm}", "3 cm"],
        ["2\\sqrt{3}", "2 \\sqrt{3}", "2\\,\\sqrt{3}"],
    ],
)
def test_canonical_key_merges_obviously_equal(forms):
    keys = {canonical_key(form) for form in forms}
    assert len(keys) == 1, keys


@pytest.mark.parametrize(
    "a, b",
    [
        ("1/2", "0.5"),  # left to the grader
        ("0.1", "0.01"),
        ("12", "1.2"),
        ("1,2", "12"),  # not a thousands separator
        ("1,000", "1.000"),
        ("\\Pi", "\\pi"),  # case-folding never touches command names
        ("\\Delta", "\\delta"),
        ("\\leftarrow", "\\rightarrow"),  # \left / \right sizing is dropped, these commands are not
        ("\\dfrac{1}{2}", "\\dfracx"),
        ("x^2", "x2"),
        ("A", "B"),
        ("(A)", "(AB)"),
        ("{1}{2}", "12"),
        ("\\{1,2\\}", "{1,2}"),
        ("\\alpha b", "\\alphab"),
        ("-1", "1"),
        ("10", "100"),
    ],
)
def test_canonical_key_keeps_different_apart(a, b):
    assert canonical_key(a) != canonical_key(b)


@pytest.mark.parametrize("value", [None, 12, 1.5, b"12", ["12"], "", "   ", "$$", "{}", "\\text{ }"])
def test_canonical_key_empty_or_bad(value):
    assert canonical_key(value) == ""


@pytest.mark.parametrize(
    "text",
    ["1" * 1_000_000, "{" * 500_000 + "}" * 500_000, "\\text{" * 300_000, "$" * 1_000_000, "(A)" * 300_000],
    ids=["digits", "nested-braces", "open-wrappers", "dollars", "options"],
)
def test_canonical_key_linear_on_1mb(text):
    start = time.perf_counter()
    assert isinstance(canonical_key(text), str)
    assert time.perf_counter() - start < HANG_GUARD_S


# ---------------------------------------------------------------------------------------------------------------
# answers_equivalent against math_verify
# ---------------------------------------------------------------------------------------------------------------

KNOWN = [
    ("1/2", "0.5", True),
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{2}", "1/2", True),
    ("A", "(A)", True),
    ("\\text{A}", "A", True),
    ("B", "A", False),
    ("12", "12.0", True),
    ("12", "13", False),
    ("x=3", "3", True),
    ("\\sqrt{2}", "2^{1/2}", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("[1,2]", "(1,2)", False),
    ("\\frac{1}{3}", "0.333333", True),  # math_verify rounds floats to 6 decimals
    ("\\frac{1}{3}", "0.33", False),
    ("50\\%", "50", True),
    ("12 cm", "12", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("\\pi", "3.14", False),
]


@pytest.mark.parametrize("a, b, expected", KNOWN)
def test_answers_equivalent_known(a, b, expected):
    assert answers_equivalent(a, b) is expected
    assert math_verify_on_keys(a, b) is expected


def test_answers_equivalent_batch_matches_single_and_math_verify():
    pairs = [(a, b) for a, b, _ in KNOWN]
    assert answers_equivalent_batch(pairs) == [math_verify_on_keys(a, b) for a, b in pairs]


def _random_value(rng: random.Random) -> Fraction:
    if rng.random() < 0.4:
        return Fraction(rng.randint(-50, 50))
    return Fraction(rng.randint(-200, 200), rng.choice([1, 2, 3, 4, 5, 8, 10, 16, 25, 100]))


def _render(rng: random.Random, value: Fraction) -> str:
    form = rng.random()
    if form < 0.25:
        sign = "-" if value < 0 else ""
        scale = rng.choice([1, 2, 3])
        return f"{sign}\\frac{{{abs(value.numerator) * scale}}}{{{value.denominator * scale}}}"
    if form < 0.45:
        return f"{value.numerator}/{value.denominator}"
    if value.denominator == 1 and form < 0.7:
        return str(value.numerator)
    if 10**6 % value.denominator == 0:
        return str(float(value))
    return f"{float(value):.{rng.randint(2, 7)}f}"  # a rounded float: near ties with the exact fraction


def test_fast_verdicts_agree_with_math_verify():
    """Every verdict decided without sympy is the one math_verify gives: ints, letters, rationals, near ties."""
    rng = random.Random(1234)
    decided = 0
    for i in range(240):
        if i % 4 == 0:  # letters and integers
            a, b = (rng.choice("abcdeijxyz") if rng.random() < 0.5 else str(rng.randint(-20, 20)) for _ in range(2))
        else:
            value = _random_value(rng)
            other = value if i % 4 == 1 else _random_value(rng)
            a, b = _render(rng, value), _render(rng, other)
        verdict = _fast_verdict(canonical_key(a), canonical_key(b))
        if verdict is None:
            continue
        decided += 1
        assert verdict is math_verify_on_keys(a, b), (a, b)
    assert decided > 160


@pytest.mark.parametrize(
    "a, b",
    [("0.333333", "0.3333333"), ("1/3", "0.333333"), ("100000000", "100000000.000001"), ("1", "1.000001")],
)
def test_fast_verdict_defers_near_ties(a, b):
    assert _fast_verdict(canonical_key(a), canonical_key(b)) is None
    assert answers_equivalent(a, b) is math_verify_on_keys(a, b)


# ---------------------------------------------------------------------------------------------------------------
# Hard timeout, worker recovery, threads
# ---------------------------------------------------------------------------------------------------------------


def test_runaway_sympy_is_stopped_and_grader_recovers(shared):
    # Evaluating 9^(9^9) exactly (~370M digits) runs for minutes; both sides force sympy to try.
    timeouts = shared.stats["timeouts"]
    start = time.perf_counter()
    assert shared.equivalent("9^{9^{9}}+1", "9^{387420489}+1", timeout=1.0) is False
    assert time.perf_counter() - start < 1.0 + shared.kill_grace + 3.0
    assert shared.stats["timeouts"] == timeouts + 1
    start = time.perf_counter()
    assert shared.equivalent("9^{9^{9^{9}}}", "9^{9^{9^{9}}}+1", timeout=1.0) is False
    assert time.perf_counter() - start < 1.0 + shared.kill_grace + 3.0
    assert shared.equivalent("\\sqrt{8}", "2\\sqrt{2}") is True


def test_stuck_worker_is_killed_and_restarted(shared):
    """A worker that does not answer (here: stopped, as if stuck in C code) is killed; later calls work."""
    assert shared.start()
    os.kill(shared._proc.pid, signal.SIGSTOP)
    timeouts, starts = shared.stats["timeouts"], shared.stats["worker_starts"]
    start = time.perf_counter()
    assert shared.equivalent("\\sqrt{12}", "2\\sqrt{3}", timeout=0.5) is False
    assert time.perf_counter() - start < 0.5 + shared.kill_grace + 2.0
    assert shared.stats["timeouts"] == timeouts + 1
    assert shared.stats["worker_starts"] == starts  # restarted lazily, on the next call
    # One timeout may be the machine's fault, not the pair's: it is not cached, the pair is tried again.
    assert shared.equivalent("\\sqrt{12}", "2\\sqrt{3}") is True
    assert shared.stats["worker_starts"] == starts + 1


_FAKE_WORKER = """
import signal, sys, time, json
signal.signal(signal.SIGALRM, signal.SIG_IGN)
sys.stdout.write("ready\\n"); sys.stdout.flush()
for line in sys.stdin:
    for a, b in json.loads(line)["pairs"]:
        if a == "hang":
            while True:
                time.sleep(1)
        sys.stdout.write(("1" if a.replace("same", "") == b.replace("same", "") else "0") + "\\n"); sys.stdout.flush()
"""


class _FakeGrader(MathGrader):
    def _worker_command(self):
        return [sys.executable, "-c", _FAKE_WORKER]


def test_hang_in_the_middle_of_a_batch_only_costs_that_pair():
    grader = _FakeGrader(kill_grace=0.2)
    try:
        pairs = [
            ("same x", "x+y"),
            ("hang", "x+y"),
            ("same z", "z+w"),
            ("p+q", "q+p"),
            ("hang", "z+w"),
            ("k+1", "k+2"),
        ]
        start = time.perf_counter()
        verdicts = grader.equivalent_keys_batch(pairs, timeout=0.3)
        elapsed = time.perf_counter() - start
        assert verdicts == [False, False, False, False, False, False]
        pairs = [("samea+b", "a+b"), ("hang", "c+d"), ("samee+f", "e+f")]
        assert grader.equivalent_keys_batch(pairs, timeout=0.3) == [True, False, True]
        assert grader.stats["timeouts"] == 3
        # ("hang", "x+y") overran once: retried, overruns again, and from then on is a cached "no".
        assert grader.equivalent_keys_batch([("hang", "x+y")], timeout=0.3) == [False]
        requests = grader.stats["requests"]
        assert grader.equivalent_keys_batch([("hang", "x+y")], timeout=0.3) == [False]
        assert grader.stats["requests"] == requests and grader.stats["timeouts"] == 4
        assert elapsed < 2 * (0.3 + grader.kill_grace) + 3.0
    finally:
        grader.close()


def test_worker_that_cannot_start_gives_counted_false():
    class Broken(MathGrader):
        def _worker_command(self):
            return [sys.executable, "-c", "import sys; sys.exit(3)"]

    grader = Broken()
    results = [grader.equivalent("\\sqrt{2}", "2^{1/2}") for _ in range(5)]
    assert results == [False] * 5
    assert grader.stats["errors"] == 5
    assert grader.stats["worker_starts"] == 3  # gives up after repeated failures instead of retrying forever
    assert grader.equivalent("12", "12.0") is True  # key-equal answers never need the worker


def test_worker_killed_between_calls_is_replaced(shared):
    assert shared.equivalent("\\sqrt{4}", "2") is True
    os.kill(shared._proc.pid, signal.SIGKILL)
    shared._proc.wait()
    assert shared.equivalent("\\sqrt{9}", "3") is True


def test_works_from_threads():
    """math_verify's own signal-based timeout raises outside the main thread; ours does not care."""
    pairs = [(a, b) for a, b, _ in KNOWN] * 3
    expected = [e for _, _, e in KNOWN] * 3
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda pair: answers_equivalent(*pair), pairs))
    assert results == expected
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match="thread"):
            pool.submit(parse, "$\\frac{1}{2}$", raise_on_error=True).result()


def test_forked_child_gets_its_own_worker(shared):
    grader = shared
    assert grader.equivalent("\\sqrt{4}", "2") is True
    pid = os.fork()
    if pid == 0:  # child: must not talk over the parent's pipes
        ok = grader.equivalent("\\sqrt{16}", "4") is True
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert grader.equivalent("\\sqrt{25}", "5") is True


# ---------------------------------------------------------------------------------------------------------------
# Bad input, cache, batching
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        (None, "1"),
        ("1", None),
        (None, None),
        (1, 1),
        ("", ""),
        ("  ", "  "),
        ("x" * 1_000_000, "y" * 1_000_000),
        ("\\frac{" * 10_000, "1"),
        ("\ud800", "1"),  # lone surrogate
    ],
    ids=["none-a", "none-b", "none-both", "ints", "empty", "blank", "1mb", "open-fracs", "surrogate"],
)
def test_bad_input_is_false_without_exception(shared, a, b):
    start = time.perf_counter()
    assert shared.equivalent(a, b) is False
    assert time.perf_counter() - start < HANG_GUARD_S


def test_huge_answers_compare_by_cheap_key_only(shared):
    big = "7" * 1_000_000
    calls = shared.stats["grader_calls"]
    start = time.perf_counter()
    assert shared.equivalent(big, f"  {big}\n") is True
    assert shared.equivalent(big, big + ".0") is False  # past 20k characters only whitespace/case are normalised
    assert shared.stats["grader_calls"] == calls  # and sympy never sees them
    assert time.perf_counter() - start < HANG_GUARD_S


def test_unicode_answers(shared):
    assert shared.equivalent("π", "π") is True
    assert shared.equivalent("\\pi", "π") is math_verify_on_keys("\\pi", "π")
    assert shared.equivalent("\\text{été}", "ÉTÉ") is True


def test_cache_and_batching(shared):
    pairs = [(f"\\sqrt{{{n * n}}}", str(n)) for n in range(2, 40)]
    requests = shared.stats["requests"]
    assert shared.equivalent_batch(pairs) == [True] * len(pairs)
    assert shared.stats["requests"] == requests + 1  # 38 comparisons, one round-trip
    hits = shared.stats["cache_hits"]
    assert shared.equivalent_batch(pairs) == [True] * len(pairs)
    assert shared.stats["requests"] == requests + 1  # all cached
    assert shared.stats["cache_hits"] == hits + len(pairs)


def test_invalid_timeout_is_rejected(shared):
    with pytest.raises(ValueError, match="timeout"):
        shared.equivalent("1", "2", timeout=0)


def test_default_grader_stats_are_exposed():
    answers_equivalent("\\sqrt{49}", "7")
    stats = grader_stats()
    assert stats["pairs"] >= 1 and set(stats) >= {"timeouts", "errors", "skipped", "cache_hits"}
