"""Hostile inputs: one decoder for every stage, a decompression-bomb limit of our own, prompt-length limits.

Each case reproduces a fault found on the old code: a 16-bit greyscale image was white in one stage and grey in
another (two decoders); an image header of 12000 x 12000 was decoded in full when PIL's limit was lifted; a
25,000-character question made pseudo-labelling try to allocate tens of GB instead of being counted and skipped.
"""

import base64
import io
from types import SimpleNamespace

import pytest
from PIL import Image

from verl_ext import image_io
from verl_ext.image_io import ImageError, decode_rgb, load_image, prompt_tokens, screen_image
from verl_ext.visplay.filtering import band_filter
from verl_ext.visplay.records import FILTER_REASONS


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _grey16(value: int, size=(32, 24)) -> bytes:
    image = Image.new("I;16", size)
    image.putdata([value] * (size[0] * size[1]))
    return _png(image)


# --------------------------------------------------------------------------------------------------
# One decoder
# --------------------------------------------------------------------------------------------------


def _decoders():
    """Every place an image is turned into RGB pixels, each fed the same encoded bytes."""
    from verl_ext.inference.openai_server import _decode_image_url
    from verl_ext.local.models import decode_image
    from verl_ext.plugins.reasoner_client import image_to_data_url

    def through_data_url(data: bytes) -> Image.Image:  # the reasoner client encodes, the server decodes
        return _decode_image_url(image_to_data_url(data))

    def through_server(data: bytes) -> Image.Image:
        return _decode_image_url("data:image/png;base64," + base64.b64encode(data).decode())

    return {
        "datasets/generation (load_image)": lambda data: load_image(data, 0, 0),
        "local backend (decode_image)": decode_image,
        "openai server": through_server,
        "reasoner client -> server": through_data_url,
    }


@pytest.mark.parametrize("value", [0, 32768, 65535])
def test_16_bit_greyscale_looks_the_same_in_every_stage(value):
    data = _grey16(value)
    expected = round(value * 255 / 65535)
    for name, decode in _decoders().items():
        image = decode(data)
        assert image.mode == "RGB", name
        pixels = set(image.getdata())
        assert len(pixels) == 1, name
        (r, g, b) = pixels.pop()
        assert r == g == b and abs(r - expected) <= 1, f"{name}: {r} for 16-bit {value} (expected {expected})"


def test_every_decoder_refuses_what_the_screen_refuses():
    data = b"not an image at all"
    assert screen_image(data) == "corrupt"
    from verl_ext.inference.openai_server import RequestError

    for name, decode in _decoders().items():
        with pytest.raises((ImageError, RequestError)):
            decode(data)
        assert name


# --------------------------------------------------------------------------------------------------
# Decompression bombs
# --------------------------------------------------------------------------------------------------


def _bilevel_png(width: int, height: int) -> bytes:
    # 1-bit pixels compress to almost nothing: a huge header in a small file, as a bomb is built
    return _png(Image.new("1", (width, height), 0))


def test_a_bomb_header_is_refused_before_decoding_even_without_pils_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # what some libraries do on import
    side = int(image_io.MAX_DECODE_PIXELS**0.5) + 1
    bomb = _bilevel_png(side, side)
    assert len(bomb) < 2_000_000
    assert screen_image(bomb) == "too_large"
    for decode in (load_image, decode_rgb):
        with pytest.raises(ImageError) as err:
            decode(bomb)
        assert err.value.reason == "too_large"


def test_the_limit_admits_a_large_photo():
    # 48 megapixels (8000 x 6000), a phone camera's full size, is under the limit
    assert 8000 * 6000 <= image_io.MAX_DECODE_PIXELS
    assert screen_image(_bilevel_png(8000, 6000)) is None


# --------------------------------------------------------------------------------------------------
# Prompt length
# --------------------------------------------------------------------------------------------------


def test_prompt_tokens_count_text_template_and_image():
    image = Image.new("RGB", (56, 56))
    assert prompt_tokens(10, image, 0, 0) == 10 + image_io.CHAT_TEMPLATE_TOKENS + 4  # 56 / 28 = 2 -> 2 x 2
    assert prompt_tokens(10, (56, 56), 0, 0) == prompt_tokens(10, image, 0, 0)
    assert prompt_tokens(10, None, 0, 0) == 10 + image_io.CHAT_TEMPLATE_TOKENS


class _WordEngine:
    """An engine whose tokenizer counts words; `sample` is never expected for over-long prompts."""

    def __init__(self):
        self.sampled: list[str] = []

    def text_tokens(self, prompt: str) -> int:
        return len(prompt.split())

    def sample(self, requests, sampling, seed):
        self.sampled.extend(r.prompt for r in requests)
        return [["\\boxed{3}"] * sampling.n for _ in requests]


def test_the_limit_is_inclusive_and_zero_turns_it_off():
    from verl_ext.inference.engines import Request
    from verl_ext.inference.offline import over_prompt_limit

    image = Image.new("RGB", (28, 28))  # one visual token
    overhead = image_io.CHAT_TEMPLATE_TOKENS + 1
    requests = {"fits": Request("a " * 10, image), "over": Request("a " * 11, image)}
    args = SimpleNamespace(max_prompt_tokens=10 + overhead, min_pixels=0, max_pixels=0)
    assert over_prompt_limit(_WordEngine(), requests, args) == ["over"]
    args.max_prompt_tokens = 0
    assert over_prompt_limit(_WordEngine(), requests, args) == []


def test_an_over_long_question_is_counted_too_long_never_sampled():
    from verl_ext.inference.offline import LABEL_SCHEMA, pseudo_label_shard

    image = _png(Image.new("RGB", (56, 56), (200, 10, 10)))
    questions = {
        "id": ["short", "long"],
        "source_image_id": ["a", "a"],
        "image": [image, image],
        "question": ["How many circles?", "x " * 12_500],  # 25,000 characters
        "question_type": ["numerical", "numerical"],
        "iteration": [1, 1],
        "questioner_checkpoint": ["q", "q"],
    }
    args = SimpleNamespace(
        prompt_template=None, min_pixels=0, max_pixels=0, m=3, temperature=1.0, top_p=1.0, top_k=-1,
        max_new_tokens=8, seed=1, iteration=1, model="s", max_prompt_tokens=512,
    )  # fmt: skip
    engine = _WordEngine()
    table = pseudo_label_shard(engine, args, 0, questions)
    assert table.schema == LABEL_SCHEMA
    rows = table.to_pylist()
    assert [r["filter_reason"] for r in rows] == [None, "too_long"]
    assert rows[1]["num_samples"] == 0 and rows[1]["pseudo_label"] is None and rows[1]["answers"] is None
    assert rows[0]["num_samples"] == 3 and rows[0]["pseudo_label"] == "3"
    assert len(engine.sampled) == 1 and "How many circles?" in engine.sampled[0]

    # The filter keeps the reason and counts it; the row is never trained on.
    result = band_filter(rows, 0.3, 0.8)  # p = 1: the short question is too easy
    assert "too_long" in FILTER_REASONS
    assert result.reasons == ["too_easy", "too_long"] and result.counts["too_long"] == 1


def test_the_pseudo_label_stage_takes_the_reasoners_prompt_limit(tmp_path):
    from verl_ext.evolve.commands import pseudo_label_command
    from verl_ext.evolve.recipe import load_recipe
    from verl_ext.evolve.stages import build_plan

    recipe = load_recipe("recipes/tiny.yaml", ["reasoner.grpo.max_prompt_length=777"])
    spec = next(s for s in build_plan(recipe, tmp_path) if s.name == "pseudo_label")
    argv = pseudo_label_command(recipe, spec, engine="hf", resolve=str).argv
    assert argv[argv.index("--max-prompt-tokens") + 1] == "777"


@pytest.mark.slow
def test_the_real_engine_counts_tokens_with_its_tokenizer(tiny_vlm_path):
    from transformers import AutoTokenizer

    from verl_ext.inference.engines import HFEngine

    engine = HFEngine(str(tiny_vlm_path), batch_size=1)
    text = "How many red circles are in the picture? " * 20
    expected = len(AutoTokenizer.from_pretrained(str(tiny_vlm_path)).encode(text, add_special_tokens=False))
    assert engine.text_tokens(text) == expected > 20


@pytest.mark.slow
def test_an_over_long_question_to_the_frozen_reasoner_is_a_counted_failure(tiny_vlm_path, synthetic_images):
    from verl_ext.inference.openai_server import serve_model
    from verl_ext.plugins.reasoner_client import ReasonerClient

    image = synthetic_images[0][0]
    with serve_model(tiny_vlm_path, max_prompt_tokens=200) as url:
        client = ReasonerClient(base_url=url, num_samples=2, max_tokens=4, top_k=40, max_retries=2)
        short, long = client.sample_many_sync([("How many shapes?", image), ("How many shapes? " * 2000, image)])
    assert short.ok and len(short.texts) == 2
    assert not long.ok and long.texts == [] and long.attempts == 1  # a 400: permanent, not retried
    assert "limit of 200" in long.error


def test_no_module_but_image_io_opens_images():
    """The one-decoder rule, kept: any `Image.open` outside image_io would be a second decoder with its own modes."""
    import ast
    from pathlib import Path

    import verl_ext

    package = Path(verl_ext.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path == package / "image_io.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "open" and getattr(node.value, "id", None) == "Image":
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert offenders == []


def test_errors_keep_their_fields_across_processes():
    """Errors raised in a worker (Ray actors, the world's process pool) reach the driver whole, not as a bare
    BrokenProcessPool or with their fields reset."""
    import pickle

    from verl_ext.evolve.integrity import CorruptOutputError
    from verl_ext.openai_client import TransientError

    corrupt = pickle.loads(pickle.dumps(CorruptOutputError("2:reasoner", "iter_2/reasoner: size changed")))
    assert (corrupt.stage, str(corrupt)) == ("2:reasoner", "iter_2/reasoner: size changed")
    image = pickle.loads(pickle.dumps(ImageError("too_large", "9000x9000 pixels")))
    assert (image.reason, image.detail, str(image)) == ("too_large", "9000x9000 pixels", "too_large: 9000x9000 pixels")
    transient = pickle.loads(pickle.dumps(TransientError("503", timeout=True, retry_after=2.5)))
    assert (str(transient), transient.timeout, transient.connect, transient.retry_after) == ("503", True, False, 2.5)
