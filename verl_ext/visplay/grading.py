"""Answer equivalence: a cheap canonical key, then math_verify in a persistent worker process under a hard timeout.

sympy can run for hours (or allocate without bound) on a short LaTeX string. A thread cannot be stopped and
signal.alarm only works in the main thread, so every math comparison runs in a child process that is killed and
restarted when it overruns: a timeout is a (counted) "not equivalent", never a hang.

Grader choice: math_verify (HuggingFace). Against mathruler's `grade_answer` (PRM800K heuristics): it understands
LaTeX fractions, sets, intervals, matrices, percentages, equations (`x=3` vs `3`) and float rounding; it never
`eval`s model text (mathruler hands normalised text to sympy's `parse_expr`, which evaluates Python); and it is the
dependency verl_ext already declares. Its own timeout is signal-based (main thread only, whole seconds), so inside
the worker it is switched off and replaced by our own alarm (soft) and the parent's kill (hard).

The grader compares canonical keys, not raw strings, so equivalence is a function of the two keys: voting can group
by key first and stay identical to the plain pairwise loop (see voting.py). `answers_equivalent(gold, pred)` is not
symmetric in general (math_verify's is not); callers pass the reference/representative first.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from fractions import Fraction

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0  # per comparison; math_verify's own default
MAX_GRADER_CHARS = 1000  # longer keys never reach sympy (counted as skipped): sentences are not math
STARTUP_TIMEOUT_S = 120.0  # python + sympy import on a loaded 2-core box
KILL_GRACE_S = 1.0  # the parent kills the worker this long after the worker's own alarm should have fired
WORKER_MEMORY_LIMIT = 4 << 30  # address-space cap of the worker: a runaway bigint raises MemoryError instead
_MAX_STARTUP_FAILURES = 3  # consecutive failed starts before pausing retries for _STARTUP_RETRY_S
_STARTUP_RETRY_S = 60.0
_CHUNK = 512  # comparisons per request message
_FLUSH_S = 0.05
_MAX_STRIP_ROUNDS = 10
_MAX_CANONICAL_CHARS = 20_000

# ---------------------------------------------------------------------------------------------------------------
# Canonical key
# ---------------------------------------------------------------------------------------------------------------

# Commands whose argument is kept and the wrapper dropped: they change typesetting, not value.
_WRAPPERS = frozenset(
    "text textrm textup textnormal textbf textit textsf texttt mathrm mathbf mathit mathsf mathtt mathnormal "
    "boldsymbol mbox boxed fbox".split()
)
_LATEX_TOKEN = re.compile(r"\\([A-Za-z]+)\s*\{|\\.|[{}]", re.DOTALL)
_COMMAND_NAME = re.compile(r"(\\[A-Za-z]+)")
_SPACING = re.compile(r"\\[,;:!> ]|\\q?quad(?![A-Za-z])|~")
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_WS = re.compile(r"\s+")
# Delimiter sizing (`\\left(`, `\\right.`) and fraction styles do not change the value; `\\leftarrow` is untouched.
_SIZING = re.compile(r"\\(?:left|right)(?![A-Za-z])\.?")
_FRAC_STYLE = re.compile(r"\\[dt]frac(?![A-Za-z])")
# A space next to a non-word character is typographic ("x + 1" == "x+1"); between two word characters it separates.
_LOOSE_SPACE = re.compile(r" (?=\W)|(?<=\W) ")
_OPTION = re.compile(r"\(([a-z])\)|\[([a-z])\]|([a-z])[).:]")
_NUMBER = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d*)(?:\.(\d*))?")
_INTEGER_KEY = re.compile(r"-?\d+")
_LETTER_KEY = re.compile(r"[a-z]")
# Plain rationals: a decimal numeral, a/b, \frac{a}{b}. Bounded sizes keep them far inside float precision.
_RATIONAL_KEY = re.compile(
    r"(-?)(?:(\d{1,8}(?:\.\d{1,12})?)|(\d{1,10})/(\d{1,10})|\\frac\{(\d{1,10})\}\{(\d{1,10})\})"
)
_RATIONAL_LIMIT = Fraction(10**8)
# math_verify rounds floats to 6 decimals before comparing; values further apart than this are surely different.
_RATIONAL_GAP = Fraction(1, 10**5)


def _unwrap(s: str) -> str:
    """Drop `\\text{..}`-like wrappers (nested ones too) in one linear pass; unbalanced input is left as is."""
    if "\\" not in s:
        return s
    out: list[str] = []
    stack: list[bool] = []  # per open brace: True if it belongs to a dropped wrapper
    pos = 0
    for m in _LATEX_TOKEN.finditer(s):
        token = m.group()
        name = m.group(1)
        if name is not None:
            if name in _WRAPPERS:
                out.append(s[pos : m.start()])
                stack.append(True)
                pos = m.end()
            else:
                stack.append(False)
        elif token == "{":
            stack.append(False)
        elif token == "}":
            if not stack:
                return s
            if stack.pop():
                out.append(s[pos : m.start()])
                pos = m.end()
    if stack:
        return s
    out.append(s[pos:])
    return "".join(out)


def _outer_group_closes_at_end(s: str) -> bool:
    """True if s is `{...}` with the first brace matched by the last one."""
    depth = 0
    for m in _LATEX_TOKEN.finditer(s):
        token = m.group()
        if m.group(1) is not None or token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return m.end() == len(s)
    return False


def _strip_outer(s: str) -> str:
    """Repeatedly (a bounded number of rounds, so 1 MB of nested braces stays linear) strip math delimiters, outer
    braces and one trailing period."""
    for _ in range(_MAX_STRIP_ROUNDS):
        before = s
        for left, right in _DELIMS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)].strip()
                break
        if s.startswith("{") and s.endswith("}") and _outer_group_closes_at_end(s):
            s = s[1:-1].strip()
        if len(s) > 1 and s.endswith(".") and not s.endswith("\\."):
            s = s[:-1].rstrip()
        if s == before:
            break
    return s


def _canonical_number(m: re.Match) -> str | None:
    sign, integer, fraction = m.group(1), m.group(2).replace(",", ""), m.group(3) or ""
    if not integer and not fraction:
        return None
    integer = integer.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    body = f"{integer}.{fraction}" if fraction else integer
    return body if sign != "-" or body == "0" else "-" + body


def canonical_key(answer) -> str:
    """Cheap normal form under which obviously equal answers coincide ("" for non-str input).

    Strips whitespace, `$..$`/`\\(..\\)`, outer braces, `\\text{}`-like wrappers and a trailing period; case-folds
    everything but LaTeX command names (`\\Pi` stays apart from `\\pi`); option letters `(A)`, `A.`, `A)` -> `a`;
    plain decimal numerals -> one spelling (`+12`, `12.0`, `012`, `1,000` -> `12`/`1000`). Never merges different
    values: `1/2` vs `0.5` is left to the grader.
    """
    if not isinstance(answer, str):
        return ""
    if len(answer) > _MAX_CANONICAL_CHARS:
        # Far too long to be a math answer (and never graded): only the cheapest, C-speed normalisation.
        return _WS.sub(" ", answer).strip().casefold()
    s = answer.replace("\u2212", "-").replace("\\$", "").replace("\\%", "%")
    s = _SPACING.sub(" ", s)
    s = _FRAC_STYLE.sub(lambda m: "\\frac", _SIZING.sub("", s))
    s = _strip_outer(_unwrap(_strip_outer(s.strip())))
    s = s.replace("$", "")
    s = "".join(part if i % 2 else part.casefold() for i, part in enumerate(_COMMAND_NAME.split(s)))
    s = _LOOSE_SPACE.sub("", _WS.sub(" ", s)).strip()
    s = _strip_outer(s)
    option = _OPTION.fullmatch(s)
    if option is not None:
        return next(g for g in option.groups() if g)
    number = _NUMBER.fullmatch(s)
    if number is not None:
        s = _canonical_number(number) or s
    return s


def _rational(key: str) -> Fraction | None:
    m = _RATIONAL_KEY.fullmatch(key)
    if m is None:
        return None
    sign, numeral, num, den, frac_num, frac_den = m.groups()
    if numeral is not None:
        value = Fraction(numeral)
    else:
        num, den = (num, den) if num is not None else (frac_num, frac_den)
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
    value = -value if sign else value
    return value if abs(value) < _RATIONAL_LIMIT else None


def _fast_verdict(key_a: str, key_b: str) -> bool | None:
    """math_verify's verdict where it is certain without sympy, else None.

    - distinct integers / option letters: math_verify never equates distinct Integers, distinct Symbols, or an
      Integer and a Symbol;
    - plain rationals (numerals, a/b, \\frac{a}{b}, below 1e8): equal values are equal, values more than 1e-5 apart
      are not (its float comparison rounds to 6 decimals); closer ones go to the grader.
    Every rule is tested against math_verify itself.
    """
    if key_a == key_b:
        return bool(key_a)
    simple_a = _INTEGER_KEY.fullmatch(key_a) or _LETTER_KEY.fullmatch(key_a)
    if simple_a and (_INTEGER_KEY.fullmatch(key_b) or _LETTER_KEY.fullmatch(key_b)):
        return False
    value_a = _rational(key_a)
    value_b = _rational(key_b) if value_a is not None else None
    if value_a is not None and value_b is not None:
        if value_a == value_b:
            return True
        if abs(value_a - value_b) > _RATIONAL_GAP:
            return False
    return None


# ---------------------------------------------------------------------------------------------------------------
# Worker process (runs this file standalone: nothing above needs the package)
# ---------------------------------------------------------------------------------------------------------------

_OK, _NO, _TIMEOUT, _ERROR = b"1", b"0", b"T", b"E"


class _SoftTimeout(BaseException):
    """Raised by the worker's own alarm; a BaseException so math_verify's `except Exception` cannot swallow it."""


# pragma: no mutate start - runs in the worker process, where mutmut cannot tell which test ran it (tests/visplay/
# EQUIVALENT_MUTANTS.md); the grader tests drive it through the parent: verdicts, soft and hard timeouts, memory cap.
def _worker_main() -> None:  # pragma: no cover - runs in the child process
    import resource
    import signal

    # The protocol owns the original stdout; stray prints from libraries go to stderr instead.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    from math_verify import parse, verify

    try:  # after the imports, so only runaway comparisons (not library start-up) can hit the cap
        cap = int(os.environ.get("VISPLAY_GRADER_MEM", WORKER_MEMORY_LIMIT))
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard < 0 else min(cap, hard), hard))
    except (ValueError, OSError):
        pass

    armed = [False]

    def on_alarm(signum, frame):
        if armed[0]:
            raise _SoftTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    parsed: OrderedDict[str, list] = OrderedDict()

    def parse_key(key: str):
        if key in parsed:
            parsed.move_to_end(key)
            return parsed[key]
        value = parse(f"${key}$", parsing_timeout=None)
        parsed[key] = value
        if len(parsed) > 4096:
            parsed.popitem(last=False)
        return value

    def cap_cpu(seconds: float) -> None:
        # Kernel-enforced backstop: an orphaned worker stuck in C code (holding the GIL) still dies.
        try:
            used = resource.getrusage(resource.RUSAGE_SELF)
            soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
            limit = int(used.ru_utime + used.ru_stime + seconds) + 5
            resource.setrlimit(resource.RLIMIT_CPU, (limit if hard < 0 else min(limit, hard), hard))
        except (ValueError, OSError):
            pass

    os.write(out_fd, b"ready\n")
    for line in sys.stdin.buffer:
        request = json.loads(line)
        timeout = float(request["timeout"])
        replies: list[bytes] = []
        last_flush = time.monotonic()
        for gold, pred in request["pairs"]:
            cap_cpu(timeout + KILL_GRACE_S)
            try:
                armed[0] = True
                signal.setitimer(signal.ITIMER_REAL, timeout)
                verdict = verify(parse_key(gold), parse_key(pred), timeout_seconds=None)
                armed[0] = False
                reply = _OK if verdict else _NO
            except _SoftTimeout:
                reply = _TIMEOUT
            except BaseException:  # any failure of one comparison (RecursionError, MemoryError, ...) is "no"
                reply = _ERROR
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            replies.append(reply)
            # Verdicts are streamed so the parent can time each comparison: never more than _FLUSH_S of finished
            # work sits unsent when the next one starts, so a slow item is not blamed for its predecessors.
            now = time.monotonic()
            if now - last_flush > _FLUSH_S:
                os.write(out_fd, b"\n".join(replies) + b"\n")
                replies, last_flush = [], now
        if replies:
            os.write(out_fd, b"\n".join(replies) + b"\n")


# pragma: no mutate end


_BOOTSTRAP = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_visplay_grading_worker', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "module._worker_main()\n"
)


# ---------------------------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------------------------


class _WorkerDied(Exception):
    pass


class MathGrader:
    """Thread-safe answer grader: canonical key, fast verdicts, LRU cache, then one persistent worker process.

    The worker streams one verdict per comparison and stops a slow one itself with SIGALRM (soft); the parent
    allows each comparison `timeout + kill_grace` from the previous verdict, then kills the worker (hard, for code
    stuck in C), restarts it lazily and resends the rest of the batch. A timeout counts as "not equivalent"; it is
    cached only when the same pair overruns a second time (a single one may be a stalled machine). One lock
    serialises callers (threads); a forked child gets its own worker.
    """

    def __init__(
        self,
        timeout: float = DEFAULT_TIMEOUT_S,
        cache_size: int = 1 << 17,
        max_chars: int = MAX_GRADER_CHARS,
        startup_timeout: float = STARTUP_TIMEOUT_S,
        kill_grace: float = KILL_GRACE_S,
    ):
        self.timeout = float(timeout)
        self.kill_grace = float(kill_grace)
        self.cache_size = int(cache_size)
        self.max_chars = int(max_chars)
        self.startup_timeout = float(startup_timeout)
        self._lock = threading.RLock()
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._strikes: dict[tuple[str, str], int] = {}
        self._proc: subprocess.Popen | None = None
        self._owner_pid = os.getpid()
        self._buffer = b""
        self._startup_failures = 0
        self._retry_after = 0.0
        self.stats = dict.fromkeys(
            (
                "pairs",
                "key_equal",
                "fast_verdicts",
                "cache_hits",
                "grader_calls",
                "timeouts",
                "errors",
                "skipped",
                "requests",
                "worker_starts",
            ),
            0,
        )
        _live_graders.add(self)

    # -- public ----------------------------------------------------------------------------------------------

    def equivalent(self, gold, pred, timeout: float | None = None) -> bool:
        return self.equivalent_batch([(gold, pred)], timeout)[0]

    def equivalent_batch(self, pairs: Iterable[tuple[object, object]], timeout: float | None = None) -> list[bool]:
        """answers_equivalent for many pairs, with all uncached math comparisons in as few round-trips as possible."""
        key_pairs = []
        for gold, pred in pairs:
            if isinstance(gold, str) and isinstance(pred, str):
                key_pairs.append((canonical_key(gold), canonical_key(pred)))
            else:
                key_pairs.append(("", ""))
        return self.equivalent_keys_batch(key_pairs, timeout)

    def equivalent_keys_batch(self, key_pairs: Sequence[tuple[str, str]], timeout: float | None = None) -> list[bool]:
        """Like equivalent_batch, for pairs of canonical keys (empty key: never equivalent)."""
        timeout = self.timeout if timeout is None else float(timeout)
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        results: list[bool | None] = [None] * len(key_pairs)
        todo: dict[tuple[str, str], list[int]] = {}
        with self._lock:
            self.stats["pairs"] += len(key_pairs)
            for i, (key_a, key_b) in enumerate(key_pairs):
                if not (key_a and key_b and isinstance(key_a, str) and isinstance(key_b, str)):
                    self.stats["skipped"] += 1
                    results[i] = False
                    continue
                if key_a == key_b:
                    self.stats["key_equal"] += 1
                    results[i] = True
                    continue
                verdict = _fast_verdict(key_a, key_b)
                if verdict is not None:
                    self.stats["fast_verdicts"] += 1
                    results[i] = verdict
                    continue
                if len(key_a) > self.max_chars or len(key_b) > self.max_chars:
                    self.stats["skipped"] += 1
                    results[i] = False
                    continue
                cached = self._cache.get((key_a, key_b))
                if cached is not None:
                    self._cache.move_to_end((key_a, key_b))
                    self.stats["cache_hits"] += 1
                    results[i] = cached
                    continue
                todo.setdefault((key_a, key_b), []).append(i)
            if todo:
                unique = list(todo)
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    for pair, (verdict, outcome) in zip(chunk, self._run(chunk, timeout), strict=True):
                        if outcome == "done" or (outcome == "timeout" and self._strike(pair)):
                            self._remember(pair, verdict)
                        for i in todo[pair]:
                            results[i] = verdict
        return results  # type: ignore[return-value]

    def clear_cache(self) -> None:
        """Forget cached verdicts and timeout strikes (counters and the worker stay)."""
        with self._lock:
            self._cache.clear()
            self._strikes.clear()

    def reset(self) -> None:
        """Back to a new grader's state: no cached verdicts, strikes or start-up failures, counters at 0. The worker
        keeps running (starting one costs about a second), so a test suite can share one grader and still give each
        test a fresh one's behaviour."""
        with self._lock:
            self.clear_cache()
            self._startup_failures = 0
            self._retry_after = 0.0
            self.stats.update(dict.fromkeys(self.stats, 0))

    def close(self) -> None:
        """Stop the worker (a later call starts a new one)."""
        with self._lock:
            self._kill()

    def start(self) -> bool:
        """Start the worker now (otherwise it starts on the first comparison); True when it is ready."""
        with self._lock:
            try:
                self._ensure_worker()
                return True
            except _WorkerDied:
                return False

    # -- internals ---------------------------------------------------------------------------------------------

    def _strike(self, pair: tuple[str, str]) -> bool:
        """Record a timeout of pair; True from its second one on. A single timeout may be a stalled machine, not
        the pair, so it is retried once; a pair that overruns twice is cached as "not equivalent"."""
        strikes = self._strikes.pop(pair, 0) + 1
        self._strikes[pair] = strikes
        if len(self._strikes) > self.cache_size:
            self._strikes.pop(next(iter(self._strikes)))
        return strikes >= 2

    def _remember(self, pair: tuple[str, str], verdict: bool) -> None:
        self._cache[pair] = verdict
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _run(self, pairs: list[tuple[str, str]], timeout: float) -> list[tuple[bool, str]]:
        """(verdict, outcome) per pair from the worker; outcome is "done", "timeout" (overran, or the worker died
        on it: verdict False) or "unavailable" (no worker could be started: verdict False)."""
        results: list[tuple[bool, str]] = []
        while len(results) < len(pairs):
            remaining = pairs[len(results) :]
            try:
                self._ensure_worker()
            except _WorkerDied:
                self.stats["errors"] += len(remaining)
                results.extend([(False, "unavailable")] * len(remaining))
                break
            try:
                self._send({"timeout": timeout, "pairs": remaining})
                for _ in remaining:
                    reply = self._read_line(timeout + self.kill_grace)
                    self.stats["grader_calls"] += 1
                    if reply == _TIMEOUT:
                        self.stats["timeouts"] += 1
                        results.append((False, "timeout"))
                    else:
                        if reply == _ERROR:
                            self.stats["errors"] += 1
                        results.append((reply == _OK, "done"))
            except TimeoutError:
                self.stats["grader_calls"] += 1
                self.stats["timeouts"] += 1
                results.append((False, "timeout"))
                self._kill()
            except _WorkerDied:
                self.stats["grader_calls"] += 1
                self.stats["errors"] += 1
                results.append((False, "timeout"))
                self._kill()
        return results

    def _ensure_worker(self) -> None:
        if self._owner_pid != os.getpid():
            # Forked child (where os.register_at_fork is missing): the worker and its pipes are the parent's.
            self._proc, self._buffer, self._owner_pid = None, b"", os.getpid()
        if self._proc is not None and self._proc.poll() is None:
            return
        if self._proc is not None:
            self._kill()
        if self._startup_failures >= _MAX_STARTUP_FAILURES:
            if time.monotonic() < self._retry_after:
                raise _WorkerDied("grader worker failed to start repeatedly; math comparisons paused")
            self._startup_failures = _MAX_STARTUP_FAILURES - 1  # one more try, then pause again
        self.stats["worker_starts"] += 1
        try:
            self._proc = subprocess.Popen(
                self._worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
            )
            self._buffer = b""
            if self._read_line(self.startup_timeout) != b"ready":
                raise _WorkerDied("unexpected greeting")
        except (OSError, TimeoutError, _WorkerDied) as exc:
            self._startup_failures += 1
            self._retry_after = time.monotonic() + _STARTUP_RETRY_S
            self._kill()
            logger.warning("visplay grader worker failed to start (%s): %s", self._startup_failures, exc)
            raise _WorkerDied(str(exc)) from exc
        self._startup_failures = 0

    def _worker_command(self) -> list[str]:
        # This file runs standalone in the child: no package import, so no heavy or GPU-side imports there.
        return [sys.executable or "python3", "-c", _BOOTSTRAP, os.path.abspath(__file__)]

    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\n"
        self.stats["requests"] += 1
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise _WorkerDied(str(exc)) from exc

    def _read_line(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if not poller.poll(left * 1000.0):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise _WorkerDied("worker exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _kill(self) -> None:
        proc, self._proc, self._buffer = self._proc, None, b""
        if proc is None:
            return
        if self._owner_pid == os.getpid():
            try:
                proc.kill()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


_live_graders: weakref.WeakSet[MathGrader] = weakref.WeakSet()
_default_grader: MathGrader | None = None
_default_lock = threading.Lock()


@atexit.register
def _shutdown() -> None:
    for grader in list(_live_graders):
        grader.close()


# pragma: no mutate start - runs only in a forked child (tests/visplay/EQUIVALENT_MUTANTS.md)
def _after_fork_in_child() -> None:
    # The worker and its pipes belong to the parent; a lock held by another parent thread would never be released.
    global _default_lock
    _default_lock = threading.Lock()
    for grader in list(_live_graders):
        grader._lock = threading.RLock()
        grader._proc, grader._buffer, grader._owner_pid = None, b"", os.getpid()


# pragma: no mutate end


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_grader() -> MathGrader:
    """The process-wide grader used by answers_equivalent, voting and rewards."""
    global _default_grader
    with _default_lock:
        if _default_grader is None:
            _default_grader = MathGrader()
        return _default_grader


def reset_grader() -> None:
    """`reset()` the process-wide grader if one exists (tests call it so none depends on what ran before)."""
    with _default_lock:
        grader = _default_grader
    if grader is not None:
        grader.reset()


def answers_equivalent(a, b, timeout: float | None = None) -> bool:
    """True if a (reference) and b (prediction) are the same answer: equal canonical keys, else math_verify.

    A comparison that runs past `timeout` seconds (default DEFAULT_TIMEOUT_S) is False and counted in stats.
    """
    return get_grader().equivalent(a, b, timeout)


def answers_equivalent_batch(pairs: Iterable[tuple[object, object]], timeout: float | None = None) -> list[bool]:
    """answers_equivalent for many (reference, prediction) pairs in few worker round-trips."""
    return get_grader().equivalent_batch(pairs, timeout)


def grader_stats() -> dict[str, int]:
    """Counters of the process-wide grader (timeouts, errors, skipped, cache hits, ...)."""
    grader = get_grader()
    with grader._lock:
        return dict(grader.stats)
