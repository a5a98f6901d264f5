"""An LLM judge through any OpenAI-compatible chat endpoint: prompts, verdict parsing, retries, a thread pool.

Model, URL and key come from arguments or the environment (VISPLAY_JUDGE_MODEL, VISPLAY_JUDGE_URL or OPENAI_BASE_URL,
VISPLAY_JUDGE_API_KEY or OPENAI_API_KEY); the key is never logged or written. A call that fails (transport error, 429,
5xx, a reply with no readable verdict) is retried with backoff; when the attempts run out the item has no verdict:
it is counted as failed, never guessed.

A verdict is read only when the reply (or its last line, for judges that reason first) is one verdict word and
nothing else: "Not correct.", "The answer is not correct" or "CORRECT or INCORRECT" are unreadable, never a score.
A cached verdict is keyed by the judge's endpoint, model, sampling settings and prompt: another judge URL or model
asks again.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from verl_ext.openai_client import (
    PermanentError,
    RetryPolicy,
    SyncChatClient,
    TransientError,
    api_key_from_env,
    choice_texts,
)

from .benchmarks import EvalItem

MAX_RESPONSE_CHARS = 2000  # the judge sees the end of a long response, where the final answer is

BINARY_PROMPT = """You grade answers to benchmark questions about an image. You do not see the image and do not need \
to: decide only whether the model's final answer means the same as the reference answer. Equivalent numbers, \
expressions, units, option letters versus the option's text, and paraphrases count as the same; a missing, hedged \
or multiple answer is wrong.

Question: {question}
Reference answer: {answer}
Model response (its end): {response}

Reply with one word: CORRECT or INCORRECT."""

# MM-Vet grades free-form answers 0..1; "<AND>" parts are all required, "<OR>" alternatives any one. This is OUR
# paraphrase of MM-Vet's rubric, not its grader prompt: a table reports it as "paraphrased rubric". The official
# few-shot grader prompt is used when the user supplies it (--mmvet-grader-prompt FILE or $VISPLAY_MMVET_PROMPT) or an
# installed lmms-eval holds it (read as text from lmms_eval/tasks/mmvet/utils.py, never imported).
SCORE_PROMPT = """You grade a model's answer to a question about an image against the ground truth, with a score \
from 0.0 (totally wrong) to 1.0 (totally right) in steps of 0.1. In the ground truth, <AND> means every part must be \
in the answer for full marks (partial answers get partial credit), <OR> means any one alternative is enough. Long \
answers are judged on content, not wording.

Examples:
Question: What is x in the equation? | Ground truth: -1 <AND> -5 | Answer: x = 3 | Score: 0.0
Question: What is x in the equation? | Ground truth: -1 <AND> -5 | Answer: x = -5 | Score: 0.5
Question: What is x in the equation? | Ground truth: -1 <AND> -5 | Answer: x = -1 or x = -5 | Score: 1.0
Question: How many apples are there? | Ground truth: 3 <OR> three | Answer: There are three apples. | Score: 1.0

Question: {question} | Ground truth: {answer} | Answer: {response} | Score:

Reply with the score only."""

# The reference implementation's judge (VisPlay Evaluation/eval_boxed_accuracy.py judge_answer_with_llm): a binary
# verdict on the EXTRACTED answer against the ground truth, the question not shown.
VISPLAY_SYSTEM_PROMPT = (
    "You are an answer evaluation assistant. Your task is to judge whether two answers are substantially equivalent. "
    "When evaluating, you should ignore superficial differences such as format, spaces, punctuation, case, etc., and "
    "focus on whether they are consistent in core content, logical meaning and information expression. The judgment "
    "criteria should be lenient and inclusive, as long as the expressed meaning is basically the same, it is "
    "considered equivalent."
)
VISPLAY_PROMPT = (
    'Please judge whether the following two answers express the same meaning. Please only answer "correct" or '
    '"incorrect". Correct answer: {answer}. Answer to be judged: {response}. Judgment result (only answer "correct" '
    "or \"incorrect\"). You don't need to reason, if correct return 1, if incorrect return 0. Don't say anything else."
)
VISPLAY_TEMPERATURE = 0.6  # the reference's sampling temperature for its judge

# One verdict word per mode; the reference's judge may also answer 1/0 (its prompt asks for either).
VERDICT_WORDS = {
    "binary": {"correct": 1.0, "incorrect": 0.0},
    "visplay": {
        "correct": 1.0,
        "incorrect": 0.0,
        "1": 1.0,
        "0": 0.0,
        "yes": 1.0,
        "no": 0.0,
        "true": 1.0,
        "false": 0.0,
    },
}
PROMPT_VERSION = 2  # part of the verdict cache key: bump when a prompt or the parser changes
_VERDICT_LABEL = re.compile(
    r"^(?:final\s+)?(?:verdict|judgment|judgement|answer|grade|result|output)\s*[:：]\s*", re.I
)
_SCORE = re.compile(r"^\s*(?:(?:correctness|score)\s*[:=]?\s*)?([01](?:\.\d+)?|\.\d+)(?=\s|$|[.,;])", re.IGNORECASE)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


class JudgeConfigError(ValueError):
    pass


@dataclass
class JudgeConfig:
    model: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)  # from the environment; never printed
    max_attempts: int = 4
    timeout_s: float = 60.0
    concurrency: int = 8
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    temperature: float = 0.0
    max_tokens: int = 1024  # room for a judge that reasons before its verdict (the verdict is read from the last line)
    mmvet_prompt: str | None = field(default=None, repr=False)  # MM-Vet's official grader prompt, when supplied

    @classmethod
    def from_env(
        cls, model: str | None = None, base_url: str | None = None, api_key_env: str | None = None, **kw
    ) -> JudgeConfig | None:
        """The judge named by arguments, else by the environment; None when no model is set (judge off)."""
        model = model or os.environ.get("VISPLAY_JUDGE_MODEL")
        if not model:
            return None
        base_url = base_url or os.environ.get("VISPLAY_JUDGE_URL") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise JudgeConfigError(
                f"judge model {model!r} set but no endpoint: pass --judge-url or set VISPLAY_JUDGE_URL / "
                "OPENAI_BASE_URL (e.g. https://api.openai.com/v1 or a local vLLM server's /v1)"
            )
        api_key = api_key_from_env([api_key_env] if api_key_env else ["VISPLAY_JUDGE_API_KEY", "OPENAI_API_KEY"])
        return cls(model=model, base_url=base_url.rstrip("/"), api_key=api_key, **kw)

    def describe(self) -> dict:
        """The judge as results.json records it (never the key)."""
        return {
            "model": self.model,
            "base_url": self.base_url,
            "temperature": self.temperature,
            "mmvet_prompt": "official grader prompt" if self.mmvet_prompt else "paraphrased rubric",
        }

    def cache_identity(self) -> dict:
        """What a cached verdict depends on: the endpoint AND the model (the same model name at another URL may be
        another model), the sampling settings and the prompt/parser version."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "prompt_version": PROMPT_VERSION,
        }


@dataclass(frozen=True)
class Verdict:
    score: float | None  # 0..1; None: no verdict after every attempt (counted as failed)
    raw: str  # the judge's last reply (or the last error)
    attempts: int
    error: str | None = None


# --------------------------------------------------------------------------------------------------
# Prompts and parsing
# --------------------------------------------------------------------------------------------------


def response_tail(response: str | None) -> str:
    text = _THINK.sub(" ", response or "").strip() or (response or "").strip()
    return text if len(text) <= MAX_RESPONSE_CHARS else "..." + text[-MAX_RESPONSE_CHARS:]


def reference_answer(item: EvalItem) -> str:
    if item.answer_type == "choice" and item.choices and item.answer in item.choices:
        return f"{item.answer} ({item.choices[item.answer]})"
    return item.answer


def judge_prompt(item: EvalItem, response: str | None, mode: str, mmvet_prompt: str | None = None) -> str:
    """The user prompt. visplay: `response` is the extracted answer (the reference judges that, not the response)."""
    if mode == "visplay":
        return VISPLAY_PROMPT.format(answer=item.answer, response=response or "")
    answer = reference_answer(item)
    if mode == "score":
        answer = answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
        if mmvet_prompt:  # lmms_eval/tasks/mmvet/utils.py mmvet_process_results: "{prompt}\n{q} | {gt} | {pred} |"
            return f"{mmvet_prompt}\n{item.judge_question} | {answer} | {response_tail(response)} |"
    template = SCORE_PROMPT if mode == "score" else BINARY_PROMPT
    return template.format(question=item.judge_question, answer=answer, response=response_tail(response) or "(empty)")


def system_prompt(mode: str) -> str | None:
    return VISPLAY_SYSTEM_PROMPT if mode == "visplay" else None


def _verdict_line(text: str) -> str:
    """A reply reduced to its verdict candidate: outside <think>, its last non-empty line, without a "Verdict:" label,
    markdown, quotes, brackets and closing punctuation, lower-cased."""
    text = _THINK.sub(" ", text)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for _ in range(2):
        line = re.sub(r"</?(?:judgment|judgement|answer|verdict)>", "", line, flags=re.I).strip()
        line = line.strip().strip("*_`\"'“”‘’[]()").strip()
        line = _VERDICT_LABEL.sub("", line)
    return line.rstrip(".!。").strip().strip("*_`\"'“”‘’").strip().lower()


def parse_verdict(text: str, mode: str) -> float | None:
    """binary/visplay: 1.0 or 0.0 when the reply (or its last line) is exactly one verdict word ("CORRECT",
    "**Incorrect.**", "Verdict: correct"); score: a 0..1 grade leading the reply or its last line. None otherwise:
    a negation ("Not correct"), a sentence ("The answer is correct"), both words, or anything else is unreadable."""
    if not isinstance(text, str):
        return None
    if mode == "score":
        stripped = _THINK.sub(" ", text).strip()
        lines = [ln for ln in stripped.splitlines() if ln.strip()]
        for candidate in dict.fromkeys([stripped, lines[-1] if lines else ""]):
            m = _SCORE.match(candidate.strip().strip("*"))
            if m:
                value = float(m.group(1))
                return value if 0.0 <= value <= 1.0 else None
        return None
    return VERDICT_WORDS.get(mode, VERDICT_WORDS["binary"]).get(_verdict_line(text))


def official_mmvet_prompt(path: str | None = None) -> str | None:
    """MM-Vet's grader prompt: from `path` or $VISPLAY_MMVET_PROMPT (a text file the user supplies), else from an
    installed lmms-eval's task file, parsed as text (its module starts a judge client on import). None: not there."""
    path = path or os.environ.get("VISPLAY_MMVET_PROMPT")
    if path:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            text = f.read().strip()
        if not text:
            raise JudgeConfigError(f"{path}: the MM-Vet grader prompt file is empty")
        return text
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec("lmms_eval")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    source = os.path.join(list(spec.submodule_search_locations)[0], "tasks", "mmvet", "utils.py")
    try:
        tree = ast.parse(open(source, encoding="utf-8").read())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MM_VET_PROMPT" for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value.strip()
    return None


# --------------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------------


class JudgeClient:
    def __init__(self, config: JudgeConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.sleep = sleep
        self._client = SyncChatClient(config.base_url, config.api_key, config.timeout_s, normalize=False)
        # No jitter: a judge's retries are few and its callers' threads already spread them.
        self._retry = RetryPolicy(config.max_attempts - 1, config.backoff_s, config.max_backoff_s, jitter=False)
        self.calls = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _complete(self, prompt: str, temperature: float, system: str | None = None) -> str:
        messages = [{"role": "system", "content": system}] if system else []
        body = {
            "model": self.config.model,
            "messages": [*messages, {"role": "user", "content": prompt}],
            "temperature": temperature,
            "max_tokens": self.config.max_tokens,
        }
        with self._lock:
            self.calls += 1
        reply = self._client.post("/chat/completions", body)
        texts = choice_texts(reply, f"{self._client.base_url}/chat/completions")
        if not texts:
            raise TransientError(f"malformed reply: no choices in {str(reply)[:200]!r}")
        return texts[0] or ""

    def judge(self, prompt: str, mode: str) -> Verdict:
        """One verdict, with up to `max_attempts` calls. An unreadable reply is retried at a higher temperature."""
        last, error = "", None
        temperature = VISPLAY_TEMPERATURE if mode == "visplay" else self.config.temperature
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                last = self._complete(prompt, temperature, system_prompt(mode))
            except TransientError as exc:
                error = str(exc)
                last = error
                if attempt < self.config.max_attempts:
                    self.sleep(self._retry.delay(attempt, exc.retry_after))
                continue
            except PermanentError as exc:
                return Verdict(None, str(exc), attempt, str(exc))
            score = parse_verdict(last, mode)
            if score is not None:
                return Verdict(score, last, attempt)
            error = "no verdict in the reply"
            temperature = max(temperature, 0.7)  # a deterministic judge repeats itself at temperature 0
        return Verdict(None, last, self.config.max_attempts, error)

    def judge_many(
        self, jobs: Iterable[tuple[str, str, str]], on_result: Callable[[str, Verdict], None] | None = None
    ) -> dict[str, Verdict]:
        """(key, prompt, mode) jobs in a thread pool; `on_result(key, verdict)` as each finishes (for the cache)."""
        jobs = list(jobs)
        out: dict[str, Verdict] = {}
        if not jobs:
            return out
        with ThreadPoolExecutor(max_workers=max(1, min(self.config.concurrency, len(jobs)))) as pool:
            futures = {pool.submit(self.judge, prompt, mode): key for key, prompt, mode in jobs}
            for future in as_completed(futures):
                key = futures[future]
                try:
                    verdict = future.result()
                except Exception as exc:  # never lose the rest of the batch to one bad item
                    verdict = Verdict(None, f"{type(exc).__name__}: {exc}", 0, str(exc))
                out[key] = verdict
                if on_result is not None:
                    on_result(key, verdict)
        return out
