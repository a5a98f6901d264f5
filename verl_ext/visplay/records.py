"""Column schemas of the parquet files that pass between VisPlay stages.

One place names every column, so the verl datasets, the offline generation/pseudo-labelling code and
the tests agree. Images always travel as encoded bytes (PNG/JPEG) in a binary column.
"""

from __future__ import annotations

# Unlabeled images: input of the questioner stage and of question generation.
IMAGE_COLUMNS = ("id", "source", "image")

# Generated questions: one row per questioner sample (unparsable ones kept, with question None).
QUESTION_COLUMNS = (
    "id",  # unique question id: f"{source_image_id}/{iteration}/{sample_index}"
    "source_image_id",
    "image",
    "raw_output",  # the questioner's full text
    "question",  # None when unparsable
    "question_type",
    "questioner_answer",  # the questioner's own answer (never used as a label)
    "iteration",
    "questioner_checkpoint",
)

# Pseudo-labelled questions: input of the reasoner stage (after the confidence-band filter).
PSEUDO_LABEL_COLUMNS = (
    "id",
    "source_image_id",
    "image",
    "question",
    "question_type",
    "pseudo_label",  # majority answer y* of the frozen reasoner's m samples; None if none parsed
    "confidence",  # |largest group| / m
    "num_samples",  # m actually received
    "iteration",
    "questioner_checkpoint",
    "filter_reason",  # kept | too_easy | too_hard | no_answer | unparsable
)

FILTER_REASONS = ("kept", "too_easy", "too_hard", "no_answer", "unparsable", "too_long")


def missing_columns(columns, required) -> list[str]:
    """Names in `required` absent from `columns` (for clear errors on a bad input file)."""
    present = set(columns)
    return [c for c in required if c not in present]
