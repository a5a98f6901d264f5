"""Confidence-band filter of pseudo-labelled questions before reasoner training.

Too easy (p high) carries no learning signal; too hard (p low) has unreliable pseudo-labels. Every record gets one
reason from records.FILTER_REASONS, so the filter's effect can be logged per iteration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ._numbers import finite_float
from .records import FILTER_REASONS

PAPER_BAND = (0.25, 0.75)  # |p - 1/2| <= delta, delta = 0.25
REFERENCE_BAND = (0.3, 0.8)  # the reference code's 0.3 <= p <= 0.8
# Confidences are k/m fractions: 3/10 is 0.30000000000000004 in binary; the band edges must still count as inside.
BAND_TOLERANCE = 1e-9


@dataclass
class BandFilterResult:
    kept: list  # the kept records themselves, in input order
    reasons: list[str]  # one per input record, from FILTER_REASONS
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTER_REASONS, 0))


def _check_band(low, high) -> tuple[float, float]:
    try:
        lo, hi = float(low), float(high)
    except (TypeError, ValueError):
        raise ValueError(f"band edges must be numbers, got low={low!r}, high={high!r}") from None
    if not (0.0 <= lo <= hi <= 1.0):  # also rejects NaN
        raise ValueError(f"band must satisfy 0 <= low <= high <= 1, got low={low!r}, high={high!r}")
    return lo, hi


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def filter_reason(record, low: float = PAPER_BAND[0], high: float = PAPER_BAND[1]) -> str:
    """Reason for one record: unparsable, too_long, no_answer, too_easy (p > high), too_hard (p < low), else kept.

    A record that is not a mapping, or has no non-blank question, is unparsable. A record pseudo-labelling marked
    `filter_reason: too_long` (its prompt was over the token limit, so it was never sampled) stays too_long. A
    missing/blank pseudo-label, or a confidence that is not a finite number (NaN, None, a string: no usable vote), is
    no_answer.
    """
    low, high = _check_band(low, high)
    return _reason(record, low, high)


def _reason(record, low: float, high: float) -> str:
    if not isinstance(record, Mapping) or not _text(record.get("question")):
        return "unparsable"
    if record.get("filter_reason") == "too_long":
        return "too_long"
    if not _text(record.get("pseudo_label")):
        return "no_answer"
    p = finite_float(record.get("confidence"))
    if p is None:
        return "no_answer"
    if p > high + BAND_TOLERANCE:
        return "too_easy"
    if p < low - BAND_TOLERANCE:
        return "too_hard"
    return "kept"


def band_filter(records: Iterable, low: float = PAPER_BAND[0], high: float = PAPER_BAND[1]) -> BandFilterResult:
    """Keep records with low <= confidence <= high (inclusive, up to BAND_TOLERANCE); see filter_reason."""
    low, high = _check_band(low, high)
    result = BandFilterResult(kept=[], reasons=[])
    for record in records:
        reason = _reason(record, low, high)
        result.reasons.append(reason)
        result.counts[reason] += 1
        if reason == "kept":
            result.kept.append(record)
    return result
