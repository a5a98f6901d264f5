"""The benchmark registry: where each evaluation set lives and how its rows become `EvalItem`s.

One adapter per benchmark keeps that benchmark's own answer format (option letters, "(b) 73%", `<AND>`/`<OR>`, yes/no
stored as "1"/"0", option lists stored as a Python-list string) and turns it into a question for the reasoner prompt
plus a gold answer of one `answer_type`: choice | yesno | math | text. Register more with `register_benchmark`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ANSWER_TYPES = ("choice", "yesno", "math", "text")
# The rule scorers of `scoring.RULES` (docs/eval.md says which benchmark uses which); the default follows answer_type.
RULE_NAMES = ("mcq", "realworldqa", "mmmu", "letter", "yesno", "math", "text", "visplay")
DEFAULT_RULE = {"choice": "letter", "yesno": "yesno", "math": "math", "text": "text"}
LETTERS = "ABCDEFGHIJKLMNOP"
CHOICE_HINT = "Answer with the option's letter from the given choices."
YESNO_HINT = "Answer yes or no."


@dataclass
class EvalItem:
    """One benchmark question, normalised. `images` hold raw cells (bytes, PIL image, path or HF image struct)."""

    benchmark: str
    id: str
    question: str  # the text given to the reasoner prompt (options and a short answer-format hint included)
    answer: str  # gold: an option letter, "yes"/"no", a value, or text with <AND>/<OR>
    answer_type: str  # one of ANSWER_TYPES
    images: list = field(default_factory=list)
    choices: dict[str, str] | None = None  # letter -> option text, when the benchmark has options
    judge_question: str = ""  # the question as the benchmark states it (for the LLM judge)
    meta: dict = field(default_factory=dict)
    rule: str = ""  # the rule scorer (RULE_NAMES); default: DEFAULT_RULE[answer_type]

    def __post_init__(self):
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"{self.benchmark}/{self.id}: answer_type {self.answer_type!r} not in {ANSWER_TYPES}")
        self.rule = self.rule or DEFAULT_RULE[self.answer_type]
        if self.rule not in RULE_NAMES:
            raise ValueError(f"{self.benchmark}/{self.id}: rule {self.rule!r} not in {RULE_NAMES}")
        if not self.judge_question:
            self.judge_question = self.question


@dataclass(frozen=True)
class Benchmark:
    name: str  # registry key, used on the command line
    title: str  # as papers print it
    hf_path: str  # Hugging Face dataset name (the default source)
    split: str | None  # None: every split of the dataset, concatenated
    adapter: Callable[[dict, int], EvalItem | None]
    hf_config: str | None = None
    judge_mode: str = "binary"  # binary: correct/incorrect; score: a 0..1 grade (MM-Vet); visplay: the reference's
    metric: str = "accuracy"
    notes: str = ""
    hf_mirrors: tuple[str, ...] = ()  # other names of the same dataset on the hub, tried when hf_path fails
    rule_scored: bool = True  # False: the benchmark's metric is a judge's (MM-Vet); no rule row, not in the average
    group_metrics: str | None = None  # "hallusion": aAcc/fAcc/qAcc beside the item accuracy
    protocol: str = "official"  # official | visplay (the reference implementation's protocol, protocol_visplay.py)
    prompt: Callable[[EvalItem], str] | None = None  # the protocol's own solver prompt (None: the reasoner prompt)

    @property
    def hf_names(self) -> tuple[str, ...]:
        return (self.hf_path, *self.hf_mirrors)


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(spec: Benchmark) -> Benchmark:
    if spec.name in BENCHMARKS:
        raise ValueError(f"benchmark {spec.name!r} is already registered")
    BENCHMARKS[spec.name] = spec
    return spec


PROTOCOLS = ("official", "visplay")  # official: each benchmark's own metric; visplay: the reference implementation's


def protocol_benchmarks(protocol: str = "official") -> dict[str, Benchmark]:
    if protocol == "official":
        return BENCHMARKS
    if protocol == "visplay":
        from .protocol_visplay import VISPLAY_BENCHMARKS

        return VISPLAY_BENCHMARKS
    raise KeyError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")


def get_benchmark(name: str, protocol: str = "official") -> Benchmark:
    registry = protocol_benchmarks(protocol)
    try:
        return registry[name]
    except KeyError:
        where = "registered" if protocol == "official" else f"in the {protocol} protocol"
        raise KeyError(f"unknown benchmark {name!r} ({where}: {', '.join(registry)})") from None


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _s(value: Any) -> str:
    return "" if value is None else str(value).strip()


def format_options(choices: dict[str, str]) -> str:
    return "\n".join(f"{k}. {v}" for k, v in choices.items())


def with_hint(text: str, answer_type: str) -> str:
    hint = {"choice": CHOICE_HINT, "yesno": YESNO_HINT}.get(answer_type)
    return f"{text.rstrip()}\n{hint}" if hint else text.rstrip()


def _letter_choices(options: list) -> dict[str, str]:
    return {LETTERS[i]: _s(o) for i, o in enumerate(options)}


def _literal_list(value: Any) -> list:
    """MMMU stores lists as the string of a Python list ("['a', 'b']"); HF may also give real lists."""
    if isinstance(value, list | tuple):
        return list(value)
    text = _s(value)
    if not text.startswith("["):
        return [text] if text else []
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return [text]
    return list(parsed) if isinstance(parsed, list | tuple) else [parsed]


_NUMERIC = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?%?", re.IGNORECASE)


def _is_numeric(text: str) -> bool:
    return bool(_NUMERIC.fullmatch(text.replace(",", "").strip()))


# --------------------------------------------------------------------------------------------------
# Adapters: one per benchmark, row -> EvalItem (None to skip a row the benchmark itself does not score)
# --------------------------------------------------------------------------------------------------


def mmvet(row: dict, index: int) -> EvalItem:
    return EvalItem(
        benchmark="mmvet",
        id=_s(row.get("question_id")) or str(index),
        question=_s(row["question"]),
        answer=_s(row["answer"]),  # "<AND>": every part needed, "<OR>": any one
        answer_type="text",
        images=[row.get("image")],
        meta={"capability": _capabilities(row.get("capability"))},
    )


def _capabilities(value: Any) -> list[str]:
    """MM-Vet's capability cell: a list (HF) or a comma-separated string ("rec,ocr") of the release; never split
    into characters."""
    if value is None:
        return []
    if isinstance(value, str):
        return [c.strip() for c in value.split(",") if c.strip()]
    return [_s(c) for c in value if _s(c)]


_MMMU_IMAGE_TOKEN = re.compile(r"<image (\d+)>")


def mmmu(row: dict, index: int) -> EvalItem:
    question = _s(row["question"])
    options = _literal_list(row.get("options"))
    # lmms_eval/tasks/mmmu/utils.py mmmu_doc_to_visual: every <image k> of the question AND the options, sorted
    # (an option may be a picture: "<image 2>").
    prompt_text = question + "\n" + "\n".join(_s(o) for o in options)
    mentioned = sorted({int(k) for k in _MMMU_IMAGE_TOKEN.findall(prompt_text)})
    order = mentioned or list(range(1, 8))
    images = [row.get(f"image_{k}") for k in order if row.get(f"image_{k}") is not None]
    question = _MMMU_IMAGE_TOKEN.sub(lambda m: f"[image {m.group(1)}]", question)
    options = [_MMMU_IMAGE_TOKEN.sub(lambda m: f"[image {m.group(1)}]", _s(o)) for o in options]
    if len(images) > 1:
        named = ", ".join(f"image {k}" for k in order if row.get(f"image_{k}") is not None)
        question += f"\n(The {len(images)} images are shown side by side, left to right: {named}.)"
    mc = _s(row.get("question_type")) == "multiple-choice" and bool(options)
    choices = _letter_choices(options) if mc else None
    stated = f"{question}\n{format_options(choices)}" if choices else question
    gold = _literal_list(row["answer"])
    answer = _s(row["answer"]) if mc else "<OR>".join(_s(g) for g in gold)
    return EvalItem(
        benchmark="mmmu",
        id=_s(row.get("id")) or str(index),
        question=with_hint(stated, "choice" if mc else "text"),
        answer=answer,
        answer_type="choice" if mc else "text",
        images=images,
        choices=choices,
        judge_question=stated,
        meta={"subfield": _s(row.get("subfield")), "question_type": _s(row.get("question_type"))},
        rule="mmmu",
    )


_RWQA_INSTRUCTIONS = (
    "Please answer directly with only the letter of the correct option and nothing else.",
    "Please answer directly with a single word or number.",
)
_OPTION_LINE = re.compile(r"^\s*([A-J])[.)]\s+(.*\S)\s*$", re.MULTILINE)


def realworldqa(row: dict, index: int) -> EvalItem:
    question = _s(row["question"])
    for instruction in _RWQA_INSTRUCTIONS:  # they ask for a bare answer; the reasoner prompt asks to reason first
        question = question.replace(instruction, "").strip()
    choices = {m.group(1): m.group(2) for m in _OPTION_LINE.finditer(question)} or None
    gold = _s(row["answer"])
    if choices and gold.upper() in choices:
        answer_type, gold = "choice", gold.upper()
    else:  # a free answer, exact match after normalisation (realworldqa_process_results)
        answer_type = "math" if _is_numeric(gold) else "text"
    return EvalItem(
        benchmark="realworldqa",
        id=_s(row.get("id") or row.get("question_id")) or str(index),
        question=with_hint(question, answer_type),
        answer=gold,
        answer_type=answer_type,
        images=[row.get("image")],
        choices=choices if answer_type == "choice" else None,
        judge_question=question,
        rule="realworldqa",
    )


_PAREN_OPTION = re.compile(r"\(([a-zA-Z])\)\s*(.*?)(?=\s*\([a-zA-Z]\)\s|\s*$)", re.DOTALL)


def visnumbench(row: dict, index: int) -> EvalItem:
    question = _s(row.get("question") or row.get("text"))
    option = _s(row.get("option") or row.get("options"))
    choices = {m.group(1).upper(): m.group(2).strip() for m in _PAREN_OPTION.finditer(option)}
    gold = _s(row["answer"])
    m = re.match(r"\(?([a-zA-Z])\)", gold)  # "(b) 73%": the official scorer compares the first three characters
    letter = m.group(1).upper() if m else gold.upper()[:1]
    stated = f"{question}\nOptions: {option}"
    return EvalItem(
        benchmark="visnumbench",
        id=_s(row.get("id")) or str(index),
        question=with_hint(stated, "choice"),
        answer=letter,
        answer_type="choice",
        images=[row.get("image") if row.get("image") is not None else row.get("image_path")],
        choices=choices or None,
        judge_question=stated,
        # GML-FMGroup/VisNumBench columns: class, id, question, option, answer, task_class, Attributes, image
        meta={
            "class": _s(row.get("class")),
            "task_class": _s(row.get("task_class")),
            "attributes": _s(row.get("Attributes")),
        },
    )


_COLON_OPTION = re.compile(r"^\s*([A-J])\s*[:.)]\s*(.*\S)\s*$", re.MULTILINE)


def mathverse(row: dict, index: int) -> EvalItem:
    mc = _s(row.get("question_type")) == "multi-choice"
    stated = _s(row.get("question_for_eval") or row.get("question"))
    # query_cot is MathVerse's own reasoning prompt; for the vision-only versions it is the only text there is.
    question = _s(row.get("query_cot") or row.get("query_wo") or row.get("question"))
    choices = None
    if mc:
        after = stated.split("Choices:", 1)[1] if "Choices:" in stated else stated
        choices = {m.group(1): m.group(2) for m in _COLON_OPTION.finditer(after)} or None
    return EvalItem(
        benchmark="mathverse",
        id=_s(row.get("sample_index")) or str(index),
        question=question,
        answer=_s(row["answer"]).upper() if mc else _s(row["answer"]),
        answer_type="choice" if mc else "math",
        images=[row.get("image")],
        choices=choices,
        judge_question=stated or question,
        meta={"problem_version": _s(row.get("problem_version"))},
    )


def mathvision(row: dict, index: int) -> EvalItem:
    question = re.sub(r"<image\d*>", "", _s(row["question"])).strip()
    options = list(row.get("options") or [])
    choices = _letter_choices(options) if options else None
    stated = f"{question}\nOptions:\n{format_options(choices)}" if choices else question
    image = row.get("decoded_image") if row.get("decoded_image") is not None else row.get("image")
    return EvalItem(
        benchmark="mathvision",
        id=_s(row.get("id")) or str(index),
        question=with_hint(stated, "choice" if choices else "math"),
        answer=_s(row["answer"]).upper() if choices else _s(row["answer"]),
        answer_type="choice" if choices else "math",
        images=[image],
        choices=choices,
        judge_question=stated,
        meta={"level": row.get("level"), "subject": _s(row.get("subject"))},
    )


def hallusionbench(row: dict, index: int) -> EvalItem | None:
    if row.get("image") is None:  # visual-supplement questions asked without a figure: not in the image split
        return None
    key = "_".join(_s(row.get(k)) for k in ("category", "subcategory", "set_id", "figure_id", "question_id"))
    question = _s(row["question"])
    return EvalItem(
        benchmark="hallusionbench",
        id=key if key.strip("_") else str(index),
        question=with_hint(question, "yesno"),
        answer="yes" if _s(row["gt_answer"]) == "1" else "no",
        answer_type="yesno",
        images=[row.get("image")],
        judge_question=question,
        meta={k: _s(row.get(k)) for k in ("category", "subcategory", "set_id", "figure_id", "question_id")},
    )


_MMSTAR_OPTION = re.compile(r"([A-J]):\s*(.*?)(?=,\s*[A-J]:|\s*$)", re.DOTALL)


def mmstar(row: dict, index: int) -> EvalItem:
    question = _s(row["question"])
    after = question.split("Options:", 1)[1] if "Options:" in question else ""
    choices = {m.group(1): m.group(2).strip() for m in _MMSTAR_OPTION.finditer(after)} or None
    return EvalItem(
        benchmark="mmstar",
        id=_s(row.get("index")) or str(index),
        question=with_hint(question, "choice"),
        answer=_s(row["answer"]).upper(),
        answer_type="choice",
        images=[row.get("image")],
        choices=choices,
        judge_question=question,
        meta={"category": _s(row.get("category")), "l2_category": _s(row.get("l2_category"))},
        rule="mcq",
    )


# --------------------------------------------------------------------------------------------------
# The eight benchmarks of the paper (MMStar: the reference code's validation set)
# --------------------------------------------------------------------------------------------------

for _spec in (
    Benchmark(
        "mmvet",
        "MM-Vet",
        "lmms-lab-encoder/MMVet",
        "test",
        mmvet,
        judge_mode="score",
        metric="mean 0-1 grade by an LLM judge",
        notes="judged only: free-form answers graded 0..1 by an LLM (no rule score)",
        hf_mirrors=("lmms-lab/MMVet",),
        rule_scored=False,
    ),
    Benchmark(
        "mmmu",
        "MMMU",
        "lmms-lab-encoder/MMMU",
        "validation",
        mmmu,
        notes="validation split, all 30 subjects; multi-image questions (option images too) side by side",
        hf_mirrors=("lmms-lab/MMMU",),
    ),
    Benchmark(
        "realworldqa",
        "RealWorldQA",
        "lmms-lab-encoder/RealWorldQA",
        "test",
        realworldqa,
        metric="exact match",
        hf_mirrors=("lmms-lab/RealWorldQA",),
    ),
    Benchmark(
        "visnumbench",
        "VisNumBench",
        "GML-FMGroup/VisNumBench",
        None,
        visnumbench,
        notes="synthetic + real-world sets; not an lmms-eval task",
    ),
    Benchmark(
        "mathverse",
        "MathVerse",
        "AI4Math/MathVerse",
        "testmini",
        mathverse,
        hf_config="testmini",
        notes="testmini, all five problem versions, MathVerse's own CoT query",
    ),
    Benchmark("mathvision", "MATH-Vision", "MathLLMs/MathVision", "test", mathvision),
    Benchmark(
        "hallusionbench",
        "HallusionBench",
        "lmms-lab-encoder/HallusionBench",
        "image",
        hallusionbench,
        metric="question accuracy (aAcc); fAcc and qAcc beside it",
        hf_mirrors=("lmms-lab/HallusionBench",),
        group_metrics="hallusion",
    ),
    Benchmark("mmstar", "MMStar", "Lin-Chen/MMStar", "val", mmstar),
):
    register_benchmark(_spec)

DEFAULT_BENCHMARKS = tuple(BENCHMARKS)
