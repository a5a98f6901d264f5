"""The one OpenAI-compatible client core: backoff capped (Retry-After included), Retry-After read in both of its
forms, statuses classified, URLs normalised, the key taken from the environment; the sync face against a real
loopback server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from verl_ext.openai_client import (
    PermanentError,
    RetryPolicy,
    SyncChatClient,
    TransientError,
    api_key_from_env,
    check_status,
    choice_texts,
    normalize_base_url,
    parse_retry_after,
)


def test_backoff_doubles_and_stops_at_the_cap():
    policy = RetryPolicy(max_retries=9, backoff_s=1.0, max_backoff_s=5.0, jitter=False)
    assert [policy.delay(k) for k in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_retry_after_is_honoured_up_to_the_cap():
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=30.0, jitter=False)
    assert policy.delay(1, retry_after=7.0) == 7.0  # longer than the backoff: the server's wish
    assert policy.delay(1, retry_after=3600.0) == 30.0  # an hour is capped
    assert policy.delay(3, retry_after=0.5) == 4.0  # shorter than the backoff: the backoff


def test_jitter_stays_within_half_and_full_delay():
    policy = RetryPolicy(backoff_s=2.0, max_backoff_s=60.0)
    assert policy.delay(2, rand=lambda: 0.0) == 2.0 and policy.delay(2, rand=lambda: 1.0) == 4.0


def test_retry_after_forms():
    assert parse_retry_after("120") == 120.0 and parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412450.0) == 30.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses(status):
    with pytest.raises(TransientError) as info:
        check_status(status, "busy", "http://h/v1/chat/completions", retry_after="3")
    assert info.value.retry_after == 3.0 and f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_permanent_statuses(status):
    with pytest.raises(PermanentError, match=f"HTTP {status}: bad"):
        check_status(status, "bad", "http://h/v1/chat/completions")
    check_status(200, "", "http://h")  # no error


def test_choices_and_urls_and_keys():
    data = {"choices": [{"message": {"content": "a"}}, {"message": {"content": None}}, "junk"]}
    assert choice_texts(data, "u") == ["a", None, None]
    with pytest.raises(TransientError, match="no 'choices'"):
        choice_texts({"error": "x"}, "u")
    assert normalize_base_url("h:1") == "http://h:1/v1" and normalize_base_url("https://h/v1/") == "https://h/v1"
    assert api_key_from_env(["A", None, "B"], {"B": "kb", "A": ""}) == "kb"
    assert api_key_from_env(["A"], {}) is None


class _Handler(BaseHTTPRequestHandler):
    replies: list = []
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        status, payload, headers = type(self).replies.pop(0)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_sync_face_against_a_loopback_server():
    _Handler.replies = [
        (503, "busy", {"Retry-After": "2"}),
        (200, "not json", {}),
        (200, {"choices": [{"message": {"content": "CORRECT"}}]}, {}),
        (400, "bad request", {}),
    ]
    _Handler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = SyncChatClient(f"127.0.0.1:{server.server_port}", api_key="sk-test", timeout_s=5)
    try:
        with pytest.raises(TransientError) as busy:
            client.post("/chat/completions", {"n": 1})
        assert busy.value.retry_after == 2.0
        with pytest.raises(TransientError, match="malformed body"):
            client.post("/chat/completions", {"n": 1})
        assert choice_texts(client.post("/chat/completions", {"n": 1}), "u") == ["CORRECT"]
        with pytest.raises(PermanentError, match="HTTP 400"):
            client.post("/chat/completions", {"n": 1})
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    assert all(path == "/v1/chat/completions" and auth == "Bearer sk-test" for path, auth, _ in _Handler.seen)
    with pytest.raises(TransientError, match="unreachable") as down:
        SyncChatClient(f"127.0.0.1:{server.server_port}", timeout_s=2).post("/chat/completions", {})
    assert down.value.connect
