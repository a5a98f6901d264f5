"""The two verl datasets on the real tiny Qwen2.5-VL processor, batched by verl's collate_fn, with bad images."""

import io

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from verl_ext import image_io
from verl_ext.plugins.datasets import QuestionerDataset, ReasonerDataset, load_image
from verl_ext.prompts import render_questioner_prompt
from verl_ext.tiny.images import image_id, make_images, png_bytes


@pytest.fixture(scope="module")
def tokenizer_processor(tiny_vlm_path):
    from verl.utils import hf_processor, hf_tokenizer

    return hf_tokenizer(str(tiny_vlm_path)), hf_processor(str(tiny_vlm_path))


def _config(tmp_path, **overrides):
    base = {
        "cache_dir": str(tmp_path / "verl_cache"),
        "max_prompt_length": 1024,
        "filter_overlong_prompts": False,
        "filter_overlong_prompts_workers": 1,
        "return_raw_chat": True,
        "min_pixels": 28 * 28 * 4,
        "max_pixels": 112 * 112,
    }
    return OmegaConf.create({**base, **overrides})


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _verl_model_inputs(processor, messages):
    """What verl's agent loop feeds the model for one raw_prompt (vision extraction + chat template + processor)."""
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    images, videos, _ = QuestionerDataset._process_multi_modal_info(messages, 14, {})
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return build_multimodal_processor_inputs(processor, text=[prompt], images=images, videos=None, audio=None)


def test_questioner_batch_through_verl_collate_and_processor(image_parquet, tokenizer_processor, tmp_path):
    from verl.utils.dataset.rl_dataset import collate_fn

    tokenizer, processor = tokenizer_processor
    # filter_overlong_prompts=True runs verl's own length filter over our messages as well
    dataset = QuestionerDataset(
        data_files=[str(image_parquet)],
        tokenizer=tokenizer,
        processor=processor,
        config=_config(tmp_path, filter_overlong_prompts=True),
    )
    assert len(dataset) == 8 and not dataset.skipped
    batch = collate_fn([dataset[i] for i in range(4)])
    assert batch["dummy_tensor"].shape == (4, 1)
    assert {"raw_prompt", "data_source", "reward_model", "extra_info", "index"} <= set(batch)
    assert "image" not in batch and "id" not in batch  # no raw bytes travel with the batch
    assert all(isinstance(v, np.ndarray) and v.dtype == object for k, v in batch.items() if k != "dummy_tensor")
    assert [info["image_id"] for info in batch["extra_info"]] == [image_id(i, seed=0) for i in range(4)]
    assert batch["data_source"][0] == "visplay_questioner/synthetic"
    messages = batch["raw_prompt"][0]
    content = messages[0]["content"]
    assert messages[0]["role"] == "user"
    assert content[0]["type"] == "image" and content[0]["image"].mode == "RGB"
    assert content[1] == {"type": "text", "text": render_questioner_prompt()}
    assert batch["reward_model"][0]["ground_truth"] == ""
    inputs = _verl_model_inputs(processor, messages)
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    merge = processor.image_processor.merge_size
    assert int((inputs["input_ids"] == image_pad).sum()) == int(inputs["image_grid_thw"].prod()) // merge**2


def _bad_image_parquet(path):
    good = [png_bytes(image) for image, _ in make_images(3, seed=1)]
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 20, 30))
    palette = Image.new("P", (30, 30), 0)
    palette.info["transparency"] = 0
    sixteen = Image.fromarray(np.full((30, 30), 40000, dtype=np.uint16))
    rows = [
        ("good-0", good[0]),
        ("missing-none", None),
        ("missing-empty", b""),
        ("corrupt-text", b"this is not an image"),
        ("corrupt-truncated", good[1][: len(good[1]) // 2]),
        ("cmyk", _encoded(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")),
        ("rgba", _encoded(rgba, "PNG")),
        ("palette", _encoded(palette, "PNG")),
        ("gray16", _encoded(sixteen, "PNG")),
        ("huge", _encoded(Image.new("RGB", (1200, 1000), (10, 200, 10)), "JPEG")),
        ("tiny", _encoded(Image.new("RGB", (6, 5), (10, 10, 200)), "PNG")),
        ("sliver", _encoded(Image.new("RGB", (1, 300), (0, 0, 0)), "PNG")),
        ("good-2", good[2]),
    ]
    pd.DataFrame({"id": [r[0] for r in rows], "source": "bad", "image": [r[1] for r in rows]}).to_parquet(path)
    return path


def test_bad_images_are_counted_and_skipped_or_converted(tokenizer_processor, tmp_path, monkeypatch):
    tokenizer, processor = tokenizer_processor
    # "huge" (1.2 Mpx) is refused like a decompression bomb
    monkeypatch.setattr(image_io, "MAX_DECODE_PIXELS", 1_000_000)
    path = _bad_image_parquet(tmp_path / "bad.parquet")
    dataset = QuestionerDataset(
        data_files=[str(path)], tokenizer=tokenizer, processor=processor, config=_config(tmp_path)
    )
    assert dict(dataset.skipped) == {"missing": 2, "corrupt": 2, "too_large": 1, "bad_aspect": 1}
    rows = {dataset[i]["extra_info"]["image_id"]: dataset[i] for i in range(len(dataset))}
    assert sorted(rows) == ["cmyk", "good-0", "good-2", "gray16", "palette", "rgba", "tiny"]
    images = {k: row["raw_prompt"][0]["content"][0]["image"] for k, row in rows.items()}
    assert all(image.mode == "RGB" for image in images.values())
    assert images["rgba"].getpixel((35, 15)) == (255, 255, 255)  # transparent -> white, not black
    assert images["rgba"].getpixel((5, 15))[2] > 200
    assert images["gray16"].getpixel((0, 0))[0] > 100  # 16-bit scaled, not clipped to white or black
    small = images["tiny"]
    assert small.size[0] * small.size[1] >= 28 * 28 * 4 * 0.9  # upscaled to min_pixels
    for image in images.values():
        assert image.size[0] * image.size[1] <= 112 * 112


def test_large_image_is_downscaled_to_max_pixels():
    big = _encoded(Image.new("RGB", (3000, 2000), (1, 2, 3)), "JPEG")
    image = load_image(big, min_pixels=0, max_pixels=4194304 // 4)
    assert image.size[0] * image.size[1] <= 4194304 // 4
    assert abs(image.size[0] / image.size[1] - 1.5) < 0.01


def test_row_that_fails_to_decode_at_read_time_is_replaced(tokenizer_processor, tmp_path):
    tokenizer, processor = tokenizer_processor
    good = png_bytes(make_images(1, seed=2)[0][0])
    path = tmp_path / "late.parquet"
    pd.DataFrame({"id": ["broken", "fine"], "source": "s", "image": [b"garbage", good]}).to_parquet(path)
    config = _config(tmp_path, screen_images=False)
    dataset = QuestionerDataset(data_files=[str(path)], tokenizer=tokenizer, processor=processor, config=config)
    assert len(dataset) == 2
    assert dataset[0]["extra_info"]["image_id"] == "fine"


def test_missing_columns_and_empty_files_fail_clearly(tokenizer_processor, tmp_path):
    tokenizer, processor = tokenizer_processor
    path = tmp_path / "noimage.parquet"
    pd.DataFrame({"id": ["a"], "source": ["s"]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['image'\]"):
        QuestionerDataset(data_files=[str(path)], tokenizer=tokenizer, processor=processor, config=_config(tmp_path))
    path = tmp_path / "allbad.parquet"
    pd.DataFrame({"id": ["a"], "source": ["s"], "image": [b"xx"]}).to_parquet(path)
    with pytest.raises(ValueError, match="no usable rows"):
        QuestionerDataset(data_files=[str(path)], tokenizer=tokenizer, processor=processor, config=_config(tmp_path))


def _pseudo_label_parquet(path):
    images = make_images(6, seed=3)
    rows = []
    specs = [
        ("How many circles are there?", "3", "kept"),
        ("Which bar is tallest? A. red B. blue", "B", "kept"),
        ("", "2", "kept"),  # no question
        ("What colour is the background?", None, "no_answer"),  # no pseudo-label
        ("How many squares?", "4", "too_easy"),  # filtered out by the band
        ("Describe the <image> token", "1", "kept"),  # a placeholder inside generated text stays text
    ]
    for i, ((image, scene), (question, label, reason)) in enumerate(zip(images, specs, strict=True)):
        rows.append(
            {
                "id": f"{scene['id']}/1/{i}",
                "source_image_id": scene["id"],
                "image": png_bytes(image),
                "question": question,
                "question_type": "numerical",
                "pseudo_label": label,
                "confidence": 0.5,
                "num_samples": 10,
                "iteration": 1,
                "questioner_checkpoint": "ckpt/q1",
                "filter_reason": reason,
            }
        )
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_reasoner_batch_from_pseudo_labels(tokenizer_processor, tmp_path):
    from verl.utils.dataset.rl_dataset import collate_fn

    tokenizer, processor = tokenizer_processor
    path = _pseudo_label_parquet(tmp_path / "labels.parquet")
    dataset = ReasonerDataset(
        data_files=[str(path)], tokenizer=tokenizer, processor=processor, config=_config(tmp_path)
    )
    assert len(dataset) == 3
    assert dict(dataset.skipped) == {"no_question": 1, "no_pseudo_label": 1, "filter_reason=too_easy": 1}
    batch = collate_fn([dataset[i] for i in range(len(dataset))])
    assert [rm["ground_truth"] for rm in batch["reward_model"]] == ["3", "B", "1"]
    extra = batch["extra_info"][0]
    assert extra["source_image_id"] == image_id(0, seed=3) and extra["id"] == f"{image_id(0, seed=3)}/1/0"
    assert extra["iteration"] == 1 and extra["questioner_checkpoint"] == "ckpt/q1" and extra["confidence"] == 0.5
    texts = [messages[0]["content"][1]["text"] for messages in batch["raw_prompt"]]
    assert texts[0].startswith("How many circles are there?") and "\\boxed{}" in texts[0]
    assert "<image> token" in texts[2]
    for messages in batch["raw_prompt"]:
        inputs = _verl_model_inputs(processor, messages)
        assert inputs["image_grid_thw"].shape[0] == 1  # exactly one image, the generated text's <image> ignored
        assert isinstance(inputs["input_ids"], torch.Tensor)
    # every filter reason kept when asked
    config = _config(tmp_path, keep_filter_reasons=None)
    everything = ReasonerDataset(data_files=[str(path)], tokenizer=tokenizer, processor=processor, config=config)
    assert len(everything) == 4


def test_prompts_over_max_prompt_length_are_counted_and_dropped(tokenizer_processor, tmp_path):
    # verl 0.9.1's agent loop raises on a multimodal prompt longer than rollout.prompt_length (it cannot truncate
    # image tokens): the dataset drops such rows before, and counts them.
    tokenizer, processor = tokenizer_processor
    path = _pseudo_label_parquet(tmp_path / "labels.parquet")
    frame = pd.read_parquet(path)
    frame.loc[0, "question"] = "How many circles are there? " + "Look again at every corner. " * 200
    frame.to_parquet(path)
    config = _config(tmp_path, max_prompt_length=512)
    dataset = ReasonerDataset(data_files=[str(path)], tokenizer=tokenizer, processor=processor, config=config)
    assert dataset.skipped["prompt_too_long"] == 1
    assert len(dataset) == 2


def test_image_tokens_follow_the_pixel_bounds():
    from verl_ext.plugins.datasets import image_tokens

    assert image_tokens(2048, 2048, 262144, 4194304) == 73 * 73  # 2048 / 28 = 73.1
    assert image_tokens(4096, 4096, 0, 4194304) == 73 * 73  # downscaled to max_pixels first
    assert image_tokens(56, 56, 112 * 112, 0) == 16


def test_hand_made_pseudo_labels_without_filter_reason_load(tokenizer_processor, tmp_path):
    # a user's own labels: no filter_reason (nor provenance columns); every labelled row is trained on
    tokenizer, processor = tokenizer_processor
    frame = pd.read_parquet(_pseudo_label_parquet(tmp_path / "labels.parquet"))
    frame = frame.drop(columns=["filter_reason", "confidence", "num_samples", "iteration", "questioner_checkpoint"])
    frame.to_parquet(tmp_path / "hand.parquet")
    dataset = ReasonerDataset(
        data_files=[str(tmp_path / "hand.parquet")], tokenizer=tokenizer, processor=processor, config=_config(tmp_path)
    )
    assert len(dataset) == 4  # the no-question and no-label rows are dropped, the rest kept
    assert dataset[0]["reward_model"]["ground_truth"] == "3"
