"""verl datasets of the two VisPlay stages, plugged in by `data.custom_cls.path/name`.

`QuestionerDataset` turns the image-only parquet (id, source, image bytes) into questioner prompts;
`ReasonerDataset` turns the pseudo-label parquet into reasoner prompts with the pseudo-label as ground truth.
Both subclass verl's RLHFDataset and reuse its message building, so images reach the rollout exactly as verl's
own multimodal datasets send them (`{"type": "image", "image": PIL}` inside `raw_prompt`).
"""

from __future__ import annotations

import collections
import io
import logging
import math
import os
import warnings
from typing import Any

from PIL import Image, ImageOps
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_ext.prompts import render_questioner_prompt, render_reasoner_prompt
from verl_ext.visplay.records import missing_columns

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

# The paper's pixel bounds (262144 = 512^2, 4194304 = 2048^2): smaller images are upscaled, larger ones shrunk.
DEFAULT_MIN_PIXELS = 262144
DEFAULT_MAX_PIXELS = 4194304
# Header sizes beyond this are refused outright (PIL's own decompression-bomb error threshold).
HARD_MAX_PIXELS = 2 * 89478485
# Qwen2.5-VL's smart_resize refuses aspect ratios above 200.
MAX_ASPECT_RATIO = 200.0
MAX_SUBSTITUTIONS = 16


class ImageError(ValueError):
    """An image that cannot be used; `reason` is one of: missing, corrupt, too_large, bad_aspect."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _image_bytes(value: Any) -> bytes | Image.Image | str:
    """The parquet cell → encoded bytes, a PIL image, or a path. HF's Image feature stores {"bytes", "path"}."""
    if value is None:
        raise ImageError("missing", "no image in the row")
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return str(value["path"])
        raise ImageError("missing", "image dict holds neither bytes nor path")
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) == 0:
            raise ImageError("missing", "empty image bytes")
        return bytes(value)
    if isinstance(value, Image.Image | str | os.PathLike):
        return value
    raise ImageError("corrupt", f"unsupported image cell type {type(value).__name__}")


def _open(value: Any) -> Image.Image:
    source = _image_bytes(value)
    if isinstance(source, Image.Image):
        return source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("too_large", str(exc)) from exc
    except FileNotFoundError as exc:
        raise ImageError("missing", str(exc)) from exc
    except Exception as exc:
        raise ImageError("corrupt", f"{type(exc).__name__}: {exc}") from exc


def _check_geometry(width: int, height: int):
    if width <= 0 or height <= 0:
        raise ImageError("corrupt", f"size {width}x{height}")
    if width * height > HARD_MAX_PIXELS:
        raise ImageError("too_large", f"{width}x{height} pixels")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageError("bad_aspect", f"{width}x{height}")


def screen_image(value: Any) -> str | None:
    """Cheap validity check (header + integrity, no full decode): None if usable, else the reason."""
    try:
        image = _open(value)
        _check_geometry(*image.size)
        if not isinstance(_image_bytes(value), Image.Image):
            image.verify()
    except ImageError as exc:
        return exc.reason
    except Exception:
        return "corrupt"
    return None


def load_image(value: Any, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode one image to RGB within [min_pixels, max_pixels] (aspect ratio kept; EXIF rotation applied;
    transparency composited on white; CMYK/P/L/I;16 converted). Raises ImageError with a reason."""
    image = _open(value)
    try:
        _check_geometry(*image.size)
        width, height = image.size
        if max_pixels and width * height > max_pixels and getattr(image, "format", None) == "JPEG":
            image.draft("RGB", (width // 2, height // 2))  # cheap 2x/4x JPEG downscale while decoding
        image.load()
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError("corrupt", f"{type(exc).__name__}: {exc}") from exc
    return _fit_pixels(image, min_pixels, max_pixels)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything to white
        image = image.point(lambda v: v * (255.0 / 65535.0)).convert("L")
    return image.convert("RGB")


def _fit_pixels(image: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    width, height = image.size
    pixels = width * height
    scale = 1.0
    if max_pixels and pixels > max_pixels:
        scale = math.sqrt(max_pixels / pixels)
    elif min_pixels and pixels < min_pixels:
        scale = math.sqrt(min_pixels / pixels)
    if scale == 1.0:
        return image
    new_size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(new_size, Image.Resampling.BICUBIC)


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
