"""The LLM judge client: verdict parsing, retries with backoff on transport errors / 429 / 5xx / unreadable replies,
no retry on a bad request, failures counted and never guessed, the key only ever in a header. Against a scripted
stdlib endpoint and against the test kit's tiny VLM behind an OpenAI-compatible server (a real model whose output
is garbage as a judge: exactly what the parser must survive)."""

import json

import pytest

from verl_ext.eval.benchmarks import EvalItem
from verl_ext.eval.judge import (
    JudgeClient,
    JudgeConfig,
    JudgeConfigError,
    judge_prompt,
    parse_verdict,
    reference_answer,
)

ITEM = EvalItem(
    "mmstar",
    "7",
    "How many?\nA. 4\nB. 5",
    "B",
    "choice",
    [b"x"],
    {"A": "4", "B": "5"},
    judge_question="How many?\nA. 4\nB. 5",
)


def config(url, **kw):
    return JudgeConfig(model="judge-1", base_url=url, api_key="sk-test-not-a-real-key", backoff_s=0.0, **kw)


@pytest.mark.parametrize(
    "text, mode, expected",
    [
        ("CORRECT", "binary", 1.0),
        ("incorrect.", "binary", 0.0),
        ("**Correct**", "binary", 1.0),
        ("Verdict: INCORRECT", "binary", 0.0),
        ("<judgment>correct</judgment>", "binary", 1.0),
        ("<think>it says 5, the reference says 5</think>CORRECT", "binary", 1.0),
        ("The model gives 5; the reference is 5.\nCORRECT", "binary", 1.0),  # a judge that reasons first
        # negations and sentences are unreadable, never a score (the old parser read these as 1.0)
        ("Not correct.", "binary", None),
        ("NOT CORRECT", "binary", None),
        ("The answer is not correct", "binary", None),
        ("The answer is Correct", "binary", None),
        ("correct or incorrect", "binary", None),
        ("not CORRECT but INCORRECT", "binary", None),
        ("yes", "binary", None),
        ("1", "binary", None),
        ("1", "visplay", 1.0),  # the reference's prompt asks for correct/incorrect or 1/0
        ("0", "visplay", 0.0),
        ("Incorrect", "visplay", 0.0),
        ("not correct", "visplay", None),
        ("0.5", "score", 0.5),
        ("0.4\n", "score", 0.4),
        ("Comparing the parts, one of two is there.\n0.5", "score", 0.5),
        ("1.0 because", "score", 1.0),
        ("Score: 0.3", "score", 0.3),
        ("7", "score", None),
        ("about half", "score", None),
        (None, "binary", None),
    ],
)
def test_parse_verdict(text, mode, expected):
    assert parse_verdict(text, mode) == expected


def test_prompts_show_question_reference_and_response_tail():
    p = judge_prompt(ITEM, "<think>" + "x" * 5000 + "</think> so \\boxed{B}", "binary")
    assert "How many?" in p and "Reference answer: B (5)" in p and "\\boxed{B}" in p and "xxxx" not in p
    assert reference_answer(EvalItem("mmvet", "1", "q", "a<AND>b", "text", [b"x"])) == "a<AND>b"
    assert "a <AND> b" in judge_prompt(EvalItem("mmvet", "1", "q", "a<AND>b", "text", [b"x"]), "a", "score")


def test_config_from_env_never_exposes_the_key(monkeypatch):
    for name in ("VISPLAY_JUDGE_MODEL", "VISPLAY_JUDGE_URL", "OPENAI_BASE_URL", "VISPLAY_JUDGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert JudgeConfig.from_env() is None  # no model: judge off
    with pytest.raises(JudgeConfigError, match="no endpoint"):
        JudgeConfig.from_env("gpt-x")
    cfg = JudgeConfig.from_env("gpt-x", "http://127.0.0.1:1/v1/")
    assert cfg.api_key == "sk-from-env" and cfg.base_url == "http://127.0.0.1:1/v1"
    assert "sk-from-env" not in repr(cfg) and "sk-from-env" not in json.dumps(cfg.describe())
    monkeypatch.setenv("MY_KEY", "sk-other")
    assert JudgeConfig.from_env("gpt-x", "http://h/v1", "MY_KEY").api_key == "sk-other"


def test_cache_identity_includes_the_endpoint_and_the_model():
    a = config("http://judge-a/v1")
    assert a.cache_identity() != config("http://judge-b/v1").cache_identity()  # a new URL does not inherit verdicts
    other_model = JudgeConfig(model="judge-2", base_url="http://judge-a/v1", api_key="k")
    assert a.cache_identity() != other_model.cache_identity()
    assert "sk-test" not in json.dumps(a.cache_identity())


def test_retry_after_is_capped(scripted_endpoint):
    """A server asking for an hour (Retry-After: 3600) waits at most max_backoff_s."""
    import http.server
    import threading

    calls = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(1)
            if len(calls) == 1:
                self.send_response(429)
                self.send_header("Retry-After", "3600")
                body = b'{"error": {"message": "slow down"}}'
            else:
                self.send_response(200)
                body = b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "INCORRECT"}}]}'
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sleeps = []
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        client = JudgeClient(config(url, max_backoff_s=5.0), sleep=sleeps.append)
        verdict = client.judge("prompt", "binary")
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert verdict.score == 0.0 and len(sleeps) == 1 and 0 < sleeps[0] <= 5.0


def test_visplay_judge_sends_the_references_prompts(scripted_endpoint):
    from verl_ext.eval.judge import VISPLAY_SYSTEM_PROMPT, VISPLAY_TEMPERATURE

    with scripted_endpoint(lambda body, i: (200, "1")) as ep:
        client = JudgeClient(config(ep.url), sleep=lambda s: None)
        prompt = judge_prompt(ITEM, "5", "visplay")
        verdict = client.judge(prompt, "visplay")
        client.close()
    body = ep.requests[0][1]
    assert verdict.score == 1.0
    assert body["messages"][0] == {"role": "system", "content": VISPLAY_SYSTEM_PROMPT}
    assert "Correct answer: B. Answer to be judged: 5." in body["messages"][1]["content"]
    assert "How many" not in body["messages"][1]["content"]  # the reference does not show the question
    assert body["temperature"] == VISPLAY_TEMPERATURE


def test_mmvet_official_grader_prompt_is_used_when_supplied(tmp_path, monkeypatch):
    from verl_ext.eval.judge import official_mmvet_prompt

    monkeypatch.delenv("VISPLAY_MMVET_PROMPT", raising=False)
    item = EvalItem("mmvet", "1", "What is x?", "-1<AND>-5", "text", [b"x"])
    rubric = tmp_path / "grader.txt"
    rubric.write_text("Compare the ground truth and prediction ... | Correctness\n--- | --- | --- | ---\n")
    official = official_mmvet_prompt(str(rubric))
    p = judge_prompt(item, "x = -1", "score", official)
    # lmms_eval/tasks/mmvet/utils.py: f"{MM_VET_PROMPT}\n{question} | {answer} | {pred} |"
    assert p.endswith("\nWhat is x? | -1 <AND> -5 | x = -1 |") and p.startswith("Compare the ground truth")
    assert "Examples:" in judge_prompt(item, "x = -1", "score")  # without it: our paraphrase
    monkeypatch.setenv("VISPLAY_MMVET_PROMPT", str(rubric))
    assert official_mmvet_prompt() == official


def test_retries_transport_errors_and_unreadable_replies(scripted_endpoint):
    replies = [(503, "overloaded"), (429, "slow down"), (200, "I am not sure"), (200, "CORRECT")]
    sleeps = []
    with scripted_endpoint(lambda body, i: replies[i]) as ep:
        client = JudgeClient(config(ep.url), sleep=sleeps.append)
        verdict = client.judge(judge_prompt(ITEM, "\\boxed{B}", "binary"), "binary")
        client.close()
    assert verdict.score == 1.0 and verdict.attempts == 4
    assert len(sleeps) == 2  # after the two transport-level failures
    headers, body = ep.requests[0]
    assert headers["Authorization"] == "Bearer sk-test-not-a-real-key" and body["model"] == "judge-1"
    assert body["temperature"] == 0.0 and ep.requests[3][1]["temperature"] == 0.7  # unreadable -> a new draw


def test_failure_is_counted_never_guessed(scripted_endpoint):
    with scripted_endpoint(lambda body, i: (500, "down")) as ep:
        client = JudgeClient(config(ep.url, max_attempts=3), sleep=lambda s: None)
        verdict = client.judge("prompt", "binary")
    assert verdict.score is None and verdict.attempts == 3 and "HTTP 500" in verdict.error
    with scripted_endpoint(lambda body, i: (400, "bad model name")) as ep:
        client = JudgeClient(config(ep.url), sleep=lambda s: None)
        verdict = client.judge("prompt", "binary")
    assert verdict.score is None and verdict.attempts == 1 and len(ep.requests) == 1  # not worth retrying
    client = JudgeClient(config("http://127.0.0.1:9/v1", max_attempts=2, timeout_s=2), sleep=lambda s: None)
    verdict = client.judge("prompt", "binary")  # nothing listens on port 9 (discard): connection refused
    assert verdict.score is None and verdict.attempts == 2


def test_judge_many_runs_in_parallel_and_reports_each(scripted_endpoint):
    def script(body, i):
        prompt = body["messages"][0]["content"]
        return (200, "INCORRECT") if "item-3" in prompt else (200, "CORRECT")

    with scripted_endpoint(script) as ep:
        client = JudgeClient(config(ep.url, concurrency=4), sleep=lambda s: None)
        seen = {}
        out = client.judge_many([(f"k{i}", f"prompt item-{i}", "binary") for i in range(8)], seen.__setitem__)
    assert out == seen and len(out) == 8
    assert [out[f"k{i}"].score for i in range(8)] == [1, 1, 1, 0, 1, 1, 1, 1]


def test_a_real_model_as_judge_gives_garbage_which_counts_as_failed(tiny_vlm_server):
    """The tiny VLM writes no verdict: every call is retried, then the item has no score (never a guess)."""
    client = JudgeClient(
        JudgeConfig(model="tiny", base_url=tiny_vlm_server, max_attempts=2, backoff_s=0.0, max_tokens=8),
        sleep=lambda s: None,
    )
    verdicts = client.judge_many(
        [
            (str(i), judge_prompt(ITEM, f"\\boxed{{{x}}}", mode), mode)
            for i, (x, mode) in enumerate([("B", "binary"), ("A", "binary"), ("B", "score")])
        ]
    )
    client.close()
    for v in verdicts.values():
        assert v.attempts >= 1
        if v.score is None:  # the usual case: garbage text
            assert v.attempts == 2 and v.error
        else:  # a random model may, rarely, emit a readable word: then it is a verdict, parsed like any other
            assert v.score in (0.0, 1.0) or 0.0 <= v.score <= 1.0
    assert client.calls >= 3


def test_a_judge_that_always_says_not_correct_scores_nothing(scripted_endpoint):
    """The old parser read "Not correct." as CORRECT: the judge row said 100.0 for every checkpoint."""
    with scripted_endpoint(lambda body, i: (200, "Not correct.")) as ep:
        client = JudgeClient(config(ep.url, max_attempts=2), sleep=lambda s: None)
        verdicts = client.judge_many([(str(i), f"prompt {i}", "binary") for i in range(3)])
        client.close()
    assert all(v.score is None and v.error == "no verdict in the reply" for v in verdicts.values())
    assert len(ep.requests) == 6  # each retried once, then counted as failed
