"""Offline test kit: a tiny random Qwen2.5-VL, synthetic images, and an OpenAI-compatible server for a local model.

Nothing here touches the network. Names resolve lazily, so `import verl_ext.testkit` does not import torch.
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
    "OpenAIChatServer": "openai_server",
    "serve_model": "openai_server",
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
