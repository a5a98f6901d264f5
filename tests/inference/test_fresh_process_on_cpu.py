"""A brand-new interpreter: the .pth-armed torchvision shim lets it build the tiny VLM's processor, and the server CLI
(`python -m verl_ext.inference.openai_server`) prints its URL and serves. One subprocess for both (imports: ~8 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request

import pytest

# No install_hook() before `import torchvision`: only the .pth file can have armed the shim.
CHILD = textwrap.dedent(
    """
    import sys
    import torchvision
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(sys.argv[1])
    print("PROCESSOR", type(processor).__name__, type(processor.video_processor).__name__, flush=True)

    from verl_ext.inference.openai_server import main

    sys.exit(main(["--model-path", sys.argv[1], "--port", "0"]))
    """
)


@pytest.fixture(scope="module")
def child(tiny_vlm_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", CHILD, str(tiny_vlm_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first, second = process.stdout.readline().strip(), process.stdout.readline().strip()
    if process.poll() is not None or not second:
        process.kill()
        pytest.fail(f"child failed: {first!r} {second!r}\n{process.stderr.read()[-3000:]}")
    yield process, first, second
    process.terminate()  # the CLI exits 0 on SIGTERM
    assert process.wait(timeout=60) == 0
    process.stdout.close()
    process.stderr.close()


def test_fresh_interpreter_imports_torchvision_and_builds_processor(child):
    _, processor_line, _ = child
    assert processor_line.split() == ["PROCESSOR", "Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"]


def test_cli_prints_url_and_serves(child, tiny_vlm_path):
    _, _, url = child
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1") and not url.endswith(":0/v1")
    with urllib.request.urlopen(f"{url}/models", timeout=60) as response:
        assert json.load(response)["data"][0]["id"] == tiny_vlm_path.name
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "n": 2}).encode()
    request = urllib.request.Request(
        f"{url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert len(json.load(response)["choices"]) == 2
