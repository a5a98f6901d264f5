"""A small evolution run directory with loadable reasoner checkpoints, for the evaluation tests.

The loop runs for real with the fake backend (instant); the fake's S_1 and S_2 "models" are then replaced by copies
of the tiny VLM, so the evaluation loads and decodes real checkpoints. The base model is the tiny VLM itself.
"""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_fake_run(run_dir: Path, model_dir: Path, iterations: int = 2) -> Path:
    from verl_ext.evolve.fake_backend import FakeBackend
    from verl_ext.evolve.loop import run_evolution
    from verl_ext.evolve.recipe import load_recipe

    overrides = [
        "model.format_warmup=false",
        f"model.base={model_dir}",
        "images.max_images=6",
        "generation.num_questions=12",
        f"iterations={iterations}",
    ]
    recipe = load_recipe(ROOT / "recipes/tiny.yaml", overrides=overrides, env={})
    run_evolution(recipe, run_dir, FakeBackend(), log=lambda _m: None)
    for t in range(1, iterations + 1):
        merged = run_dir / f"iter_{t}" / "reasoner_merge"
        for f in Path(model_dir).iterdir():
            if f.is_file():
                shutil.copy2(f, merged / f.name)
    return run_dir


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory, tiny_vlm_path):
    return build_fake_run(tmp_path_factory.mktemp("eval_run") / "run", Path(tiny_vlm_path))


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """VISPLAY_CACHE in a temp dir (the benchmark fixtures are written there) and no judge from the environment."""
    monkeypatch.setenv("VISPLAY_CACHE", str(tmp_path / "cache"))
    for name in ("VISPLAY_JUDGE_MODEL", "VISPLAY_JUDGE_URL", "VISPLAY_EVAL_DATA"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


class ScriptedEndpoint:
    """/v1/chat/completions answering from `script(body, call_index) -> (status, content)`; records requests."""

    def __init__(self, script):
        self.script = script
        self.requests: list[tuple[dict, dict]] = []
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.requests.append((dict(self.headers), body))
                    index = len(endpoint.requests) - 1
                status, content = endpoint.script(body, index)
                payload = (
                    {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                    if status == 200
                    else {"error": {"message": content}}
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted_endpoint():
    """`ScriptedEndpoint(script)`: an OpenAI-style endpoint whose replies come from `script(body, call_index)`."""
    return ScriptedEndpoint
