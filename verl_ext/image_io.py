"""Image decoding shared by training datasets, offline inference and evaluation (PIL only; no verl, no torch).

Every stage decodes an image the same way: RGB, EXIF rotation applied, transparency on white, pixels fitted into
[min_pixels, max_pixels] with the aspect ratio kept. Unusable images raise `ImageError` with a countable reason.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from typing import Any

from PIL import Image, ImageOps

# The paper's pixel bounds (262144 = 512^2, 4194304 = 2048^2): smaller images are upscaled, larger ones shrunk.
DEFAULT_MIN_PIXELS = 262144
DEFAULT_MAX_PIXELS = 4194304
# Decompression-bomb limit: images whose header claims more pixels are refused before any pixel is decoded (8192^2,
# 64 Mi pixels: a 48-megapixel phone photo passes, a 12000 x 12000 PNG does not). Our own limit, checked on the header,
# so it holds even when another library lowers or disables PIL's (`Image.MAX_IMAGE_PIXELS = None`).
MAX_DECODE_PIXELS = 8192 * 8192
# Qwen2.5-VL's smart_resize refuses aspect ratios above 200.
MAX_ASPECT_RATIO = 200.0
IMAGE_PIXELS_PER_TOKEN = 28 * 28  # Qwen2-VL / Qwen2.5-VL / MiMo-VL: one token per 28 x 28 pixels after the 2x2 merge
CHAT_TEMPLATE_TOKENS = 32  # the chat template's role markers and vision start/end tokens, generously


class ImageError(ValueError):
    """An image that cannot be used; `reason` is one of: missing, corrupt, too_large, bad_aspect."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # keeps `reason` across processes (Ray actors, process pools)
        return type(self), (self.reason, self.detail)


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
    if width * height > MAX_DECODE_PIXELS:
        raise ImageError("too_large", f"{width}x{height} pixels (more than {MAX_DECODE_PIXELS})")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageError("bad_aspect", f"{width}x{height}")


def image_size(value: Any) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    return _open(value).size


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
    transparency composited on white; CMYK/P/L/I;16 converted). Raises ImageError with a reason.
    A bound of 0 leaves that side alone (`decode_rgb`: no resizing at all)."""
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


def decode_rgb(value: Any) -> Image.Image:
    """The one decoder at its native size: what every stage that resizes on its own (a processor, an HTTP server, an
    encoder of data URLs) uses, so an image looks the same everywhere (16-bit greyscale scaled, not clipped white)."""
    return load_image(value, min_pixels=0, max_pixels=0)


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


def _fit_scale(width: int, height: int, min_pixels: int, max_pixels: int) -> float:
    """The side scale that fits width x height pixels into [min_pixels, max_pixels] (a bound of 0 is no bound)."""
    pixels = width * height
    if max_pixels and pixels > max_pixels:
        return math.sqrt(max_pixels / pixels)
    if min_pixels and pixels < min_pixels:
        return math.sqrt(min_pixels / pixels)
    return 1.0


def image_tokens(width: int, height: int, min_pixels: int, max_pixels: int) -> int:
    """Visual tokens of an image once fitted into [min_pixels, max_pixels] (Qwen2.5-VL's smart_resize rounding)."""
    scale = _fit_scale(width, height, min_pixels, max_pixels)
    side = math.sqrt(IMAGE_PIXELS_PER_TOKEN)
    return max(1, round(height * scale / side)) * max(1, round(width * scale / side))


def prompt_tokens(
    text_tokens: int, image: Image.Image | tuple[int, int] | None, min_pixels: int, max_pixels: int
) -> int:
    """Tokens of a one-image chat prompt: its text, the chat template's markers and the image's visual tokens (the
    image as given, or its (width, height) before fitting; None = text only)."""
    if image is None:
        visual = 0
    else:
        width, height = image.size if isinstance(image, Image.Image) else image
        visual = image_tokens(width, height, min_pixels, max_pixels)
    return text_tokens + CHAT_TEMPLATE_TOKENS + visual


def _fit_pixels(image: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    width, height = image.size
    scale = _fit_scale(width, height, min_pixels, max_pixels)
    if scale == 1.0:
        return image
    new_size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(new_size, Image.Resampling.BICUBIC)
