"""All-pairs sentence BLEU of a batch of questions, bit-identical to nltk's `sentence_bleu` with smoothing method1.

Clipped n-gram matches of every pair come from one matrix product; the floating-point part then runs once per
distinct (hypothesis length, matches) tuple with the very `math` calls nltk makes, so every value is nltk's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import sparse
from scipy.spatial.distance import squareform

MAX_ORDER = 4  # BLEU-4 with uniform weights, nltk's default
_WEIGHT = 0.25  # each of nltk's default weights (0.25, 0.25, 0.25, 0.25)
_EPSILON = 0.1  # SmoothingFunction().method1's epsilon
_TABLE_LIMIT = 1 << 22  # key ranges up to this are grouped through a lookup table, larger ones by sorting
_DENSE_SHARE = 0.04  # n-gram columns in more than this share of the questions go to the dense BLAS product
_BLOCK_ELEMENTS = 1 << 21  # entries of one row block of the dense product


def tokenize(questions: Sequence[object]) -> list[list[str]]:
    """Whitespace tokens of each question (`str.split()`); a non-str entry (None, a number) counts as ""."""
    return [q.split() if isinstance(q, str) else [] for q in questions]


def pairwise_bleu(questions: Sequence[object]) -> np.ndarray:
    """B x B float64 matrix of sentence BLEU-4 (smoothing method1) between whitespace-tokenised questions.

    For i < j, entry [i, j] equals nltk's `sentence_bleu([q[j].split()], q[i].split(),
    smoothing_function=SmoothingFunction().method1)` exactly: the earlier question is the hypothesis and the
    later one the reference. The matrix is symmetrised from that upper triangle ([j, i] = [i, j]) and its
    diagonal is 1.0. A non-str entry (None, a number) is treated as the empty question "" (BLEU 0.0 with anything).
    """
    n = len(questions)
    if n < 2:
        return np.ones((n, n))  # float64, numpy's default
    out = squareform(condensed_bleu(questions))  # a condensed (1-D) input always becomes the square matrix
    np.fill_diagonal(out, 1.0)
    return out


def condensed_bleu(questions: Sequence[object]) -> np.ndarray:
    """BLEU of every pair i < j (hypothesis i, reference j) in `scipy.spatial.distance` condensed order.

    The upper triangle of `pairwise_bleu` read row by row, length B * (B - 1) / 2, without the B x B matrix.
    """
    tokens = tokenize(questions)
    n = len(tokens)
    if n < 2:
        return np.zeros(0, dtype=np.float64)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=n)
    distinct_lengths, length_ids = np.unique(lengths, return_inverse=True)
    length_ids = length_ids.reshape(-1).astype(np.int32)
    k = len(distinct_lengths)

    # BLEU = brevity penalty(hypothesis length, reference length) x score(hypothesis length, matches per order),
    # each evaluated once per distinct tuple of its arguments.
    hyp_ids = np.repeat(length_ids, np.arange(n - 1, -1, -1))
    pair_ids = hyp_ids.astype(np.int32 if k * k < 1 << 31 else np.int64) * k
    pair_ids += np.concatenate([length_ids[i + 1 :] for i in range(n)])
    if k * k <= max(1 << 12, len(pair_ids) >> 6):  # few distinct lengths: a table over all their pairs
        penalty_keys = np.arange(k * k)
    else:
        pair_ids, penalty_keys = _dense_ids(pair_ids)
    bleu = _brevity_penalties(*(distinct_lengths[part] for part in np.divmod(penalty_keys, k)))[pair_ids]
    del pair_ids

    group = _Grouper()
    packs = []
    for packed, radix, orders in _packed_match_counts(tokens, lengths):
        group.add(packed, radix**orders)
        packs.append((radix, orders))
    group.add(hyp_ids, k)
    del hyp_ids
    score_ids, columns = group.finish()
    matches = [
        (column // radix**position) % radix
        for column, (radix, orders) in zip(columns[:-1], packs, strict=True)
        for position in range(orders)
    ]
    bleu *= _scores(distinct_lengths[columns[-1]], *matches)[score_ids]
    return bleu


def _brevity_penalties(hyp_len: np.ndarray, ref_len: np.ndarray) -> np.ndarray:
    """nltk's brevity_penalty with one reference, per (hypothesis length, reference length)."""
    penalty = np.ones(len(hyp_len), dtype=np.float64)  # nltk's int 1 times a float is that float
    penalty[hyp_len == 0] = 0.0
    shorter = (hyp_len <= ref_len) & (hyp_len > 0)
    # 1 - r / h: numpy's float64 division of ints below 2**53 is the correctly rounded one of Python's int / int
    argument = 1 - ref_len[shorter] / hyp_len[shorter]
    penalty[shorter] = np.fromiter(map(math.exp, argument.tolist()), dtype=np.float64, count=len(argument))
    return penalty


def _scores(hyp_len: np.ndarray, *matches: np.ndarray) -> np.ndarray:
    """exp(sum_n w_n log p_n) of nltk's corpus_bleu per hypothesis length and clipped matches per order.

    Each weighted log is evaluated once per distinct (matches, denominator) pair, the sum by `math.fsum` and the
    exponential by `math.exp`, all with the operands nltk uses, so every value is nltk's to the last bit.
    """
    terms = []
    for order, match in enumerate(matches, start=1):
        denominator = np.maximum(hyp_len - order + 1, 1)
        radix = int(denominator.max()) + 1
        ids, keys = _dense_ids(match * radix + denominator)
        numerator, denominator = np.divmod(keys, radix)
        # method1 turns a zero numerator into (0 + epsilon) / denominator; a non-zero precision stays a Fraction,
        # whose float is the correctly rounded int / int quotient, as is numpy's float64 division of such ints.
        # Every denominator is at least 1, so neither branch divides by zero.
        precision = np.where(numerator == 0, (0 + _EPSILON) / denominator, numerator / denominator)
        logs = _WEIGHT * np.fromiter(map(math.log, precision.tolist()), dtype=np.float64, count=len(precision))
        terms.append(logs[ids].tolist())
    sums = map(math.fsum, zip(*terms, strict=True))
    scores = np.fromiter(map(math.exp, sums), dtype=np.float64, count=len(hyp_len))
    scores[matches[0] == 0] = 0.0  # nltk returns 0 when no unigram matches, before any smoothing
    return scores


def _packed_match_counts(tokens: list[list[str]], lengths: np.ndarray) -> Iterator[tuple[np.ndarray, int, int]]:
    """Clipped n-gram matches sum_g min(c_i[g], c_j[g]) of the pairs i < j, several orders packed per array.

    Yields (packed, radix, orders): condensed arrays holding sum_t matches[first + t] * radix**t over `orders`
    consecutive orders (all four unless the questions are very long). Occurrence r of n-gram g in a question is
    column (g, r), so a question's row holds c[g] ones for g and min(c_i[g], c_j[g]) = sum_r [c_i[g] >= r][c_j[g]
    >= r]: the matches are X X^T, and weighting the columns of order n by radix**t packs the orders in one product.
    """
    n = len(tokens)
    # no pair matches more n-grams than its shorter question has tokens: the second-largest length bounds all
    radix = int(np.partition(lengths, n - 2)[n - 2]) + 1
    # float32 sums of integers are exact below 2**24, float64 ones below 2**53
    dtype, per_pack = np.float32, MAX_ORDER
    if radix**MAX_ORDER > 1 << 24:
        dtype = np.float64
        while per_pack > 1 and radix**per_pack > 1 << 53:
            per_pack -= 1
    occurrences = list(_gram_columns(tokens, lengths))
    for first in range(0, MAX_ORDER, per_pack):
        pack = occurrences[first : first + per_pack]
        counts = [count for _, _, count in pack]
        offsets = np.cumsum([0, *counts[:-1]])
        rows = np.concatenate([part[0] for part in pack])
        columns = np.concatenate([part[1] + offset for part, offset in zip(pack, offsets, strict=True)])
        weights = np.repeat(np.array([radix**t for t in range(len(pack))], dtype=np.int64), counts)
        yield _weighted_products(rows, columns, weights, n, dtype), radix, len(pack)


def _gram_columns(tokens: list[list[str]], lengths: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Per order n = 1..MAX_ORDER: (question, column) of every n-gram occurrence, column = (n-gram, rank), count."""
    n = len(tokens)
    flat = list(itertools.chain.from_iterable(tokens))
    vocab = {word: i for i, word in enumerate(dict.fromkeys(flat))}
    words = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
    total = len(flat)
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    remaining = np.repeat(np.cumsum(lengths), lengths) - np.arange(total, dtype=np.int64)  # tokens left, >= 1
    codes = words  # id of the n-gram starting at each position
    n_codes = len(vocab)
    for order in range(1, MAX_ORDER + 1):
        if order == 1:
            at = np.arange(total, dtype=np.int64)
        else:
            at = np.flatnonzero(remaining >= order)
            codes_at, distinct = _dense_ids(codes[at] * len(vocab) + words[at + order - 1])
            codes = np.zeros(total, dtype=np.int64)
            codes[at] = codes_at
            n_codes = len(distinct)
        rows = owner[at]
        grams = codes[at]
        # rank of each occurrence among the equal n-grams of its question
        key = rows * n_codes + grams
        sort = np.argsort(key, kind="stable")
        sorted_key = key[sort]
        first = np.ones(len(sorted_key), dtype=bool)
        first[1:] = sorted_key[1:] != sorted_key[:-1]
        position = np.arange(len(first))
        rank = np.empty(len(key), dtype=np.int64)
        rank[sort] = position - np.maximum.accumulate(np.where(first, position, 0))
        columns, distinct = _dense_ids(grams * (int(rank.max(initial=0)) + 1) + rank)
        yield rows, columns, len(distinct)


def _pair_offsets(n: int) -> np.ndarray:
    """Condensed index of the pair (i, i + 1) for each row i (and the total at i = n - 1)."""
    i = np.arange(n, dtype=np.int64)
    return i * (2 * n - i - 1) // 2


def _weighted_products(rows: np.ndarray, columns: np.ndarray, weights: np.ndarray, n: int, dtype) -> np.ndarray:
    """Upper triangle (condensed) of X diag(w) X^T for the 0/1 matrix X with ones at (rows, columns).

    Columns set in many questions go through BLAS in row blocks over the upper triangle only, the rest through a
    sparse product; both sum integers exactly (the caller picks `dtype` so that every sum fits its mantissa).
    """
    offsets = _pair_offsets(n)
    out = np.zeros(n * (n - 1) // 2, dtype=np.int32 if dtype is np.float32 else np.int64)
    n_columns = len(weights)
    is_dense = np.bincount(columns, minlength=n_columns) > _DENSE_SHARE * n
    on_dense = is_dense[columns]
    if on_dense.any():
        left = np.zeros((n, int(is_dense.sum())), dtype=dtype)
        left[rows[on_dense], (np.cumsum(is_dense) - 1)[columns[on_dense]]] = 1
        right = left * weights[is_dense].astype(dtype)
        block = max(1, _BLOCK_ELEMENTS // n)
        for start in range(0, n - 1, block):
            stop = min(start + block, n - 1)
            upper = np.triu(np.ones((stop - start, n - start), dtype=bool), k=1)
            out[offsets[start] : offsets[stop]] = (left[start:stop] @ right[start:].T)[upper]
    if not on_dense.all():
        keep = ~on_dense
        sparse_columns = (np.cumsum(~is_dense) - 1)[columns[keep]]
        shape = (n, int((~is_dense).sum()))
        x = sparse.csr_matrix((np.ones(len(sparse_columns), dtype=np.int64), (rows[keep], sparse_columns)), shape)
        column_weights = weights[~is_dense][sparse_columns]
        xw = sparse.csr_matrix((column_weights, (rows[keep], sparse_columns)), shape)
        product = sparse.triu(x @ xw.T, k=1, format="coo")
        out[offsets[product.row] + (product.col - product.row - 1)] += product.data.astype(out.dtype)
    return out


def _dense_ids(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids 0..k-1 of the values of a non-negative int array, numbered in increasing value, and the k sorted values."""
    size = int(key.max(initial=0)) + 1
    if size <= _table_limit(len(key)):
        seen = np.zeros(size, dtype=bool)
        seen[key] = True
        distinct = np.flatnonzero(seen)
        remap = np.zeros(size, dtype=np.int32 if len(distinct) < (1 << 31) else np.int64)
        remap[distinct] = np.arange(len(distinct))
        return remap[key], distinct
    distinct, inverse = np.unique(key, return_inverse=True)
    return inverse.reshape(-1), distinct


def _table_limit(n_keys: int) -> int:
    # a lookup table pays off while it is not much larger than the keys it serves
    return min(_TABLE_LIMIT, max(1 << 16, 4 * n_keys))


class _Grouper:
    """Ids of the distinct tuples of int columns given one by one, with the tuple behind each id.

    Columns are packed into one mixed-radix key while its range stays small enough for a lookup table, then the
    key is compacted to ids of its distinct values; so no pass sorts the pairs unless a single range is huge.
    """

    def __init__(self) -> None:
        self._key: np.ndarray | None = None
        self._range = 1
        self._pending: list[tuple[int, np.ndarray | None]] = []  # (radix, values) packed since the last compaction
        self._table: list[np.ndarray] = []  # decoded columns, indexed by the compacted id

    def add(self, column: np.ndarray, radix: int) -> None:
        values = None
        if radix > _TABLE_LIMIT:  # keep key * radix far from overflow: number the column's values first
            column, values = _dense_ids(column)
            radix = len(values)
        if self._key is None:
            self._key = column.astype(np.int32 if radix <= 1 << 31 else np.int64)
        else:
            if self._range * radix > _table_limit(len(self._key)):
                self._compact()
            if self._range * radix > 1 << 31:  # int32 keys while they fit: half the memory traffic
                self._key = self._key.astype(np.int64)
            self._key *= radix
            self._key += column
        self._range *= radix
        self._pending.append((radix, values))

    def finish(self) -> tuple[np.ndarray, list[np.ndarray]]:
        if self._pending:
            self._compact()
        return self._key, self._table

    def _compact(self) -> None:
        ids, distinct = _dense_ids(self._key)
        count = len(distinct)
        digits = []
        for radix, values in reversed(self._pending):
            distinct, digit = np.divmod(distinct, radix)
            digits.append(digit if values is None else values[digit])
        self._table = [column[distinct] for column in self._table] + digits[::-1]
        self._key, self._range, self._pending = ids, count, []
