"""A small OpenAI-compatible chat-completions server around a local Hugging Face model, for tests.

Code that talks to a reasoner endpoint (vLLM in production) is tested against `serve_model(path)`: real `generate`
output, loopback only, an ephemeral port, a background thread. `python -m verl_ext.inference.openai_server` serves it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import json
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_MAX_TOKENS = 256
MAX_N = 128
MAX_BODY_BYTES = 256 * 1024 * 1024


class RequestError(Exception):
    """A request the server refuses; becomes an OpenAI-style error body with `status`."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST, param: str | None = None):
        super().__init__(message)
        self.status = int(status)
        self.param = param


def error_body(message: str, status: int, param: str | None = None) -> dict:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == HTTPStatus.NOT_FOUND:
        kind = "not_found_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _decode_image_url(url: str):
    from verl_ext.image_io import ImageError, decode_rgb

    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise RequestError("image_url data URLs must be base64 encoded (data:<mime>;base64,<data>)", param="url")
        try:
            data = base64.b64decode(payload, validate=True)
        except ValueError as exc:
            raise RequestError(f"invalid base64 in image_url: {exc}", param="url") from exc
    elif url.startswith("file://"):
        try:
            data = Path(urlsplit(url).path).read_bytes()
        except OSError as exc:
            raise RequestError(f"cannot read image_url {url!r}: {exc}", param="url") from exc
    else:
        raise RequestError("image_url must be a data: or file: URL (this server never fetches)", param="url")
    try:
        return decode_rgb(data)  # the decoder every stage shares
    except ImageError as exc:
        raise RequestError(f"image_url does not hold a usable image ({exc})", param="url") from exc


def parse_messages(messages) -> tuple[list[dict], list]:
    """OpenAI chat messages -> (messages for a HF chat template, PIL images in order of appearance)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", param="messages")
    converted, images = [], []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError("each message must be an object with a string 'role'", param="messages")
        content = message.get("content")
        if content is None or isinstance(content, str):
            converted.append({"role": message["role"], "content": content or ""})
            continue
        if not isinstance(content, list):
            raise RequestError("message 'content' must be a string or a list of parts", param="messages")
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if not isinstance(url, str):
                    raise RequestError("an image_url part needs image_url.url", param="messages")
                images.append(_decode_image_url(url))
                parts.append({"type": "image"})
            else:
                raise RequestError(f"unsupported content part: {str(part)[:200]}", param="messages")
        converted.append({"role": message["role"], "content": parts})
    return converted, images


def _number(request: dict, name: str, default, kind, low=None, high=None, allow_none=True):
    value = request.get(name, default)
    if value is None and allow_none:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise RequestError(f"'{name}' must be {'an integer' if kind is int else 'a number'}", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise RequestError(f"'{name}' must be in [{low}, {high}], got {value}", param=name)
    return kind(value)


def parse_sampling(request: dict) -> dict:
    """Validated sampling parameters of a chat request (OpenAI names, plus vLLM's `top_k`)."""
    if request.get("stream"):
        raise RequestError("streaming is not supported by this test server", param="stream")
    max_tokens = request.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = request.get("max_tokens")
    stop = request.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        raise RequestError("'stop' must be a string or a list of non-empty strings", param="stop")
    top_k = _number(request, "top_k", -1, int, low=-1)
    seed = request.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("'seed' must be an integer", param="seed")
    return {
        "n": _number(request, "n", 1, int, low=1, high=MAX_N),
        "temperature": _number(request, "temperature", 1.0, float, low=0.0, high=100.0),
        "top_p": _number(request, "top_p", 1.0, float, low=1e-9, high=1.0),
        "top_k": 0 if top_k <= 0 else top_k,  # 0 / -1: disabled
        "max_tokens": _number({"max_tokens": max_tokens}, "max_tokens", DEFAULT_MAX_TOKENS, int, low=1),
        "seed": seed,
        "stop": stop or [],
    }


class ChatModel:
    """A HF model and its processor behind a lock: chat request in, OpenAI response dict out."""

    def __init__(
        self,
        model_path,
        name: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        max_prompt_tokens: int | None = None,
    ):
        from verl_ext.compat.torchvision_shim import install_hook

        install_hook()
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        self.path = str(model_path)
        self.name = name or Path(self.path).name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.lock = threading.Lock()
        self.max_prompt_tokens = max_prompt_tokens  # as vLLM's max_model_len: a longer prompt is a 400, never run
        try:
            processor = AutoProcessor.from_pretrained(self.path)
        except (OSError, ValueError, TypeError):  # text-only models, on some transformers versions
            processor = None
        # A text-only model's AutoProcessor is its tokenizer: serve it through the tokenizer's chat template.
        self.processor = processor if hasattr(processor, "image_processor") else None
        self.tokenizer = (
            processor.tokenizer if self.processor is not None else AutoTokenizer.from_pretrained(self.path)
        )
        auto_class = AutoModelForImageTextToText if self.processor is not None else AutoModelForCausalLM
        self.model = auto_class.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.eos_ids[0]

    def _encode(self, messages: list[dict], images: list):
        if self.processor is None:
            if images:
                raise RequestError("this model takes no images", param="messages")
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.tokenizer([prompt], return_tensors="pt")
        prompt = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.processor(text=[prompt], images=images or None, return_tensors="pt")

    def _generate(self, inputs, sampling: dict):
        import torch
        from transformers import GenerationConfig

        greedy = sampling["temperature"] == 0.0
        options = dict(max_new_tokens=sampling["max_tokens"], eos_token_id=self.eos_ids, pad_token_id=self.pad_id)
        if greedy:
            options.update(do_sample=False, num_return_sequences=1)
        else:  # every sampling knob explicit: the model's generation_config defaults must not leak in
            options.update(do_sample=True, num_return_sequences=sampling["n"], temperature=sampling["temperature"])
            options.update(top_p=sampling["top_p"], top_k=sampling["top_k"])
        config = GenerationConfig(**options)
        inputs = inputs.to(self.device)
        with self.lock, torch.inference_mode():
            rng = contextlib.nullcontext()
            if sampling["seed"] is not None:
                rng = torch.random.fork_rng(devices=[] if self.device == "cpu" else None)
            with rng:
                if sampling["seed"] is not None:
                    torch.manual_seed(sampling["seed"])
                output = self.model.generate(**inputs, generation_config=config)
        generated = output[:, inputs["input_ids"].shape[1] :].tolist()
        return generated * sampling["n"] if greedy else generated  # greedy: n identical samples

    def _choice(self, index: int, tokens: list[int], stop: list[str]) -> tuple[dict, int]:
        finish, length = "length", len(tokens)
        for i, token in enumerate(tokens):
            if token in self.eos_ids:
                finish, length = "stop", i + 1
                break
        text = self.tokenizer.decode(tokens[:length], skip_special_tokens=True)
        cuts = [text.find(s) for s in stop if s in text]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        message = {"role": "assistant", "content": text}
        return {"index": index, "message": message, "finish_reason": finish, "logprobs": None}, length

    def complete(self, request: dict) -> dict:
        if not isinstance(request, dict):
            raise RequestError("the request body must be a JSON object")
        messages, images = parse_messages(request.get("messages"))
        sampling = parse_sampling(request)
        inputs = self._encode(messages, images)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        if self.max_prompt_tokens and prompt_tokens > self.max_prompt_tokens:
            raise RequestError(
                f"the prompt has {prompt_tokens} tokens (text and image), more than this server's limit of "
                f"{self.max_prompt_tokens}",
                param="messages",
            )
        generated = self._generate(inputs, sampling)
        choices, completion_tokens = [], 0
        for index, tokens in enumerate(generated):
            choice, length = self._choice(index, tokens, sampling["stop"])
            choices.append(choice)
            completion_tokens += length
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def models(self) -> dict:
        entry = {"id": self.name, "object": "model", "created": 0, "owned_by": "verl_ext.tiny"}
        return {"object": "list", "data": [entry]}


class _Handler(BaseHTTPRequestHandler):
    server_version = "verl-ext-testkit/1"
    server: _Server

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, param: str | None = None) -> None:
        self._send(status, error_body(message, status, param))

    def _route(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        route = self._route()
        if route == "/v1/models":
            self._send(HTTPStatus.OK, self.server.chat_model.models())
        elif route == "/health":
            self._send(HTTPStatus.OK, {"status": "ok"})
        elif route == "/v1/chat/completions":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST for /v1/chat/completions")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"unknown path {route}")

    def do_POST(self):  # noqa: N802
        route = self._route()
        if route != "/v1/chat/completions":
            status = HTTPStatus.METHOD_NOT_ALLOWED if route in ("/v1/models", "/health") else HTTPStatus.NOT_FOUND
            self._error(status, f"no POST endpoint {route}")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return
        if not 0 <= length <= MAX_BODY_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes refused")
            return
        body = self.rfile.read(length)
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"malformed JSON body: {exc}")
            return
        try:
            response = self.server.chat_model.complete(request)
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.param)
            return
        except Exception as exc:  # a test tool: report the failure to the client, keep serving
            traceback.print_exc(file=sys.stderr)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
            return
        self._send(HTTPStatus.OK, response)

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # clients fire many concurrent requests; requests queue on the model lock, not here

    def __init__(self, address, chat_model: ChatModel, verbose: bool):
        self.chat_model = chat_model
        self.verbose = verbose
        super().__init__(address, _Handler)


def _loopback_address(host: str) -> str:
    try:
        address = socket.gethostbyname(host)
    except OSError as exc:
        raise ValueError(f"cannot resolve host {host!r}") from exc
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"this test server binds to loopback addresses only, not {host!r} ({address})")
    return address


class OpenAIChatServer:
    """The server object behind `serve_model`: `start()` binds and serves in a daemon thread, `stop()` shuts down."""

    def __init__(
        self,
        model_path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model_name=None,
        device=None,
        dtype: str = "auto",
        verbose: bool = False,
        max_prompt_tokens: int | None = None,
    ):
        self.address = (_loopback_address(host), int(port))
        self.chat_model = ChatModel(
            model_path, name=model_name, device=device, dtype=dtype, max_prompt_tokens=max_prompt_tokens
        )
        self.verbose = verbose
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIChatServer:
        self._server = _Server(self.address, self.chat_model, self.verbose)
        self._thread = threading.Thread(target=self._server.serve_forever, name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None


@contextlib.contextmanager
def serve_model(model_path, host: str = "127.0.0.1", port: int = 0, **kwargs):
    """Serve `model_path` at an OpenAI-compatible endpoint for the duration of the block; yields the base URL
    (`http://127.0.0.1:<port>/v1`). Keyword arguments: model_name, device, dtype, verbose, max_prompt_tokens (see
    OpenAIChatServer)."""
    server = OpenAIChatServer(model_path, host=host, port=port, **kwargs).start()
    try:
        yield server.url
    finally:
        server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True, help="a local Hugging Face model directory")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 (default): an ephemeral port")
    parser.add_argument("--model-name", default=None, help="name reported by /v1/models (default: folder name)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument("--max-prompt-tokens", type=int, default=None, help="longer prompts get a 400 (as vLLM's)")
    args = parser.parse_args(argv)
    server = OpenAIChatServer(
        args.model_path,
        args.host,
        args.port,
        model_name=args.model_name,
        device=args.device,
        verbose=args.verbose,
        max_prompt_tokens=args.max_prompt_tokens,
    ).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
