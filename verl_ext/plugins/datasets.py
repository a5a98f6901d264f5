"""verl datasets of the two VisPlay stages, plugged in by `data.custom_cls.path/name`.

`QuestionerDataset` turns the image-only parquet (id, source, image bytes) into questioner prompts;
`ReasonerDataset` turns the pseudo-label parquet into reasoner prompts with the pseudo-label as ground truth.
Both subclass verl's RLHFDataset and reuse its message building, so images reach the rollout exactly as verl's
own multimodal datasets send them (`{"type": "image", "image": PIL}` inside `raw_prompt`).
"""

from __future__ import annotations

import collections
import logging
import math
import os
from typing import Any

from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_ext.image_io import (  # noqa: F401  (re-exported: the datasets' public image API)
    CHAT_TEMPLATE_TOKENS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    IMAGE_PIXELS_PER_TOKEN,
    ImageError,
    image_size,
    image_tokens,
    load_image,
    screen_image,
)
from verl_ext.prompts import render_questioner_prompt, render_reasoner_prompt
from verl_ext.visplay.records import missing_columns

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

MAX_SUBSTITUTIONS = 16  # consecutive undecodable rows a dataset skips before it gives up


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


class _VisPlayDataset(RLHFDataset):
    """Shared plumbing: column check, image screening (counted per reason), prompt construction."""

    required_columns: tuple[str, ...] = ("image",)
    image_column = "image"
    stage = ""

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        self.min_pixels = int(config.get("min_pixels", DEFAULT_MIN_PIXELS) or 0)
        self.max_pixels = int(config.get("max_pixels", DEFAULT_MAX_PIXELS) or 0)
        self.prompt_template = config.get("prompt_template", None)
        self.screen_images = bool(config.get("screen_images", True))
        self.skipped: collections.Counter = collections.Counter()
        super().__init__(
            data_files=data_files, tokenizer=tokenizer, config=config, processor=processor, max_samples=max_samples
        )
        if self.processor is None:
            raise ValueError(f"{type(self).__name__} needs a multimodal processor (a VLM such as Qwen2.5-VL)")
        if len(self.dataframe) == 0:
            raise ValueError(
                f"{type(self).__name__}: no usable rows in {self.original_data_files}; skipped {dict(self.skipped)}"
            )

    # verl calls this once after reading the files (and again on resume): screen first, then its own filter.
    def maybe_filter_out_long_prompts(self, dataframe=None):
        missing = missing_columns(dataframe.column_names, self.required_columns)
        if missing:
            raise ValueError(
                f"{type(self).__name__}: {self.original_data_files} lacks column(s) {missing}; "
                f"found {dataframe.column_names}"
            )
        dataframe = self._screen_rows(dataframe)
        return super().maybe_filter_out_long_prompts(dataframe)

    def _row_problem(self, row: dict) -> str | None:
        """Reason to drop a row (other than its image), or None to keep it."""
        return None

    def _screen_rows(self, dataframe):
        self.skipped = collections.Counter()
        keep = []
        columns = [c for c in dataframe.column_names if c != self.image_column or self.screen_images]
        view = dataframe.select_columns(columns)
        for start in range(0, len(dataframe), 256):
            batch = view[start : start + 256]
            for offset in range(len(batch[columns[0]])):
                row = {c: batch[c][offset] for c in columns}
                reason = self._row_problem(row)
                if reason is None and self.screen_images:
                    reason = screen_image(row.get(self.image_column))
                if reason is None and self._too_long(row):
                    # verl would stop the step (multimodal prompts cannot be truncated): count and drop it here
                    reason = "prompt_too_long"
                if reason is None:
                    keep.append(start + offset)
                else:
                    self.skipped[reason] += 1
        if self.skipped:
            logger.warning(
                "%s: kept %d of %d rows; skipped %s",
                type(self).__name__,
                len(keep),
                len(dataframe),
                dict(self.skipped),
            )
            dataframe = dataframe.select(keep)
        return dataframe

    def _prompt_text(self, example: dict) -> str:
        raise NotImplementedError

    def _too_long(self, row: dict) -> bool:
        """Whether the row's prompt (text tokens + its image's tokens) exceeds data.max_prompt_length."""
        limit = int(self.max_prompt_length or 0)
        if limit <= 0 or self.tokenizer is None:
            return False
        text_tokens = len(self.tokenizer.encode(self._prompt_text(row), add_special_tokens=False))
        worst = text_tokens + CHAT_TEMPLATE_TOKENS + self.max_pixels // IMAGE_PIXELS_PER_TOKEN
        if not self.max_pixels or worst <= limit:
            return False  # fits even with the largest image: no need to look at this one
        try:
            width, height = image_size(row.get(self.image_column))
        except Exception:
            return False  # an unreadable image is screened (or fails) elsewhere
        tokens = image_tokens(width, height, self.min_pixels, self.max_pixels)
        return text_tokens + CHAT_TEMPLATE_TOKENS + tokens > limit

    def _build_messages(self, example: dict, key: str):
        # Our parquet holds records, not chats: build the structured chat verl's own `<image>` expansion
        # produces. Built directly, not through the placeholder, so that a generated question that happens to
        # contain "<image>" cannot break it.
        if example.get(key) is None:
            image = load_image(example.get(self.image_column), self.min_pixels, self.max_pixels)
            content = [{"type": "image", "image": image}, {"type": "text", "text": self._prompt_text(example)}]
            example[key] = [{"role": "user", "content": content}]
        return super()._build_messages(example, key)

    def __getitem__(self, item):
        # A row that passed screening can still fail to decode (e.g. a truncated JPEG): substitute the next row
        # rather than kill the dataloader, and say so.
        for offset in range(MAX_SUBSTITUTIONS + 1):
            index = (item + offset) % len(self.dataframe)
            try:
                row = super().__getitem__(index)
            except ImageError as exc:
                logger.warning(
                    "%s: row %d has an unusable image (%s); using row %d", type(self).__name__, index, exc, index + 1
                )
                continue
            return self._finish_row(row, index)
        raise RuntimeError(
            f"{type(self).__name__}: {MAX_SUBSTITUTIONS + 1} consecutive rows from {item} have unusable images"
        )

    def _finish_row(self, row: dict, index: int) -> dict:
        raise NotImplementedError


class QuestionerDataset(_VisPlayDataset):
    """Image-only parquet (records.IMAGE_COLUMNS) → questioner prompts. Config: data.prompt_template (null =
    packaged questioner.jinja), data.min_pixels, data.max_pixels, data.screen_images."""

    required_columns = ("image",)
    stage = "questioner"

    def _prompt_text(self, example: dict) -> str:
        return render_questioner_prompt(self.prompt_template)

    def _finish_row(self, row: dict, index: int) -> dict:
        row.pop(self.image_column, None)
        row.pop(self.prompt_key, None)  # the same list as raw_prompt
        image_id = row.pop("id", None)
        source = row.pop("source", None)
        image_id = str(index) if _is_blank(image_id) else str(image_id)
        source = "unknown" if _is_blank(source) else str(source)
        row["data_source"] = f"visplay_questioner/{source}"
        # no label: the questioner's reward comes from the frozen reasoner
        row["reward_model"] = {"style": "visplay_questioner", "ground_truth": ""}
        row["extra_info"] = {"index": index, "image_id": image_id, "source": source}
        row["index"] = index
        return row


class ReasonerDataset(_VisPlayDataset):
    """Pseudo-label parquet (records.PSEUDO_LABEL_COLUMNS) → reasoner prompts, pseudo-label as ground truth.
    Rows without a question or a pseudo-label are dropped, and so are rows whose `filter_reason` is not in
    data.keep_filter_reasons (default [kept]) when that column exists."""

    required_columns = ("image", "question", "pseudo_label")
    stage = "reasoner"
    provenance = (
        "source_image_id",
        "iteration",
        "questioner_checkpoint",
        "confidence",
        "num_samples",
        "question_type",
    )

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        keep = config.get("keep_filter_reasons", ["kept"])
        self.keep_filter_reasons = None if keep is None else {str(k) for k in keep}
        super().__init__(
            data_files=data_files, tokenizer=tokenizer, config=config, processor=processor, max_samples=max_samples
        )

    def _row_problem(self, row: dict) -> str | None:
        if _is_blank(row.get("question")):
            return "no_question"
        if _is_blank(row.get("pseudo_label")):
            return "no_pseudo_label"
        reason = row.get("filter_reason")
        if self.keep_filter_reasons is not None and reason is not None and str(reason) not in self.keep_filter_reasons:
            return f"filter_reason={reason}"
        return None

    def _prompt_text(self, example: dict) -> str:
        return render_reasoner_prompt(example["question"], self.prompt_template, example.get("question_type"))

    def _finish_row(self, row: dict, index: int) -> dict:
        row.pop(self.image_column, None)
        row.pop(self.prompt_key, None)
        extra = {"index": index, "id": str(row.pop("id", index)), "question": str(row.pop("question"))}
        for key in self.provenance:
            if key in row:
                value = row.pop(key)
                extra[key] = None if _is_blank(value) else value
        pseudo_label = str(row.pop("pseudo_label")).strip()
        row.pop("filter_reason", None)
        row["data_source"] = "visplay_reasoner"
        row["reward_model"] = {"style": "visplay_pseudo_label", "ground_truth": pseudo_label}
        row["extra_info"] = extra
        row["index"] = index
        return row
