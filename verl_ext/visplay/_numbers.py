"""Number hygiene shared by the reward and filter code: what counts as a usable confidence or penalty."""

from __future__ import annotations

import math


def finite_float(value) -> float | None:
    """float(value) for a finite real number (numpy scalars included; bools and strings are not numbers), else None."""
    if isinstance(value, (bool, str, bytes)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
