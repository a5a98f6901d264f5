"""One core for every OpenAI-compatible `/v1/chat/completions` call the project makes (the frozen reasoner, the LLM
judge): URL normalisation, the API key from the environment, error classification, backoff with a cap that also caps
Retry-After, and a synchronous (httpx) and an asynchronous (aiohttp) face. The HTTP libraries are imported by the face
that uses them only.

A call raises `TransientError` (worth another try: a busy, restarting or unreachable server, a timeout, a malformed
body) or `PermanentError` (a bad request or a misconfiguration: retrying will not help); callers own their retry loop
and ask `RetryPolicy.delay` how long to wait.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Worth another try: the server is busy, restarting, or timed out.
TRANSIENT_HTTP_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
BODY_CHARS = 300  # how much of an error body a message quotes


class TransientError(Exception):
    """A failure worth another try. `timeout`/`connect` say what kind; `retry_after` is the server's wish (s)."""

    def __init__(
        self, message: str, *, timeout: bool = False, connect: bool = False, retry_after: float | None = None
    ):
        super().__init__(message)
        self.timeout = timeout
        self.connect = connect
        self.retry_after = retry_after

    def __reduce__(self):  # the keyword fields survive a trip across processes
        kwargs = {"timeout": self.timeout, "connect": self.connect, "retry_after": self.retry_after}
        return _rebuild_transient, (str(self), kwargs)


def _rebuild_transient(message: str, kwargs: dict) -> TransientError:
    return TransientError(message, **kwargs)


class PermanentError(Exception):
    """A failure another try cannot fix (HTTP 4xx other than the transient ones, a misconfiguration)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt k waits backoff_s * 2^(k-1), at most max_backoff_s; a Retry-After longer than the
    backoff is honoured up to the same cap (a server asking for an hour does not stall a training step for an hour).
    `jitter` spreads concurrent clients over [delay/2, delay]."""

    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    jitter: bool = True

    def delay(
        self, attempt: int, retry_after: float | None = None, rand: Callable[[], float] = random.random
    ) -> float:
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempt - 1))
        if self.jitter:
            delay *= 0.5 + rand() / 2
        if retry_after is not None and retry_after > delay:
            delay = min(self.max_backoff_s, retry_after)
        return max(0.0, delay)


def normalize_base_url(url: str) -> str:
    """`host:port`, `http://host:port` or `http://host:port/v1[/chat/completions]` → `http://host:port/v1`."""
    url = str(url).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = f"http://{url}"
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    if not url.endswith("/v1"):
        url = f"{url}/v1"
    return url


def api_key_from_env(names: Iterable[str | None], environ: Mapping[str, str] | None = None) -> str | None:
    """The first non-empty variable of `names` (the key itself is never logged or written by this module)."""
    environ = os.environ if environ is None else environ  # looked up at call time: a test or a launcher may swap it
    return next((environ[n] for n in names if n and environ.get(n)), None)


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def check_status(status: int, body: str, url: str, retry_after: str | None = None) -> None:
    """Raise for a non-200 answer: transient statuses as `TransientError` (with Retry-After), others as permanent."""
    if status == 200:
        return
    message = f"{url} answered HTTP {status}: {body[:BODY_CHARS]}"
    if status in TRANSIENT_HTTP_STATUS:
        raise TransientError(message, retry_after=parse_retry_after(retry_after))
    raise PermanentError(message)


def choice_texts(data: Any, url: str) -> list[str | None]:
    """The message contents of a chat completion, one per choice (None where a choice has no text content)."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise TransientError(f"{url} sent no 'choices': {str(data)[:200]}")
    texts: list[str | None] = []
    for choice in data["choices"]:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        texts.append(content if isinstance(content, str) else None)
    return texts


# --------------------------------------------------------------------------------------------------
# Faces
# --------------------------------------------------------------------------------------------------


class SyncChatClient:
    """Blocking face (httpx): `post(path, payload) -> dict`, thread-safe, one connection pool."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 60.0, normalize: bool = True):
        import httpx

        # normalize=False keeps a URL as given (a hosted API whose path does not end in /v1).
        self.base_url = normalize_base_url(base_url) if normalize else str(base_url).rstrip("/")
        self._httpx = httpx
        headers = {"Content-Type": "application/json", **auth_headers(api_key)}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def post(self, path: str, payload: dict) -> Any:
        url = f"{self.base_url}{path}"
        try:
            r = self._client.post(path, json=payload)
        except self._httpx.TimeoutException as exc:
            raise TransientError(f"request to {url} timed out: {exc}", timeout=True) from exc
        except self._httpx.TransportError as exc:
            raise TransientError(f"{url} is unreachable: {type(exc).__name__}: {exc}", connect=True) from exc
        check_status(r.status_code, r.text, url, r.headers.get("retry-after"))
        try:
            return r.json()
        except ValueError as exc:
            raise TransientError(f"{url} sent a malformed body: {r.text[:200]!r}") from exc

    def close(self) -> None:
        self._client.close()


class AsyncChatClient:
    """Asynchronous face (aiohttp): `await post(path, payload)` / `await get(path)`; one session per event loop."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 600.0, concurrency: int = 64):
        self.base_url = normalize_base_url(base_url)
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.concurrency = max(1, int(concurrency))
        self._sessions: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}

    def session(self):
        import aiohttp

        loop = asyncio.get_running_loop()
        state = self._sessions.get(id(loop))
        if state is None or state[0] is not loop or state[1].closed:
            session = aiohttp.ClientSession(
                headers=auth_headers(self.api_key),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=self.concurrency),
            )
            state = (loop, session)
            self._sessions[id(loop)] = state
        return state[1]

    async def post(self, path: str, payload: dict) -> Any:
        return await self._request("POST", path, payload)

    async def get(self, path: str) -> Any:
        return await self._request("GET", path, None)

    async def _request(self, method: str, path: str, payload: dict | None) -> Any:
        import aiohttp

        url = f"{self.base_url}{path}"
        try:
            async with self.session().request(method, url, json=payload) as resp:
                if resp.status != 200:
                    check_status(resp.status, await resp.text(), url, resp.headers.get("Retry-After"))
                try:
                    return await resp.json(content_type=None)
                except Exception as exc:
                    raise TransientError(f"{url} sent a malformed body: {exc}") from exc
        except asyncio.TimeoutError as exc:
            raise TransientError(f"request to {url} timed out after {self.timeout_s}s", timeout=True) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransientError(f"{url} is unreachable: {exc}", connect=True) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            raise TransientError(f"{url} dropped the connection: {exc}", connect=True) from exc

    async def aclose(self) -> None:
        state = self._sessions.pop(id(asyncio.get_running_loop()), None)
        if state is not None and not state[1].closed:
            await state[1].close()
