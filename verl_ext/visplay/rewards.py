"""Rewards of the two roles: the questioner's uncertainty reward minus the diversity penalty, and the reasoner's
accuracy-against-pseudo-label plus format score (EasyR1's {"overall", "accuracy", "format"} contract).
"""

from __future__ import annotations

from ._numbers import finite_float
from .grading import MathGrader, get_grader
from .parsing import extract_boxed

QUESTIONER_MODES = ("paper", "reference")
DEFAULT_FORMAT_WEIGHT = 0.1


def questioner_reward(confidence, penalty, valid, mode: str = "paper", lam: float = 1.0) -> float:
    """Reward of one questioner rollout from its reasoner confidence p and its repetition penalty.

    paper:     valid -> max(0, 1 - 2|p - 1/2| - lam * penalty); invalid -> 0.0
    reference: valid -> min(p, 1 - p) - lam * penalty (no clip); invalid -> -1 - lam * penalty (lam = 1 is the
               reference code)

    p is clamped into [0, 1]. A confidence that is not a finite number (NaN, None, inf: no vote could be taken)
    scores as an invalid rollout: a question that cannot be scored is never rewarded. A penalty that is not a
    finite number counts as 0 and also makes the rollout invalid. `mode` and `lam` are configuration: bad values
    raise ValueError.
    """
    if mode not in QUESTIONER_MODES:
        raise ValueError(f"questioner_reward mode must be one of {QUESTIONER_MODES}, got {mode!r}")
    lam_value = finite_float(lam)
    if lam_value is None or lam_value < 0:
        raise ValueError(f"questioner_reward lam must be a finite number >= 0, got {lam!r}")
    p = finite_float(confidence)
    pen = finite_float(penalty)
    is_valid = bool(valid) and p is not None and pen is not None
    pen = max(pen or 0.0, 0.0)
    if mode == "paper":
        if not is_valid:
            return 0.0
        p = min(max(p, 0.0), 1.0)
        return max(0.0, 1.0 - 2.0 * abs(p - 0.5) - lam_value * pen)
    if not is_valid:
        return -1.0 - lam_value * pen
    p = min(max(p, 0.0), 1.0)
    return min(p, 1.0 - p) - lam_value * pen


def _check_weight(format_weight) -> float:
    weight = finite_float(format_weight)
    if weight is None or not 0.0 <= weight <= 1.0:
        raise ValueError(f"format_weight must be in [0, 1], got {format_weight!r}")
    return weight


def _score(has_format: bool, accurate: bool, weight: float) -> dict[str, float]:
    accuracy = 1.0 if accurate else 0.0
    fmt = 1.0 if has_format else 0.0
    return {"overall": (1.0 - weight) * accuracy + weight * fmt, "accuracy": accuracy, "format": fmt}


def reasoner_score(
    response,
    pseudo_label,
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    timeout: float | None = None,
    grader: MathGrader | None = None,
) -> dict[str, float]:
    """{"overall", "accuracy", "format"} of one reasoner response against the pseudo-label y*.

    format = 1 iff the response has a non-empty \\boxed{} answer; accuracy = 1 iff that answer is equivalent to
    the pseudo-label (answers_equivalent(label, answer)); overall = (1 - w) * accuracy + w * format.
    A non-str response scores all zeros; a missing/empty label gives accuracy 0.
    """
    return reasoner_score_batch([response], [pseudo_label], format_weight, timeout, grader)[0]


def reasoner_score_batch(
    responses,
    pseudo_labels,
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    timeout: float | None = None,
    grader: MathGrader | None = None,
) -> list[dict[str, float]]:
    """reasoner_score for aligned lists, with all grader comparisons in few worker round-trips."""
    weight = _check_weight(format_weight)
    responses, pseudo_labels = list(responses), list(pseudo_labels)
    if len(responses) != len(pseudo_labels):
        raise ValueError(f"{len(responses)} responses but {len(pseudo_labels)} pseudo-labels")
    answers = [extract_boxed(response) or None for response in responses]
    to_grade = [i for i, answer in enumerate(answers) if answer and isinstance(pseudo_labels[i], str)]
    verdicts = (grader or get_grader()).equivalent_batch([(pseudo_labels[i], answers[i]) for i in to_grade], timeout)
    accurate = {i for i, verdict in zip(to_grade, verdicts, strict=True) if verdict}
    return [_score(answer is not None, i in accurate, weight) for i, answer in enumerate(answers)]
