"""Majority vote over the reasoner's m sampled answers: the pseudo-label y* and its confidence p = |group| / m.

Grouping is the reference's greedy first-match (join the first group whose representative is equivalent, else open
a new one). Because answers_equivalent depends only on the two canonical keys, two answers with the same key always
land in the same group. So the greedy runs over distinct keys only, gives exactly the plain loop's groups and
confidences, and advances all questions of a batch in lock-step so that they share each worker round-trip.

A response counts as unparsed (in the denominator m, never in a group) when it is not a str, has no balanced final
\\boxed{}, or its boxed content normalises to nothing (`\\boxed{}`, `\\boxed{$ $}`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .grading import MathGrader, _fast_verdict, canonical_key, get_grader
from .parsing import extract_boxed

_MEMO_MAX_CHARS = 1000


@dataclass(frozen=True)
class Vote:
    """Outcome of one majority vote."""

    answer: str | None  # representative (first member, as boxed) of the largest group; None if nothing parsed
    confidence: float  # |largest group| / num_responses; 0.0 if nothing parsed
    counts: tuple[tuple[str, int], ...]  # (representative, size) per group, in order of first appearance
    num_responses: int
    num_unparsed: int  # responses without a non-empty boxed answer (in the denominator, never a group)


class _Question:
    """Greedy grouping state of one question, advanced one grader comparison at a time."""

    def __init__(self, responses, key_memo: dict[str, str]):
        try:
            responses = [] if responses is None or isinstance(responses, (str, bytes)) else list(responses)
        except TypeError:
            responses = []
        self.num_responses = len(responses)
        self.key_counts: dict[str, int] = {}  # insertion order = first appearance
        self.key_raw: dict[str, str] = {}
        unparsed = 0
        for response in responses:
            answer = extract_boxed(response)
            key = key_memo.get(answer) if answer else ""
            if key is None:
                key = canonical_key(answer)
                if len(answer) <= _MEMO_MAX_CHARS:
                    key_memo[answer] = key
            if not key:
                unparsed += 1
                continue
            if key not in self.key_counts:
                self.key_counts[key] = 0
                self.key_raw[key] = answer
            self.key_counts[key] += 1
        self.num_unparsed = unparsed
        self.keys = list(self.key_counts)
        self.groups: list[list[str]] = []  # keys per group; the first key is the representative's
        self.next_key = 0  # index into self.keys of the key being placed
        self.next_group = 0  # index of the group it is compared with next

    def pending(self) -> tuple[str, str] | None:
        """Advance through comparisons that need no grader; return the (representative, key) pair that does."""
        while self.next_key < len(self.keys):
            key = self.keys[self.next_key]
            if self.next_group >= len(self.groups):
                self._place(key, None)
                continue
            rep = self.groups[self.next_group][0]
            verdict = _fast_verdict(rep, key)
            if verdict is None:
                return rep, key
            self.resolve(verdict)
        return None

    def resolve(self, equivalent: bool) -> None:
        key = self.keys[self.next_key]
        if equivalent:
            self._place(key, self.next_group)
        else:
            self.next_group += 1

    def _place(self, key: str, group: int | None) -> None:
        if group is None:
            self.groups.append([key])
        else:
            self.groups[group].append(key)
        self.next_key += 1
        self.next_group = 0

    def vote(self) -> Vote:
        counts = tuple((self.key_raw[keys[0]], sum(self.key_counts[k] for k in keys)) for keys in self.groups)
        if not counts or self.num_responses == 0:
            return Vote(None, 0.0, counts, self.num_responses, self.num_unparsed)
        best = max(range(len(counts)), key=lambda i: (counts[i][1], -i))  # ties: first appearance
        answer, size = counts[best]
        return Vote(answer, size / self.num_responses, counts, self.num_responses, self.num_unparsed)


def majority_vote_batch(
    list_of_response_lists, timeout: float | None = None, grader: MathGrader | None = None
) -> list[Vote]:
    """majority_vote for many questions; each round sends every question's next comparison in one batch."""
    grader = grader or get_grader()
    key_memo: dict[str, str] = {}  # the same answer strings recur within and across questions
    questions = [_Question(responses, key_memo) for responses in list_of_response_lists]
    active = questions
    while active:
        waiting = []
        for question in active:
            pair = question.pending()
            if pair is not None:
                waiting.append((question, pair))
        if not waiting:
            break
        verdicts = grader.equivalent_keys_batch([pair for _, pair in waiting], timeout)
        for (question, _), verdict in zip(waiting, verdicts, strict=True):
            question.resolve(verdict)
        active = [question for question, _ in waiting]
    return [question.vote() for question in questions]


def majority_vote(responses, timeout: float | None = None, grader: MathGrader | None = None) -> Vote:
    """Group raw reasoner outputs by answer equivalence of their last \\boxed{} and take the largest group.

    Non-str responses and responses without a non-empty boxed answer count in num_responses (the denominator of the
    confidence) but never form a group. Ties between largest groups go to the one that appeared first.
    """
    return majority_vote_batch([responses], timeout=timeout, grader=grader)[0]
