"""A tiny randomly initialised Qwen2.5-VL, built offline in seconds, for every CPU test and the CPU default run.

`build_tiny_vlm` writes a Hugging Face model directory (config, float32 weights, a locally trained byte-level BPE
tokenizer with the Qwen2.5-VL special tokens, the Qwen2-VL chat template, processor configs); `tiny_vlm_path` builds
it once into a cache shared by processes. Loading never needs the hub or `trust_remote_code`. Written for
transformers 5 (verl 0.9.1 requires >=5.5.3,<5.11); the cache key includes the library versions.

The weights are random, with one deliberate property: the model only ever samples printable ASCII, newlines and the
end-of-turn tokens. A random model otherwise emits vision placeholders (`<|image_pad|>`, ...) in rollouts, and a
response holding an image pad makes the next forward pass fail (image features and image tokens no longer match); it
would also emit fragments of UTF-8 characters. A constant "bias" channel in the residual stream holds those logits
some 80 below the others (see `_suppress_tokens`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.metadata
import json
import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

from verl_ext.atomic_io import seal_dir, seal_problem

KIT_VERSION = "1"
MODEL_DIR_PREFIX = "tiny-qwen2_5-vl"
STALE_BUILD_SECONDS = 3600
_BUILD_LOCK = threading.Lock()

# Qwen2.5-VL's added tokens, in Qwen's order (ids follow the BPE vocabulary here, as they do in Qwen's tokenizer).
# The flag is the `special` attribute Qwen gives each one (special tokens are dropped by skip_special_tokens).
ADDED_TOKENS = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
# The random model may end a turn with these; every other added token is suppressed (see the module docstring).
GENERATABLE_ADDED_TOKENS = ("<|im_end|>", "<|endoftext|>")

# Qwen2's pre-tokenisation split, as in transformers' Qwen2Tokenizer (which rebuilds the pipeline from vocab+merges,
# so the trained tokenizer must use exactly this pipeline to tokenise the same under every transformers version).
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
BPE_VOCAB_SIZE = 1024

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Written for this kit; renders exactly what Qwen2-VL's template renders (system default, vision placeholders,
# optional "Picture k: " ids, generation prompt).
CHAT_TEMPLATE = r"""{%- set image_count = namespace(value=0) -%}
{%- set video_count = namespace(value=0) -%}
{%- for message in messages -%}
    {%- if loop.first and message['role'] != 'system' -%}
        {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' -}}
    {%- endif -%}
    {{- '<|im_start|>' + message['role'] + '\n' -}}
    {%- if message['content'] is string -%}
        {{- message['content'] -}}
    {%- elif message['content'] is not none -%}
        {%- for part in message['content'] -%}
            {%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}
                {%- set image_count.value = image_count.value + 1 -%}
                {%- if add_vision_id -%}{{- 'Picture ' ~ image_count.value ~ ': ' -}}{%- endif -%}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' -}}
            {%- elif part['type'] == 'video' or 'video' in part -%}
                {%- set video_count.value = video_count.value + 1 -%}
                {%- if add_vision_id -%}{{- 'Video ' ~ video_count.value ~ ': ' -}}{%- endif -%}
                {{- '<|vision_start|><|video_pad|><|vision_end|>' -}}
            {%- elif 'text' in part -%}
                {{- part['text'] -}}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{- '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""

# Model shape: ~1M parameters. Head dims are 32 in both towers (a size every attention kernel supports);
# mrope_section sums to head_dim / 2; window_size / (patch * merge) = 4 merged patches per window.
TEXT_HIDDEN = 128
TEXT_CONFIG = dict(
    hidden_size=TEXT_HIDDEN,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    hidden_act="silu",
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    use_sliding_window=False,
    max_window_layers=2,
    initializer_range=0.02,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
)
VISION_CONFIG = dict(
    depth=2,
    hidden_size=64,
    intermediate_size=128,
    num_heads=2,
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[1],  # block 0 windowed, block 1 full attention: both code paths run
    tokens_per_second=2,
    out_hidden_size=TEXT_HIDDEN,
    hidden_act="silu",
    initializer_range=0.02,
)
# Pixels per image: a 64x64 image becomes 56x56 = 4x4 patches = 4 tokens; at most 16 tokens per image.
PATCH_FACTOR = 28  # patch_size * spatial_merge_size
MIN_PIXELS = 4 * PATCH_FACTOR * PATCH_FACTOR
MAX_PIXELS = 16 * PATCH_FACTOR * PATCH_FACTOR
VIDEO_MIN_PIXELS = MIN_PIXELS
VIDEO_MAX_PIXELS = 8 * PATCH_FACTOR * PATCH_FACTOR

# Bias channel (see `_suppress_tokens`): residual value and lm_head weight of suppressed tokens on it.
BIAS_CHANNEL = 0
BIAS_VALUE = 0.2
SUPPRESSED_WEIGHT = -30.0


def _corpus() -> list[str]:
    """A fixed English/maths corpus in the style of VisPlay's prompts and answers (no randomness from `seed`)."""
    rng = random.Random(1234)
    shapes = ["circle", "square", "triangle", "star", "rectangle", "hexagon", "diamond", "ellipse", "cross", "bar"]
    colors = ["red", "green", "blue", "yellow", "orange", "purple", "black", "white", "gray", "pink", "brown", "cyan"]
    lines = [
        DEFAULT_SYSTEM_PROMPT,
        "system user assistant",
        "Please reason step by step, and put your final answer within \\boxed{}.",
        "Let's think step by step. First, look at the image carefully.",
        "Therefore, the final answer is \\boxed{3}.",
        "The answer is \\boxed{B}.",
        "<type>multiple choice</type><question>Which shape is red?\nA. circle\nB. square\nC. triangle\nD. star"
        "</question><answer>A</answer>",
        "<type>numerical</type><question>How many circles are in the image?</question><answer>4</answer>",
        "<type>regression</type><question>Estimate the height of the tallest bar.</question><answer>7.5</answer>",
        "Based on the image, ask one challenging question and give its answer.",
        "Output format: <type>...</type><question>...</question><answer>...</answer>",
        "\\frac{1}{2} + \\frac{3}{4} = \\frac{5}{4}, \\sqrt{16} = 4, x^2 + y^2 = r^2, 2 \\times 3 = 6, \\pi r^2",
        "$\\boxed{\\frac{\\sqrt{3}}{2}}$ $45^\\circ$ \\left( a + b \\right) \\cdot c \\geq 0 \\leq 1 \\neq 2",
        "The quick brown fox jumps over the lazy dog. 0123456789 ,.;:!?'\"()[]{}<>/\\|@#$%^&*-_=+~`",
        "Answer with the option's letter from the given choices directly.",
    ]
    for _ in range(400):
        shape, color, other = rng.choice(shapes), rng.choice(colors), rng.choice(colors)
        count, value = rng.randint(0, 12), round(rng.uniform(0, 100), rng.choice([0, 1, 2]))
        letter = rng.choice("ABCD")
        lines.extend(
            [
                f"How many {color} {shape}s are there in the image? There are {count} {color} {shape}s.",
                f"What is the color of the {shape}? The {shape} is {color}, not {other}.",
                f"<type>numerical</type><question>How many {shape}s are {color}?</question><answer>{count}</answer>",
                f"<type>multiple choice</type><question>What color is the largest {shape}?\nA. {color}\nB. {other}"
                f"</question><answer>{letter}</answer>",
                f"<type>regression</type><question>What is the value of the {color} bar?</question>"
                f"<answer>{value}</answer>",
                f"The {color} bar has a value of {value}, so the answer is \\boxed{{{value}}}.",
                f"Counting the {shape}s one by one gives {count}. The answer is \\boxed{{{count}}}.",
                f"Which bar is the tallest? The {color} one, with height {value}. Answer: \\boxed{{{letter}}}",
            ]
        )
    return lines


def _train_tokenizer():
    """Byte-level BPE on `_corpus()`, with Qwen2's normaliser/pre-tokeniser/decoder. Returns (vocab, merges)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(sorted(model["vocab"].items(), key=lambda kv: kv[1])), merges


def _make_tokenizer():
    from tokenizers import AddedToken
    from transformers import Qwen2TokenizerFast

    vocab, merges = _train_tokenizer()
    base = len(vocab)
    for offset, (content, _) in enumerate(ADDED_TOKENS):
        vocab[content] = base + offset
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tokenizer.add_tokens(
        [AddedToken(c, special=s, normalized=False, lstrip=False, rstrip=False) for c, s in ADDED_TOKENS]
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = tokenizer.convert_tokens_to_ids([c for c, _ in ADDED_TOKENS])
    if ids != list(range(base, base + len(ADDED_TOKENS))):
        raise RuntimeError(f"special token ids are not contiguous after the BPE vocabulary: {ids}")
    return tokenizer


def _make_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    # Pass `size` explicitly: transformers' __init__ writes min_pixels/max_pixels into the class-level default dict.
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        patch_size=VISION_CONFIG["patch_size"],
        temporal_patch_size=VISION_CONFIG["temporal_patch_size"],
        merge_size=VISION_CONFIG["spatial_merge_size"],
    )
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": VIDEO_MIN_PIXELS, "longest_edge": VIDEO_MAX_PIXELS},
        patch_size=VISION_CONFIG["patch_size"],
        temporal_patch_size=VISION_CONFIG["temporal_patch_size"],
        merge_size=VISION_CONFIG["spatial_merge_size"],
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def _make_config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    vocab_size = -(-len(tokenizer) // 64) * 64  # padded like Qwen's embedding tables
    tid = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=dict(
            copy.deepcopy(TEXT_CONFIG),
            vocab_size=vocab_size,
            bos_token_id=tid("<|endoftext|>"),
            eos_token_id=tid("<|im_end|>"),
            tie_word_embeddings=False,
        ),
        vision_config=copy.deepcopy(VISION_CONFIG),
        image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"),
        tie_word_embeddings=False,
        architectures=["Qwen2_5_VLForConditionalGeneration"],
    )
    config.dtype = "float32"
    return config


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode table used by byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def suppressed_token_ids(tokenizer) -> list[int]:
    """Ids the tiny model never samples: added tokens other than the two end-of-turn ones, and BPE tokens that hold a
    non-ASCII byte (a fragment of a UTF-8 character) or a control character other than newline/tab."""
    decoder = _byte_decoder()
    allowed = set(range(0x20, 0x7F)) | {0x09, 0x0A}
    ids = []
    for token, token_id in tokenizer.get_vocab().items():
        if token in dict(ADDED_TOKENS):
            if token not in GENERATABLE_ADDED_TOKENS:
                ids.append(token_id)
        elif any(decoder.get(ch, -1) not in allowed for ch in token):
            ids.append(token_id)
    return sorted(ids)


def _suppress_tokens(model, token_ids: list[int]) -> None:
    """Give the residual stream a constant positive channel and point the suppressed tokens' logits against it.

    Every token embedding and every image feature carries BIAS_VALUE on channel BIAS_CHANNEL; no layer writes into that
    channel (o_proj/down_proj rows zeroed) nor reads it (norm weights zeroed). After the final RMSNorm the channel is
    a positive constant (about 3), so an lm_head weight of -30 there puts those logits near -90 whatever the context.
    """
    import torch

    c = BIAS_CHANNEL
    text = model.model.language_model
    with torch.no_grad():
        text.embed_tokens.weight[:, c] = BIAS_VALUE
        final_linear = model.model.visual.merger.mlp[-1]
        final_linear.weight[c, :] = 0.0
        final_linear.bias[c] = BIAS_VALUE
        for layer in text.layers:
            layer.self_attn.o_proj.weight[c, :] = 0.0
            layer.mlp.down_proj.weight[c, :] = 0.0
            layer.input_layernorm.weight[c] = 0.0
            layer.post_attention_layernorm.weight[c] = 0.0
        model.lm_head.weight[:, c] = 0.0
        model.lm_head.weight[token_ids, c] = SUPPRESSED_WEIGHT


def _make_model(config, tokenizer, seed: int):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model = model.to(torch.float32).eval()
    padding_rows = list(range(len(tokenizer), config.text_config.vocab_size))  # no token behind them
    _suppress_tokens(model, suppressed_token_ids(tokenizer) + padding_rows)
    return model


def _make_generation_config(tokenizer):
    from transformers import GenerationConfig

    tid = tokenizer.convert_tokens_to_ids
    # Token ids only: no sampling defaults, so whatever a caller asks for (greedy, temperature, top_k) is what runs.
    return GenerationConfig(
        bos_token_id=tid("<|endoftext|>"),
        eos_token_id=[tid("<|im_end|>"), tid("<|endoftext|>")],
        pad_token_id=tid("<|endoftext|>"),
    )


def build_tiny_vlm(out_dir, seed: int = 0) -> Path:
    """Write the tiny Qwen2.5-VL (model, tokenizer, processor, chat template) into `out_dir`; return it as a Path.

    Deterministic: the same `seed` gives byte-identical files. The tokenizer does not depend on `seed`.
    """
    from verl_ext.compat.torchvision_shim import install_hook

    install_hook()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _BUILD_LOCK:  # weight init draws from torch's global RNG: two threads building at once would interleave
        tokenizer = _make_tokenizer()
        processor = _make_processor(tokenizer)
        config = _make_config(tokenizer)
        model = _make_model(config, tokenizer, seed)
        model.generation_config = _make_generation_config(tokenizer)
        with _quiet_progress_bars():
            model.save_pretrained(out, safe_serialization=True)
        processor.save_pretrained(out)
        # Versions of transformers differ in where a processor saves its template; this file every version reads.
        (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return out


@contextlib.contextmanager
def _quiet_progress_bars():
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def kit_hash(seed: int = 0) -> str:
    """Key of the cached build: this file's source, the seed and the library versions that shape the files."""
    versions = [importlib.metadata.version(name) for name in ("torch", "transformers", "tokenizers", "safetensors")]
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update("|".join([KIT_VERSION, str(seed), *versions]).encode())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get("VISPLAY_CACHE") or Path.home() / ".cache" / "visplay")


def tiny_vlm_path(cache_dir=None, seed: int = 0) -> Path:
    """The tiny VLM's directory in the cache (env VISPLAY_CACHE, default ~/.cache/visplay), built on first use.

    Built in a temporary sibling directory and renamed into place, so concurrent callers never see a partial model:
    the first rename wins and the others discard their copy.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / f"{MODEL_DIR_PREFIX}-s{seed}-{kit_hash(seed)}"
    if final.is_dir():
        if seal_problem(final) is None:
            return final
        shutil.rmtree(final, ignore_errors=True)  # damaged (or built before entries were sealed): build it again
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(f".{final.name}.*"):  # left by a build that was killed; live builds take seconds
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache))
    tmp.chmod(0o755)  # mkdtemp's 0o700 would stay on the final directory
    try:
        build_tiny_vlm(tmp, seed=seed)
        seal_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
