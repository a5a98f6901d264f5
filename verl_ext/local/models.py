"""Loading, saving and prompting the local backend's models: threads, pixel limits, chat text, HF model dirs.

Training (TRL), sampling and the warm-up all build their chats here, so the two roles see exactly the messages that
verl's datasets build: one user turn holding the image, then the rendered Jinja prompt.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Vision placeholders must never be sampled: a response holding one breaks the next forward pass.
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
# Below this many parameters a model is dominated by per-op overhead: one thread beats several, and on a shared
# 2-core box several threads spin against other processes (measured: 7x slower generation with 2 than with 1).
SMALL_MODEL_PARAMS = 50_000_000
THREADS_ENV = "VISPLAY_TORCH_THREADS"


def configure_threads(num_params: int | None = None) -> int:
    """Set torch's intra-op threads: $VISPLAY_TORCH_THREADS, else 1 for a small model, else torch's default."""
    import torch

    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        torch.set_num_threads(max(1, int(value)))
    elif num_params is not None and num_params < SMALL_MODEL_PARAMS and not torch.cuda.is_available():
        torch.set_num_threads(1)
    return torch.get_num_threads()


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_processor(path: str | os.PathLike, min_pixels: int | None = None, max_pixels: int | None = None, **kwargs):
    """The model's processor with the recipe's image pixel limits (Qwen2-VL image processors' min/max_pixels)."""
    from transformers import AutoProcessor

    extra = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    return AutoProcessor.from_pretrained(str(path), **extra, **kwargs)


def load_model(path: str | os.PathLike, trust_remote_code: bool = False, train: bool = False):
    """A float32 (CPU) or bfloat16 (GPU) image-text-to-text model, in eval mode unless `train`."""
    import torch
    from transformers import AutoModelForImageTextToText

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code)
    configure_threads(sum(p.numel() for p in model.parameters()))
    model.to(device())
    return model.train(train)


def suppressed_token_ids(tokenizer) -> list[int]:
    vocab = tokenizer.get_vocab()
    return sorted({vocab[t] for t in VISION_TOKENS if t in vocab})


def user_message(text: str, with_image: bool = True) -> list[dict]:
    """One user turn: the image first, then the instruction (verl_ext.plugins.datasets builds the same)."""
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


def chat_text(processor, text: str, with_image: bool = True, answer: str | None = None) -> str:
    """The templated prompt (ending in the assistant header), plus `answer` when given (for supervised targets)."""
    prompt = processor.apply_chat_template(user_message(text, with_image), add_generation_prompt=True, tokenize=False)
    return prompt if answer is None else prompt + answer


def decode_image(value: Any):
    """An RGB PIL image from encoded bytes, an HF {"bytes", "path"} struct, a path, or a PIL image: the decoder every
    stage shares (`verl_ext.image_io.decode_rgb`), at native size (the processor fits the pixel bounds)."""
    from verl_ext.image_io import decode_rgb

    return decode_rgb(value)


def save_model_dir(model, processor, out_dir: str | os.PathLike) -> Path:
    """Write an HF model dir that loads with from_pretrained / AutoProcessor: weights, configs, processor, template."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    template = getattr(processor, "chat_template", None)
    if template and not (out / "chat_template.jinja").exists():  # the file every transformers version reads
        (out / "chat_template.jinja").write_text(template)
    return out


FICLONE = 0x40049409  # linux/fs.h: share the source's blocks copy-on-write (btrfs, xfs, ...)


def _clone_or_copy(src: Path, dst: Path) -> None:
    import fcntl

    with open(src, "rb") as s, open(dst, "wb") as d:
        try:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
            cloned = True
        except OSError:
            cloned = False
    if cloned:
        shutil.copystat(src, dst)
    else:
        shutil.copy2(src, dst)


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike, ignore: tuple[str, ...] = ()) -> Path:
    """Copy `src` into `dst` (a copy-on-write clone where the file system offers one); existing files in `dst` are
    replaced; top-level names in `ignore` are left out (e.g. the loop's stage marker of a finished stage's output,
    which describes that output, not the copy). Never hard links: a run's files must not change when a shared cache
    entry is damaged or rebuilt."""
    src, dst = Path(src), Path(dst)
    for path in sorted(src.rglob("*")):
        if path.relative_to(src).parts[0] in ignore:
            continue
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        _clone_or_copy(path, target)
    dst.mkdir(parents=True, exist_ok=True)
    return dst


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling dir; on success rename it to `final` (a concurrent winner's copy is kept)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.pid*.*"):  # left by a build that was killed
        pid = stale.name[len(final.name) + 5 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.pid{os.getpid()}.", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
