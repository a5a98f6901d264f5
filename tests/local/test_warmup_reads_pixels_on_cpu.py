"""The supervised warm-up trains on the pixels: after `train_format` on a question only the image can answer (the
colour of one square), the tiny VLM's held-out answer loss is far lower with the true image than with another one.

It guards the whole image path of the warm-up (processor, `_encode`, `_collate`, the vision tower's gradients) and
the finding behind `recipes/tiny-world.yaml`'s warm-up learning rate: at the kit default of 3e-3 the tiny model
learns answer priors and ignores the image, at 3e-4 it reads it (docs/world.md).
"""

import random

import pytest
import torch

from verl_ext.local.models import load_model, load_processor
from verl_ext.local.warmup import WarmupConfig, _collate, _encode, _target_loss, train_format
from verl_ext.world.scenes import COLORS, SIZE

QUESTION = "What color is the square?"
PIXELS = {"min_pixels": 3136, "max_pixels": 12544}


def _square(rng: random.Random):
    from PIL import Image, ImageDraw

    color = rng.choice(sorted(COLORS))
    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    x, y = rng.randrange(4) * 28, rng.randrange(4) * 28
    ImageDraw.Draw(image).rectangle([x + 2, y + 2, x + 25, y + 25], fill=COLORS[color])
    return {"image": image, "prompt": QUESTION, "target": color}


def _mean_loss(model, processor, examples) -> float:
    pad = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    with torch.no_grad():
        batch = _collate([_encode(processor, e, "<|im_end|>") for e in examples], pad)
        return _target_loss(model, batch).item()


@pytest.mark.slow
def test_warmup_learns_what_only_the_image_tells(tiny_vlm_path):
    rng = random.Random(0)
    train = [_square(rng) for _ in range(256)]
    held_out = [_square(rng) for _ in range(48)]
    swapped = [{**e, "target": held_out[(i + 1) % len(held_out)]["target"]} for i, e in enumerate(held_out)]
    swapped = [s for s, e in zip(swapped, held_out, strict=True) if s["target"] != e["target"]]  # truly mismatched
    torch.manual_seed(0)
    model, processor = load_model(tiny_vlm_path), load_processor(tiny_vlm_path, **PIXELS)
    cfg = WarmupConfig(steps=300, lr=3e-4, questioner_batch=4, reasoner_batch=4, **PIXELS)
    train_format(model, processor, train, train, cfg, log=lambda _m: None)

    true_image = _mean_loss(model, processor, held_out)
    other_answer = _mean_loss(model, processor, swapped)  # the same images, each with another square's colour
    # Chance over six colours costs ln 6 / 2 ~ 0.9 per answer token; a prior-only model scores both sets alike.
    print(f"answer loss: true image {true_image:.4f}, another square's colour {other_answer:.4f}")
    assert true_image < 0.3, true_image
    assert other_answer > 5 * true_image, (true_image, other_answer)
