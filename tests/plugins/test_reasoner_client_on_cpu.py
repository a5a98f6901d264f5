"""The reasoner client: retries, top-ups, timeouts and dead endpoints against scripted local HTTP endpoints, and
real sampling against the OpenAI-compatible test server running the tiny Qwen2.5-VL."""

import asyncio
import base64
import io

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from verl_ext.plugins.reasoner_client import ReasonerClient, normalize_base_url


class Scripted:
    """An endpoint answering each POST with the next scripted action: an HTTP status, "sleep", or a choice count."""

    def __init__(self, script, default=None, answers=None):
        self.script, self.default, self.requests = list(script), default, []
        self.answers = answers  # contents of successive choices; default \\boxed{<index>}

    async def chat(self, request):
        body = await request.json()
        self.requests.append(body)
        action = self.script.pop(0) if self.script else self.default
        if action == "sleep":
            await asyncio.sleep(2)
            action = body["n"]
        if isinstance(action, tuple):  # ("status", code)
            return web.json_response({"error": {"message": "scripted"}}, status=action[1])
        count = body["n"] if action is None else action
        contents = [self.answers.pop(0) if self.answers else f"\\boxed{{{i}}}" for i in range(count)]
        choices = [{"index": i, "message": {"role": "assistant", "content": c}} for i, c in enumerate(contents)]
        return web.json_response({"choices": choices})

    async def models(self, request):
        return web.json_response({"object": "list", "data": [{"id": "scripted-model"}]})


async def _serve(script, default=None, answers=None):
    endpoint = Scripted(script, default, answers)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", endpoint.chat)
    app.router.add_get("/v1/models", endpoint.models)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, endpoint


def _client(server, **kwargs):
    defaults = dict(num_samples=4, max_retries=3, backoff_s=0.01, max_backoff_s=0.02, timeout_s=5)
    return ReasonerClient(base_url=f"http://127.0.0.1:{server.port}/v1", **{**defaults, **kwargs})


async def test_retries_transient_errors_then_succeeds():
    server, endpoint = await _serve([("status", 503), ("status", 429)])
    client = _client(server)
    try:
        result = await client.sample("q", None)
    finally:
        await client.aclose()
        await server.close()
    assert result.ok and len(result.texts) == 4 and result.attempts == 3
    assert endpoint.requests[0]["model"] == "scripted-model"  # discovered from GET /v1/models


async def test_tops_up_missing_samples_and_counts_what_never_came():
    server, endpoint = await _serve([2, 1], default=0)
    client = _client(server, max_retries=2)
    try:
        result = await client.sample("q", None)
    finally:
        await client.aclose()
        await server.close()
    assert [r["n"] for r in endpoint.requests] == [4, 2, 1]  # ask only for what is still missing
    # 3 of m = 4 after every retry: a failure, never a vote over 3
    assert not result.ok and len(result.texts) == 3 and result.missing == 1 and result.attempts == 3
    assert "3 of 4 samples after 3 attempts" in result.error


async def test_timeouts_are_counted_and_end_in_an_error():
    server, _ = await _serve([], default="sleep")
    client = _client(server, timeout_s=0.2, max_retries=1)
    try:
        result = await client.sample("q", None)
    finally:
        await client.aclose()
        await server.close()
    assert not result.ok and result.timeouts == 2 and result.attempts == 2
    assert "timed out" in result.error and result.texts == []


async def test_client_errors_are_not_retried_and_empty_answers_fail():
    server, endpoint = await _serve([("status", 404)], default=0)
    client = _client(server, model="wrong-name", max_retries=2)
    try:
        rejected = await client.sample("q", None)
        empty = await client.sample("q", None)
    finally:
        await client.aclose()
        await server.close()
    assert not rejected.ok and rejected.attempts == 1 and "HTTP 404" in rejected.error
    assert endpoint.requests[0]["model"] == "wrong-name"
    assert not empty.ok and "no completions" in empty.error and empty.attempts == 3


async def test_dead_endpoint_fails_fast_after_the_first_exhausted_question():
    with __import__("socket").socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ReasonerClient(base_url=f"127.0.0.1:{port}", model="m", max_retries=2, backoff_s=0.01, concurrency=1)
    try:
        results = await client.sample_many([("q1", None), ("q2", None), ("q3", None)])
    finally:
        await client.aclose()
    assert all(not r.ok for r in results)
    assert "unreachable" in results[0].error and results[0].attempts == 3
    assert all("marked dead" in r.error and r.attempts == 0 for r in results[1:])


async def test_payload_carries_sampling_and_the_image_as_a_data_url():
    server, endpoint = await _serve([])
    client = _client(server, temperature=0.7, top_p=0.9, top_k=40, max_tokens=32)
    image = Image.new("RGBA", (20, 10), (0, 255, 0, 255))
    try:
        await client.sample("How many?", image)
    finally:
        await client.aclose()
        await server.close()
    body = endpoint.requests[0]
    assert (body["n"], body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (4, 0.7, 0.9, 40, 32)
    content = body["messages"][0]["content"]
    assert content[1] == {"type": "text", "text": "How many?"}
    url = content[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (20, 10) and decoded.mode == "RGB"


def test_base_url_forms():
    assert normalize_base_url("10.0.0.1:8000") == "http://10.0.0.1:8000/v1"
    assert normalize_base_url("http://h:1/") == "http://h:1/v1"
    assert normalize_base_url("https://h/v1/chat/completions") == "https://h/v1"


@pytest.mark.slow
def test_real_tiny_vlm_endpoint_returns_m_samples(tiny_vlm_server, synthetic_images):
    client = ReasonerClient(base_url=tiny_vlm_server, num_samples=3, max_tokens=8, top_k=40)
    items = [("What is shown? Put the answer in \\boxed{}.", image) for image, _ in synthetic_images[:2]]
    results = client.sample_many_sync(items)
    assert [len(r.texts) for r in results] == [3, 3]
    assert all(r.ok and r.attempts == 1 and all(isinstance(t, str) for t in r.texts) for r in results)


async def test_reward_manager_votes_on_m_answers_and_fails_a_short_reply():
    from verl_ext.plugins.reward_manager import QuestionerRewardSettings, score_question
    from verl_ext.visplay import questioner_reward

    question = "<type>numerical</type><question>How many dots?</question><answer>3</answer>"
    answers = ["so \\boxed{3}", "\\boxed{3.0}", "no box", "\\boxed{4}", "\\boxed{3}"]
    # 5 asked, 3 answered first, then the 2 missing
    server, endpoint = await _serve([3, 2], default=0, answers=list(answers))
    client = _client(server, num_samples=5, max_retries=2)
    try:
        info = await score_question(question, Image.new("RGB", (8, 8)), client, QuestionerRewardSettings())
        # the same, but the endpoint never sends the fifth answer
        server2, _ = await _serve([3, 1], default=0, answers=list(answers))
        client2 = _client(server2, num_samples=5, max_retries=2)
        short = await score_question(question, Image.new("RGB", (8, 8)), client2, QuestionerRewardSettings())
        await client2.aclose()
        await server2.close()
    finally:
        await client.aclose()
        await server.close()
    assert endpoint.requests[0]["messages"][0]["content"][1]["text"].startswith("How many dots?")
    assert (info["vp_num_requested"], info["vp_num_samples"], info["vp_num_missing"]) == (5, 5, 0)
    assert info["vp_confidence"] == pytest.approx(3 / 5)  # {3, 3.0, 3} of m = 5
    assert info["vp_num_unparsed"] == 1 and info["vp_pseudo_label"] in ("3", "3.0")
    assert info["vp_uncertainty"] == pytest.approx(questioner_reward(3 / 5, 0.0, True))
    assert short["vp_reasoner_failed"] == 1.0 and "4 of 5 samples" in short["vp_reasoner_error"]
    assert (short["vp_num_samples"], short["vp_num_missing"], short["vp_confidence"]) == (4, 1, 0.0)


async def test_a_short_or_textless_answer_is_a_failure_not_a_smaller_vote():
    """Choices without text are no samples, and a question short of m samples after the retries fails (the old
    client scored 4 null contents as 4 unparsable answers, p = 0, and a 1-of-4 reply as a vote of 3)."""
    server, endpoint = await _serve([], default=1, answers=None)
    client = _client(server, max_retries=1)  # two attempts of one choice each: 2 of 4 samples
    try:
        short = await client.sample("q", None)
    finally:
        await client.aclose()
        await server.close()
    assert not short.ok and short.texts == ["\\boxed{0}", "\\boxed{0}"] and short.missing == 2
    assert "2 of 4 samples after 2 attempts" in short.error and [r["n"] for r in endpoint.requests] == [4, 3]

    requests = []
    app_server = await _serve_handler(_null_contents(requests))
    client = _client(app_server, model="m", max_retries=2)
    try:
        textless = await client.sample("q", None)
    finally:
        await client.aclose()
        await app_server.close()
    assert not textless.ok and textless.texts == [] and textless.textless == 12
    assert "no completions after 3 attempts (12 choices without text)" in textless.error


async def test_top_up_fills_m_from_several_partial_replies():
    server, endpoint = await _serve([1, 2], default=None)
    client = _client(server)
    try:
        result = await client.sample("q", None)
    finally:
        await client.aclose()
        await server.close()
    assert result.ok and len(result.texts) == 4 and [r["n"] for r in endpoint.requests] == [4, 3, 1]


def _null_contents(requests):
    async def chat(request):
        body = await request.json()
        requests.append(body)
        choices = [{"index": i, "message": {"role": "assistant", "content": None}} for i in range(body["n"])]
        return web.json_response({"choices": choices})

    return chat


async def _serve_handler(chat):
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def test_the_api_key_comes_from_the_environment_only(monkeypatch):
    from verl_ext.plugins.reasoner_client import ReasonerEndpointError

    monkeypatch.setenv("MY_KEY", "sk-env")
    client = ReasonerClient.from_config({"base_url": "h:1", "model": "m", "api_key_env": "MY_KEY"})
    assert client.api_key == "sk-env" and "sk-env" not in repr(client)
    monkeypatch.setenv("VISPLAY_REASONER_API_KEY", "sk-default")
    assert ReasonerClient.from_config({"base_url": "h:1", "model": "m"}).api_key == "sk-default"
    with pytest.raises(ReasonerEndpointError, match="environment variable named by visplay.reasoner.api_key_env"):
        ReasonerClient.from_config({"base_url": "h:1", "api_key": "sk-in-config"})
