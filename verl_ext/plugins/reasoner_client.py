"""Async client of the frozen reasoner behind an OpenAI-compatible `/v1/chat/completions` endpoint.

m samples per question (image sent as a data URL), many questions concurrently, retries with backoff on
transient errors, and a result that says how many samples really came back. A result is valid only when every
requested sample came back as text: a choice without text content (`"content": null`) is no sample, and a question
still short of m samples after the retries is a failure, never a smaller vote. The API key comes from an environment
variable (`api_key_env`), never from the config that verl prints. Used by the questioner reward
manager (verl's reward-model router or a user's URL) and usable from offline code through `sample_many_sync`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import io
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from verl_ext.openai_client import (
    AsyncChatClient,
    PermanentError,
    RetryPolicy,
    TransientError,
    api_key_from_env,
    choice_texts,
    normalize_base_url,
)

DEFAULT_API_KEY_ENV = "VISPLAY_REASONER_API_KEY"

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "WARN"))


class ReasonerEndpointError(RuntimeError):
    """The reasoner endpoint could not answer (dead, misconfigured, or failing after every retry)."""


@dataclass
class SampleResult:
    """What came back for one question: `texts` holds at most `requested` completions."""

    texts: list[str]
    requested: int
    attempts: int = 0
    timeouts: int = 0
    error: str | None = None  # set when the request failed for good; texts may then be partial or empty
    latency_s: float = 0.0
    textless: int = 0  # choices that came back without text content (not counted as samples)

    @property
    def missing(self) -> int:
        return max(0, self.requested - len(self.texts))

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ReasonerClient:
    """Sampling parameters default to VisPlay's: m = 10, T = 1.0, top_p = 1.0, top_k = 40."""

    base_url: str
    model: str | None = None  # None: ask the endpoint (GET /v1/models) once and use the first model it serves
    num_samples: int = 10
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    max_tokens: int = 2048
    concurrency: int = 64
    timeout_s: float = 600.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0  # also caps a server's Retry-After
    # after a question exhausts its retries on connection errors, fail others fast for this long
    dead_cooldown_s: float = 30.0
    image_format: str = "PNG"
    api_key: str | None = field(default=None, repr=False)  # from the environment (from_config); never printed
    extra_body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.base_url = normalize_base_url(self.base_url)
        if self.num_samples < 1:
            raise ValueError(f"num_samples (m) must be >= 1, got {self.num_samples}")
        self._http = AsyncChatClient(self.base_url, self.api_key, self.timeout_s, self.concurrency)
        self._retry = RetryPolicy(self.max_retries, self.backoff_s, self.max_backoff_s)
        self._semaphores: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]] = {}
        self._dead_until = 0.0
        self._dead_reason = ""
        self._url_cache: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._served_model: str | None = self.model

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, cfg, router_address: str | None = None, default_model: str | None = None) -> ReasonerClient:
        """Build from the `visplay.reasoner` config block. `base_url` wins; otherwise verl's reward-model
        router address (host:port) is used."""
        get = cfg.get if hasattr(cfg, "get") else lambda k, d=None: getattr(cfg, k, d)
        base_url = get("base_url", None) or (f"http://{router_address}/v1" if router_address else None)
        if not base_url:
            raise ReasonerEndpointError(
                "no reasoner endpoint: set visplay.reasoner.base_url to an OpenAI-compatible URL, or let verl host "
                "the frozen reasoner with reward.reward_model.enable=True and reward.reward_model.model_path=..."
            )
        model = get("model", None) or default_model
        if get("api_key", None):
            raise ReasonerEndpointError(
                "visplay.reasoner.api_key: verl prints its config, so the key is read from the environment variable "
                f"named by visplay.reasoner.api_key_env (default {DEFAULT_API_KEY_ENV}), never from the config"
            )
        kwargs = {"api_key": api_key_from_env([get("api_key_env", None) or DEFAULT_API_KEY_ENV])}
        for key in (
            "num_samples",
            "temperature",
            "top_p",
            "top_k",
            "max_tokens",
            "concurrency",
            "timeout_s",
            "max_retries",
            "backoff_s",
            "max_backoff_s",
            "dead_cooldown_s",
            "image_format",
        ):
            value = get(key, None)
            if value is not None:
                kwargs[key] = value
        extra = get("extra_body", None)
        if extra:
            kwargs["extra_body"] = dict(extra)
        return cls(base_url=base_url, model=str(model) if model else None, **kwargs)

    # ------------------------------------------------------------------ public API

    async def sample(
        self, prompt: str, image: Any = None, n: int | None = None, system: str | None = None
    ) -> SampleResult:
        """`n` (default m) completions for one question. Never raises for endpoint trouble: the failure is
        reported in `SampleResult.error` so the caller can apply its rule (and count it)."""
        n = self.num_samples if n is None else int(n)
        started = time.monotonic()
        result = SampleResult(texts=[], requested=n)
        try:
            image_url = await self._image_url(image)
        except Exception as exc:  # a broken image must not look like an endpoint failure
            result.error = f"image could not be encoded: {type(exc).__name__}: {exc}"
            return result
        messages = build_messages(prompt, image_url, system)
        async with self._semaphore():
            # top-up loop: ask again for what is still missing, within the same retry budget
            while result.missing > 0 and result.attempts <= self.max_retries:
                if self._dead_until > time.monotonic():
                    result.error = f"reasoner endpoint {self.base_url} marked dead: {self._dead_reason}"
                    break
                result.attempts += 1
                try:
                    texts = await self._post(messages, result.missing)
                except PermanentError as exc:
                    result.error = f"reasoner endpoint: {exc}"
                    break
                except TransientError as exc:
                    if exc.timeout:
                        result.timeouts += 1
                    if result.attempts > self.max_retries:
                        result.error = f"reasoner endpoint: {exc} (gave up after {result.attempts} attempts)"
                        if exc.connect:
                            self._dead_until = time.monotonic() + self.dead_cooldown_s
                            self._dead_reason = str(exc)
                        break
                    await asyncio.sleep(self._retry.delay(result.attempts, exc.retry_after))
                    continue
                received = [t for t in texts if t is not None]
                result.textless += len(texts) - len(received)
                result.texts.extend(received[: result.missing])
                if result.missing and result.attempts <= self.max_retries:
                    logger.warning("reasoner returned %d of %d samples; asking again", len(received), len(texts))
                    await asyncio.sleep(self._retry.delay(result.attempts))
        if result.error is None and result.missing:
            # rule: m is the vote's denominator; a shorter vote would be a different, made-up confidence
            what = "no completions" if result.missing == result.requested else f"{len(result.texts)} of {n} samples"
            textless = f" ({result.textless} choices without text)" if result.textless else ""
            result.error = (
                f"reasoner endpoint {self.base_url} returned {what} after {result.attempts} attempts{textless}"
            )
        result.latency_s = time.monotonic() - started
        return result

    async def sample_many(self, items: list[tuple[str, Any]], n: int | None = None) -> list[SampleResult]:
        """Concurrent `sample` over (prompt, image) pairs, bounded by `concurrency`; order is preserved."""
        return list(await asyncio.gather(*(self.sample(prompt, image, n) for prompt, image in items)))

    def sample_many_sync(self, items: list[tuple[str, Any]], n: int | None = None) -> list[SampleResult]:
        async def run():
            try:
                return await self.sample_many(items, n)
            finally:
                await self.aclose()

        return asyncio.run(run())

    async def aclose(self):
        self._semaphores.pop(id(asyncio.get_running_loop()), None)
        await self._http.aclose()

    # ------------------------------------------------------------------ internals

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        state = self._semaphores.get(id(loop))
        if state is None or state[0] is not loop:
            state = (loop, asyncio.Semaphore(max(1, int(self.concurrency))))
            self._semaphores[id(loop)] = state
        return state[1]

    async def _post(self, messages: list[dict], n: int) -> list[str | None]:
        payload = {
            "model": await self._model_name(),
            "messages": messages,
            "n": n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            **self.extra_body,
        }
        if self.top_k is not None and self.top_k > 0:
            payload["top_k"] = self.top_k  # vLLM's extension of the OpenAI schema
        data = await self._http.post("/chat/completions", payload)
        return choice_texts(data, f"{self.base_url}/chat/completions")

    async def _model_name(self) -> str:
        if self._served_model:
            return self._served_model
        data = await self._http.get("/models")
        models = data.get("data") if isinstance(data, dict) else None
        if not models or not isinstance(models[0], dict) or not models[0].get("id"):
            raise PermanentError(f"{self.base_url}/models lists no model; set visplay.reasoner.model")
        self._served_model = str(models[0]["id"])
        return self._served_model

    async def _image_url(self, image: Any) -> str | None:
        if image is None:
            return None
        if isinstance(image, str) and image.startswith(("data:", "http://", "https://")):
            return image
        loop = asyncio.get_running_loop()
        # PNG encoding takes tens of ms: keep it off the event loop, and encode each image once.
        key, encoder = _image_cache_key(image), lambda: image_to_data_url(image, self.image_format)
        if key is None:
            return await loop.run_in_executor(None, encoder)
        cached = self._url_cache.get(key)
        if cached is None:
            cached = await loop.run_in_executor(None, encoder)
            self._url_cache[key] = cached
            while len(self._url_cache) > 256:
                self._url_cache.popitem(last=False)
        else:
            self._url_cache.move_to_end(key)
        return cached


def build_messages(prompt: str, image_url: str | None, system: str | None = None) -> list[dict]:
    content: list[dict] = []
    if image_url is not None:
        content.append({"type": "image_url", "image_url": {"url": image_url}})
    content.append({"type": "text", "text": prompt})
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": content}]


def _image_cache_key(image: Any) -> str | None:
    if isinstance(image, bytes | bytearray):
        return hashlib.blake2b(bytes(image), digest_size=16).hexdigest()
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return None
    if isinstance(image, Image.Image):
        digest = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
        return f"{image.mode}:{image.size}:{digest}"
    return None


def image_to_data_url(image: Any, image_format: str = "PNG") -> str:
    """PIL image, encoded bytes or a file path → `data:image/...;base64,...` (RGB)."""
    from PIL import Image

    from verl_ext.image_io import decode_rgb

    if isinstance(image, str | os.PathLike | bytes | bytearray | Image.Image):
        image = decode_rgb(image)  # the decoder every stage shares (16-bit greyscale scaled, EXIF applied)
    else:
        raise TypeError(f"unsupported image type {type(image).__name__}")
    fmt = image_format.upper()
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    mime = "jpeg" if fmt in ("JPG", "JPEG") else fmt.lower()
    return f"data:image/{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
