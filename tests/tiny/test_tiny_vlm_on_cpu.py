"""The tiny offline Qwen2.5-VL: deterministic build, loadable by transformers and verl, consistent token ids."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from verl_ext.compat.torchvision_shim import install_hook

install_hook()

SAMPLE_TEXTS = [
    "How many red circles are there? \\boxed{3}",
    "<type>multiple choice</type><question>Which bar is tallest?\nA. red\nB. blue</question><answer>B</answer>",
    "\\frac{\\sqrt{3}}{2} \\approx 0.866, x^2 + 1 = 10 -> x = \\pm 3",
    "  leading and trailing spaces, tabs\tand\nnew lines \n",
    "unseen words: zebra quixotic; unicode: café, naïve, 漢字, emoji 🙂",
]


def _message(text="How many shapes are there?", image=True):
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


@pytest.fixture(scope="module")
def processor(tiny_vlm_path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_vlm_path)


@pytest.fixture(scope="module")
def model(tiny_vlm_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_vlm_path).eval()


def test_build_is_deterministic(tmp_path, tiny_vlm_path):
    from verl_ext.tiny.tiny_vlm import build_tiny_vlm

    again = build_tiny_vlm(tmp_path / "again", seed=0)
    names = sorted(p.name for p in Path(tiny_vlm_path).iterdir() if p.name != ".sealed.json")  # the cache's seal
    assert names == sorted(p.name for p in again.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= set(names)
    for name in names:
        assert (again / name).read_bytes() == (Path(tiny_vlm_path) / name).read_bytes(), name

    other = build_tiny_vlm(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()


def test_config_is_a_valid_tiny_qwen2_5_vl(tiny_vlm_path, model, processor):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_vlm_path)
    assert config.model_type == "qwen2_5_vl" and config.architectures == ["Qwen2_5_VLForConditionalGeneration"]
    text, vision = config.text_config, config.vision_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert all(0 <= i < vision.depth for i in vision.fullatt_block_indexes)
    assert vision.out_hidden_size == text.hidden_size and vision.patch_size == 14 and vision.spatial_merge_size == 2
    tokenizer = processor.tokenizer
    assert text.vocab_size >= len(tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    assert config.image_token_id == ids("<|image_pad|>") == processor.image_token_id
    assert config.video_token_id == ids("<|video_pad|>") == processor.video_token_id
    assert config.vision_start_token_id == ids("<|vision_start|>")
    assert config.vision_end_token_id == ids("<|vision_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    generation = json.loads((Path(tiny_vlm_path) / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [ids("<|im_end|>"), ids("<|endoftext|>")]
    n_params = sum(p.numel() for p in model.parameters())
    assert 5e5 < n_params < 2e6
    assert all(p.dtype.is_floating_point and p.element_size() == 4 for p in model.parameters())


def test_tokenizer_round_trips_text(tiny_vlm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm_path)
    for text in SAMPLE_TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert len(tokenizer("<type>numerical</type>")["input_ids"]) < len("<type>numerical</type>")  # merges learned
    for token in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"):
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]
    ids = tokenizer("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nhi"


def test_chat_template_renders_qwen2_vl_format(processor, tiny_vlm_path):
    from transformers import AutoTokenizer

    rendered = processor.apply_chat_template(_message("Count."), tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Count.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm_path)
    assert tokenizer.apply_chat_template(conversation, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
    )
    two_images = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "?"}]}]
    with_ids = processor.apply_chat_template(two_images, tokenize=False, add_vision_id=True)
    assert "Picture 1: <|vision_start|>" in with_ids and "Picture 2: <|vision_start|>" in with_ids


def test_processor_image_tokens_match_grid(processor, synthetic_images):
    from PIL import Image

    images = [synthetic_images[0][0], Image.new("RGB", (120, 60), (0, 128, 255))]
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare."}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    grid = inputs["image_grid_thw"]
    assert grid[0].tolist() == [1, 4, 4]  # 64x64 -> 56x56 -> 4x4 patches
    assert int(grid.prod(-1).sum()) == inputs["pixel_values"].shape[0]
    merge = processor.image_processor.merge_size
    n_pad = int((inputs["input_ids"] == processor.image_token_id).sum())
    assert n_pad == int(grid.prod(-1).sum()) // merge**2
    assert 1 <= n_pad <= 32


def test_generate_with_image_never_samples_placeholders(processor, model, synthetic_images):
    import torch

    from verl_ext.tiny.tiny_vlm import suppressed_token_ids

    text = processor.apply_chat_template(_message(), add_generation_prompt=True)
    inputs = processor(text=[text], images=[synthetic_images[1][0]], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=48, do_sample=True, top_k=0, num_return_sequences=4)
    generated = out[:, inputs["input_ids"].shape[1] :]
    assert generated.shape[0] == 4 and generated.shape[1] >= 1
    banned = set(suppressed_token_ids(processor.tokenizer)) | {processor.image_token_id, processor.video_token_id}
    assert not banned & set(generated.flatten().tolist())
    assert len(set(map(tuple, generated.tolist()))) > 1  # real sampling: the samples differ
    for response in processor.batch_decode(generated, skip_special_tokens=True):
        assert response.isascii() and "\ufffd" not in response
    greedy = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert torch.equal(greedy, model.generate(**inputs, max_new_tokens=8, do_sample=False))


def test_verl_loads_processor_and_tokenizer(tiny_vlm_path):
    import warnings

    from transformers import AutoConfig
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.model import get_generation_config, get_hf_auto_model_class

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        processor = hf_processor(str(tiny_vlm_path))
    assert not [w for w in caught if "processor" in str(w.message).lower()]  # verl turns load failures into these
    tokenizer = hf_tokenizer(str(tiny_vlm_path))
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert tokenizer.pad_token_id == processor.tokenizer.pad_token_id is not None
    assert get_generation_config(str(tiny_vlm_path)).eos_token_id == [tokenizer.eos_token_id, tokenizer.pad_token_id]
    assert get_hf_auto_model_class(AutoConfig.from_pretrained(tiny_vlm_path)).__name__ == "AutoModelForImageTextToText"

    from PIL import Image

    text = processor.apply_chat_template(_message(), add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.new("RGB", (64, 64))], return_tensors="pt")
    position_ids, _ = processor.get_rope_index(  # bound by verl, as its agent loop calls it
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        image_grid_thw=inputs["image_grid_thw"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
    )
    assert position_ids.shape == (3, 1, inputs["input_ids"].shape[1])


def test_cache_builds_once_and_survives_a_race(tmp_path, tiny_vlm_path):
    from verl_ext.tiny.tiny_vlm import tiny_vlm_path as cached

    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: cached(cache_dir=tmp_path), range(2)))
    assert paths[0] == paths[1] and paths[0].name == Path(tiny_vlm_path).name
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]  # no temporary leftovers
    for name in ("model.safetensors", "tokenizer.json"):
        assert (paths[0] / name).read_bytes() == (Path(tiny_vlm_path) / name).read_bytes()
    mtime = (paths[0] / "model.safetensors").stat().st_mtime_ns
    assert cached(cache_dir=tmp_path) == paths[0]
    assert (paths[0] / "model.safetensors").stat().st_mtime_ns == mtime

    # a damaged entry (one flipped byte, same size) is detected by its seal and built again
    weights = paths[0] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    assert cached(cache_dir=tmp_path) == paths[0]
    assert weights.read_bytes() == (Path(tiny_vlm_path) / "model.safetensors").read_bytes()


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    from verl_ext.tiny.tiny_vlm import default_cache_dir

    monkeypatch.setenv("VISPLAY_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("VISPLAY_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "visplay"
