"""The OpenAI-compatible test server: real model output for chat requests with images, proper HTTP errors."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from verl_ext.tiny.images import png_bytes


def _call(url: str, body=None, raw: bytes | None = None, method: str | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _image_message(image, text="How many shapes are there?"):
    url = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()
    return [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}
    ]


def test_models_endpoint(tiny_vlm_server, tiny_vlm_path):
    assert tiny_vlm_server.startswith("http://127.0.0.1:") and tiny_vlm_server.endswith("/v1")
    status, body = _call(f"{tiny_vlm_server}/models")
    assert status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [tiny_vlm_path.name]


def test_chat_with_image_returns_n_sampled_answers(tiny_vlm_server, synthetic_images):
    request = {
        "model": "tiny",
        "messages": _image_message(synthetic_images[0][0]),
        "n": 3,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 40,
        "max_tokens": 24,
        "seed": 7,
    }
    status, body = _call(f"{tiny_vlm_server}/chat/completions", request)
    assert status == 200, body
    assert body["object"] == "chat.completion" and len(body["choices"]) == 3
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    contents = [c["message"]["content"] for c in body["choices"]]
    assert all(isinstance(c, str) for c in contents) and len(set(contents)) > 1  # sampled, not canned
    assert all(
        c["message"]["role"] == "assistant" and c["finish_reason"] in ("stop", "length") for c in body["choices"]
    )
    usage = body["usage"]
    assert 3 <= usage["completion_tokens"] <= 3 * 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 4  # includes the image pads
    status, again = _call(f"{tiny_vlm_server}/chat/completions", request)
    assert [c["message"]["content"] for c in again["choices"]] == contents  # same seed, same samples


def test_greedy_answer_is_the_models_own_output(tiny_vlm_server, tiny_vlm_path, synthetic_images):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    image = synthetic_images[2][0]
    request = {"messages": _image_message(image, "Which bar is the tallest?"), "temperature": 0, "n": 2}
    request["max_completion_tokens"] = 12
    status, body = _call(f"{tiny_vlm_server}/chat/completions", request)
    assert status == 200, body

    processor = AutoProcessor.from_pretrained(tiny_vlm_path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_vlm_path).eval()
    content = [{"type": "image"}, {"type": "text", "text": "Which bar is the tallest?"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    expected = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    assert [c["message"]["content"] for c in body["choices"]] == [expected, expected]
    assert body["usage"]["prompt_tokens"] == inputs["input_ids"].shape[1]


def test_text_only_chat_and_stop_strings(tiny_vlm_server):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say something."}]
    status, body = _call(f"{tiny_vlm_server}/chat/completions", {"messages": messages, "max_tokens": 16, "seed": 0})
    assert status == 200 and len(body["choices"]) == 1
    text = body["choices"][0]["message"]["content"]
    if len(text) > 2:
        stop = text[1:3]
        request = {"messages": messages, "max_tokens": 16, "seed": 0, "stop": stop}
        status, cut = _call(f"{tiny_vlm_server}/chat/completions", request)
        assert cut["choices"][0]["message"]["content"] == text[: text.find(stop)]
        assert cut["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"messages": []}).encode(), "messages"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "n": 0}).encode(), "'n'"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}).encode(), "temperature"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "stream": True}).encode(), "stream"),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}
            ).encode(),
            "data:",
        ),
    ],
)
def test_bad_requests_get_400(tiny_vlm_server, raw, message):
    status, body = _call(f"{tiny_vlm_server}/chat/completions", raw=raw)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and message in body["error"]["message"]


def test_unknown_paths_get_404_and_wrong_methods_405(tiny_vlm_server):
    root = tiny_vlm_server[: -len("/v1")]
    for url in (f"{tiny_vlm_server}/completions", f"{tiny_vlm_server}/nothing", f"{root}/"):
        status, body = _call(url, {"messages": []})
        assert status == 404 and body["error"]["type"] == "not_found_error"
        status, body = _call(url)
        assert status == 404
    assert _call(f"{tiny_vlm_server}/chat/completions")[0] == 405


@pytest.mark.parametrize("host", ["192.0.2.1", "198.51.100.7"])  # documentation addresses: any non-loopback host
def test_only_loopback_hosts(host):
    from verl_ext.inference.openai_server import OpenAIChatServer

    with pytest.raises(ValueError, match="loopback"):
        OpenAIChatServer("/nonexistent", host=host)
