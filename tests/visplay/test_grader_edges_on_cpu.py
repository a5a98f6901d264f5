"""Edges of the grader that mutation testing found unpinned: its counters on a fresh instance, `start()` on a worker
that cannot start, the bound on remembered timeouts, the interpreter it falls back to, killing on close, the
canonical key of an unbalanced group."""

from __future__ import annotations

import logging
import os
import select
import sys

import pytest

from verl_ext.visplay.grading import MathGrader, canonical_key


def test_fresh_grader_counts_each_kind_of_verdict():
    grader = MathGrader(max_chars=10)
    assert grader.equivalent_batch([("1", "2"), ("7", "7.0"), (None, "1"), ("x" * 11 + "+1", "1+x")]) == [
        False, True, False, False,
    ]  # fmt: skip
    assert grader.stats["fast_verdicts"] == 1  # distinct integers
    assert grader.stats["key_equal"] == 1
    assert grader.stats["skipped"] == 2  # a non-str answer, a key longer than max_chars
    assert grader.stats["pairs"] == 4 and grader.stats["grader_calls"] == 0 and grader.stats["worker_starts"] == 0


def test_start_says_whether_the_worker_came_up():
    grader = Broken(startup_timeout=30)
    assert grader.start() is False
    assert grader.stats["worker_starts"] == 1


def test_remembered_timeouts_are_bounded_by_the_cache_size():
    grader = MathGrader(cache_size=2)
    assert [grader._strike(pair) for pair in [("a", "b"), ("c", "d"), ("e", "f")]] == [False] * 3
    assert list(grader._strikes) == [("c", "d"), ("e", "f")]  # the oldest forgotten
    assert grader._strike(("e", "f")) is True  # a second overrun of a remembered pair
    assert grader._strike(("a", "b")) is False  # forgotten: its first overrun again


def test_worker_command_falls_back_to_python3(monkeypatch):
    monkeypatch.setattr(sys, "executable", "")
    command = MathGrader()._worker_command()
    assert command[0] == "python3" and command[1] == "-c" and command[3].endswith("grading.py")


def test_close_kills_and_reaps_the_worker():
    grader = MathGrader()
    try:
        assert grader.start() is True
        proc = grader._proc
        grader.close()
        assert proc.returncode == -9  # SIGKILLed and waited for, not left to exit on its own
        assert grader._proc is None
    finally:
        grader.close()


@pytest.mark.parametrize("text, key", [("{{a}", "{{a}"), ("{a}{", "{a}{"), ("{{a}b}", "{a}b"), ("{{7}}", "7")])
def test_outer_braces_are_stripped_only_when_they_match(text, key):
    assert canonical_key(text) == key


def test_the_process_wide_grader_is_made_once(monkeypatch):
    from verl_ext.visplay import grading

    monkeypatch.setattr(grading, "_default_grader", None)  # as in a fresh process
    first = grading.get_grader()
    assert isinstance(first, MathGrader) and grading.get_grader() is first
    first.close()


def test_each_round_trip_to_the_worker_is_counted():
    grader = MathGrader()
    try:
        assert grader.equivalent("x+1", "1+x") and grader.equivalent("y+2", "2+y")
        assert grader.equivalent_batch([("z+3", "3+z"), ("w+4", "4+w")]) == [True, True]  # one request for both
        assert grader.stats["requests"] == 3 and grader.stats["grader_calls"] == 4
    finally:
        grader.close()


_SOFT_TIMEOUT_WORKER = """
import json, sys, time
sys.stdout.write("ready\\n"); sys.stdout.flush()
for line in sys.stdin:
    for a, b in json.loads(line)["pairs"]:
        if a == "slow":  # the worker's own alarm fired: it answers "timeout" itself, in time
            sys.stdout.write("T\\n")
        elif a == "bad":  # the comparison raised inside the worker
            sys.stdout.write("E\\n")
        elif a == "hang":  # stuck where no alarm reaches: the parent must kill it
            time.sleep(60)
        elif a == "die":  # the worker itself dies on this pair (a crash in C code, the OOM killer)
            sys.exit(3)
        elif a == "split":  # a verdict that reaches the parent in two reads
            sys.stdout.write("1"); sys.stdout.flush(); time.sleep(0.3); sys.stdout.write("\\n")
        else:
            time.sleep(0.2)  # a comparison that takes a while but well within the timeout
            sys.stdout.write(("1" if a.lower() == b.lower() else "0") + "\\n")
        sys.stdout.flush()
"""


class _SoftTimeoutGrader(MathGrader):
    broken = False  # set True: the worker exits before its greeting (a start that fails)

    def _worker_command(self):
        return [sys.executable, "-c", "import sys; sys.exit(3)" if self.broken else _SOFT_TIMEOUT_WORKER]


class Broken(_SoftTimeoutGrader):
    broken = True  # every start fails


@pytest.fixture
def soft_grader():
    """Makes graders on the scripted worker above; each is closed (its worker stopped) after the test."""
    made = []

    def make(**kwargs):
        made.append(_SoftTimeoutGrader(**kwargs))
        return made[-1]

    yield make
    for grader in made:
        grader.close()


def test_worker_reported_timeouts_are_counted_struck_and_then_cached(soft_grader):
    grader = soft_grader(kill_grace=1.0)
    assert grader.equivalent_keys_batch([("slow", "x+1"), ("slow", "y+1")], timeout=2.0) == [False, False]
    assert grader.stats["timeouts"] == 2  # each reported timeout counts
    assert grader.stats["worker_starts"] == 1  # a worker that answers is not killed
    assert grader.equivalent_keys_batch([("slow", "x+1")], timeout=2.0) == [False]  # second strike: cached
    calls = grader.stats["grader_calls"]
    assert grader.equivalent_keys_batch([("slow", "x+1")], timeout=2.0) == [False]
    assert grader.stats["grader_calls"] == calls and grader.stats["timeouts"] == 3


def test_the_parent_waits_the_timeout_plus_the_grace_for_each_verdict(soft_grader):
    # a timeout shorter than the kill grace: the parent must still wait for the worker's (0.2 s) answer
    grader = soft_grader(kill_grace=1.0)
    assert grader.equivalent_keys_batch([("x+1", "X+1"), ("x+1", "x+2")], timeout=0.5) == [True, False]
    assert grader.stats["timeouts"] == 0


def test_every_pair_sent_to_the_worker_is_one_counted_call(soft_grader):
    grader = soft_grader(kill_grace=0.2)
    pairs = [("bad", "x"), ("x+1", "X+1"), ("z+1", "z+2"), ("bad", "y"), ("hang", "z"), ("y+1", "Y+1")]
    assert grader.equivalent_keys_batch(pairs, timeout=0.5) == [False, True, False, False, False, True]
    assert grader.stats["errors"] == 2  # each error reply, and nothing else, is an error
    assert grader.stats["timeouts"] == 1  # the hung pair, killed by the parent
    assert grader.stats["grader_calls"] == 6  # replies, the hung pair and the pair after it once each
    assert grader.stats["worker_starts"] == 2  # the hung worker was replaced


def test_a_worker_that_dies_on_a_pair_costs_that_pair_only_and_twice_caches_it(soft_grader):
    grader = soft_grader(kill_grace=0.2)
    pairs = [("x+1", "X+1"), ("die", "x"), ("y+1", "Y+1")]
    assert grader.equivalent_keys_batch(pairs, timeout=0.5) == [True, False, True]
    assert grader.stats["errors"] == 1 and grader.stats["grader_calls"] == 3
    assert grader.stats["worker_starts"] == 2  # replaced after the death
    assert grader.equivalent_keys_batch([("die", "x")], timeout=0.5) == [False]  # second strike: cached
    calls = grader.stats["grader_calls"]
    assert grader.equivalent_keys_batch([("die", "x")], timeout=0.5) == [False]
    assert grader.stats["grader_calls"] == calls and grader.stats["errors"] == 2


def test_every_counter_of_a_batch_accumulates_across_batches(soft_grader):
    grader = soft_grader(kill_grace=0.2, max_chars=12)
    long_key = "x" * 13  # over max_chars: skipped, and the pairs after it are still answered
    batch = [("5", ""), ("a+b", "a+b"), ("1", "2"), (long_key, "x+1"), ("x+1", "X+1")]
    for run in (1, 2):
        assert grader.equivalent_keys_batch(batch, timeout=0.5) == [False, True, False, False, True]
        stats = grader.stats
        assert stats["pairs"] == 5 * run
        assert stats["skipped"] == 2 * run  # an empty key, a key over max_chars
        assert stats["key_equal"] == run
        assert stats["fast_verdicts"] == run  # two different integers need no worker
    assert grader.stats["grader_calls"] == 1  # the second run's ("x+1", "X+1") came from the cache


def test_max_chars_is_inclusive(soft_grader):
    grader = soft_grader(kill_grace=0.2, max_chars=12)
    at_limit, over = "y" * 11 + "+", "y" * 12 + "+"
    assert grader.equivalent_keys_batch([(at_limit, at_limit.upper())], timeout=0.5) == [True]
    assert grader.equivalent_keys_batch([(at_limit.upper(), at_limit)], timeout=0.5) == [True]
    assert grader.equivalent_keys_batch([(over, over.upper()), (over.upper(), over)], timeout=0.5) == [False] * 2
    assert grader.stats["skipped"] == 2 and grader.stats["grader_calls"] == 2


def test_strikes_are_kept_per_pair(soft_grader):
    grader = soft_grader(kill_grace=0.2)
    grader.equivalent_keys_batch([("slow", "a")], timeout=0.5)
    grader.equivalent_keys_batch([("slow", "b")], timeout=0.5)  # another pair's first strike
    calls = grader.stats["grader_calls"]
    grader.equivalent_keys_batch([("slow", "b")], timeout=0.5)  # so this one is tried again
    assert grader.stats["grader_calls"] == calls + 1


def test_a_grader_inherited_across_a_fork_starts_its_own_worker(soft_grader):
    # where os.register_at_fork is missing, the child finds the parent's pid recorded: the worker is not its own
    grader = soft_grader(kill_grace=0.2)
    assert grader.equivalent_keys_batch([("x+1", "X+1")], timeout=0.5) == [True]
    grader._owner_pid = -1
    assert grader.equivalent_keys_batch([("x+2", "X+2")], timeout=0.5) == [True]
    assert grader._owner_pid == os.getpid() and grader.stats["worker_starts"] == 2


def test_after_the_retry_pause_one_start_is_tried_then_it_pauses_again():
    grader = Broken(startup_timeout=30)
    for _ in range(3):  # three failed starts in a row
        grader.start()
    assert grader.stats["worker_starts"] == 3
    assert grader.start() is False and grader.stats["worker_starts"] == 3  # paused: not even tried
    grader._retry_after = 0.0  # the pause is over
    assert grader.start() is False and grader.stats["worker_starts"] == 4  # one more try...
    assert grader.start() is False and grader.stats["worker_starts"] == 4  # ...then paused again


def test_the_worker_does_not_inherit_the_parents_other_descriptors():
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # even an inheritable descriptor stays in the parent
    grader = _SoftTimeoutGrader(kill_grace=0.2)
    try:
        assert grader.start()
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], 5.0)
        assert ready and os.read(read_end, 1) == b""  # end of file: no other process holds the write end
    finally:
        grader.close()
        os.close(read_end)


def test_a_failed_start_is_logged_with_its_count_and_cause(soft_grader, caplog):
    grader = soft_grader(startup_timeout=30)
    grader.broken = True
    with caplog.at_level(logging.WARNING, logger="verl_ext.visplay.grading"):
        assert grader.start() is False and grader.start() is False
    assert [r.getMessage() for r in caplog.records if r.name == "verl_ext.visplay.grading"] == [
        "visplay grader worker failed to start (1): worker exited",
        "visplay grader worker failed to start (2): worker exited",
    ]


def test_a_good_start_clears_the_count_of_failed_starts(soft_grader):
    grader = soft_grader(startup_timeout=30)
    grader.broken = True
    assert grader.start() is False and grader.start() is False  # two failures: one short of the pause
    grader.broken = False
    assert grader.start() is True
    grader.close()
    grader.broken = True
    for _ in range(3):  # three more failed starts before the pause, not one
        assert grader.start() is False
    assert grader.stats["worker_starts"] == 6
    assert grader.start() is False and grader.stats["worker_starts"] == 6  # now paused


def test_waiting_for_a_verdict_sleeps_in_poll_instead_of_spinning(soft_grader, monkeypatch):
    grader = soft_grader(kill_grace=0.2)
    assert grader.start()
    waits = []
    make_poller = select.poll

    class CountingPoller:
        def __init__(self):
            self._poller = make_poller()

        def register(self, *args):
            self._poller.register(*args)

        def poll(self, timeout_ms):
            waits.append(timeout_ms)
            return self._poller.poll(timeout_ms)

    monkeypatch.setattr(select, "poll", CountingPoller)
    assert grader.equivalent_keys_batch([("x+1", "X+1")], timeout=2.0) == [True]  # the worker answers in 0.2 s
    assert 1 <= len(waits) <= 3  # woken by the answer, not by a timer
    assert 2000 < waits[0] <= 2200  # the wait is in milliseconds: timeout + grace


def test_a_verdict_that_arrives_in_two_reads_is_put_together(soft_grader):
    grader = soft_grader(kill_grace=1.0)
    assert grader.equivalent_keys_batch([("split", "x"), ("y+1", "Y+1")], timeout=2.0) == [True, True]
    assert grader.stats["errors"] == 0 and grader.stats["timeouts"] == 0
