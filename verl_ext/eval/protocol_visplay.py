"""`--protocol visplay`: the reference implementation's evaluation, so this project's numbers sit next to the paper's.

What the reference (github.com/bruno686/VisPlay) does, and this protocol does the same:

- data: its own pre-processed copies of the benchmarks (the README points to huggingface.co/zli12321/datasets), read
  from a local folder: `MLLM_test/test.parquet` holds MM-Vet, RealWorldQA, MathVerse and MATH-Vision told apart by a
  `file_name` column; `MMMU/`, `visnumbench/`, `hallusionbench/` each hold `data/test-00000-of-00001.parquet`.
  Columns `problem` (text with `<image>` placeholders), `answer`, `images` (a list of image structs)
  (validation_examples/eval_gen_questions.sh, Evaluation/eval_boxed_accuracy.py `main`). MMStar is not among them.
- prompt: train_examples/format_prompt/solver.jinja, word for word (its "solver_format," included); greedy decoding.
- extraction: the last `\\boxed{...}` without nested braces, else the first 100 characters of the response
  (eval_boxed_accuracy.py `extract_boxed_content`).
- judge: a binary verdict on the EXTRACTED answer against the ground truth (the question is not shown), with the
  reference's system and user prompts at temperature 0.6; an empty extraction is wrong without a call
  (`judge_answer_with_llm`, `judge_sample`). Unlike the reference, an unreadable verdict is retried and then counted as
  failed, not as wrong.
- rule score: the reference's non-judge path: upper-case, drop commas, periods and spaces, exact match
  (`normalize_answer`).
- average: micro, every item of every set counted once ("Overall: correct/total"); MM-Vet is binary accuracy.
"""

from __future__ import annotations

import re
from functools import partial

from .benchmarks import Benchmark, EvalItem

# name: (title, parquet path under the data root, file_name filter) in the order of eval_boxed_accuracy.py `datasets`
VISPLAY_SETS: dict[str, tuple[str, str, str | None]] = {
    "mmmu": ("MMMU", "MMMU/data/test-00000-of-00001.parquet", None),
    "mmvet": ("MM-Vet", "MLLM_test/test.parquet", "mm-vet"),
    "realworldqa": ("RealWorldQA", "MLLM_test/test.parquet", "realWorldQA"),
    "visnumbench": ("VisNumBench", "visnumbench/data/test-00000-of-00001.parquet", None),
    "mathverse": ("MathVerse", "MLLM_test/test.parquet", "mathverse"),
    "mathvision": ("MATH-Vision", "MLLM_test/test.parquet", "mathvision"),
    "hallusionbench": ("HallusionBench", "hallusionbench/data/test-00000-of-00001.parquet", None),
}
SOLVER_SUFFIX = (
    " solver_format, Please reason step by step based on the question and image, and put your final answer within "
    "\\boxed{}."
)
_IMAGE_TOKEN = re.compile(r"<image>")
_REFERENCE_BOXED = re.compile(r"\\boxed\{([^}]+)\}")


def solver_prompt(item: EvalItem) -> str:
    """train_examples/format_prompt/solver.jinja: `{{ content | trim }} solver_format, Please reason ...`."""
    return item.question.strip() + SOLVER_SUFFIX


def extract_answer(response) -> str:
    """eval_boxed_accuracy.py extract_boxed_content: the last box (no nested braces), else the first 100 characters."""
    if not response:
        return ""
    matches = _REFERENCE_BOXED.findall(response)
    if matches:
        return matches[-1].strip()
    return response.strip()[:100]


def normalize_answer(answer) -> str:
    """eval_boxed_accuracy.py normalize_answer: upper case, without commas, periods and whitespace."""
    if not answer:
        return ""
    return re.sub(r"[,.\s]+", "", str(answer).strip().upper())


def rule_correct(response, gold: str) -> tuple[bool, str]:
    """(correct, extracted) by the reference's rule-based path."""
    pred = extract_answer(response)
    return normalize_answer(pred) == normalize_answer(gold), pred


def visplay_row(name: str, row: dict, index: int) -> EvalItem:
    """A row of the reference's copies: problem / answer / images. The id is the row's index in its parquet file
    (the reference's `dataset_index`)."""
    problem = "" if row.get("problem") is None else str(row["problem"])
    images = row.get("images")
    if images is None:
        images = [row.get("image")]
    elif not isinstance(images, list | tuple):
        images = [images]
    return EvalItem(
        benchmark=name,
        id=str(index),
        question=_IMAGE_TOKEN.sub("", problem).strip(),
        answer=str(row.get("answer", "")).strip(),
        answer_type="text",
        images=list(images),
        judge_question=_IMAGE_TOKEN.sub("", problem).strip(),
        meta={"file_name": str(row.get("file_name") or "")},
        rule="visplay",
    )


VISPLAY_BENCHMARKS: dict[str, Benchmark] = {
    name: Benchmark(
        name,
        title,
        "",  # no hub name: the reference's copies are read from a local folder
        None,
        partial(visplay_row, name),
        judge_mode="visplay",
        metric="accuracy (reference protocol: binary judge on the extracted answer)",
        notes=f"{path}" + (f" where file_name == {fname!r}" if fname else ""),
        protocol="visplay",
        prompt=solver_prompt,
    )
    for name, (title, path, fname) in VISPLAY_SETS.items()
}
