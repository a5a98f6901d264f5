"""The embedded offline default: a tiny random Qwen2.5-VL (model, tokenizer, processor), synthetic images, and
benchmark-shaped fixtures. The CPU recipes run on it (`testkit:tiny_vlm`, `images.source: testkit`); nothing here
touches the network. Names resolve lazily, so `import verl_ext.tiny` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_tiny_vlm": "tiny_vlm",
    "tiny_vlm_path": "tiny_vlm",
    "make_images": "images",
    "png_bytes": "images",
    "write_image_folder": "images",
    "write_image_parquet": "images",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
