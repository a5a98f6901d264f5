"""Rule scoring of a reasoner response against a benchmark's gold answer, no model involved.

The final answer is the last `\\boxed{}` (the reasoner prompt asks for it), else a closing "answer is X" or
"Answer: X". Then, by answer type: choice -> the option letter (from "B", "(b) 5", "B. 5", or the option text itself);
yesno -> yes/no; math -> the core's math-aware equivalence (math_verify under a hard timeout); text -> normalised match
of each `<OR>` alternative, partial credit over `<AND>` parts (MM-Vet's convention), numbers compared as math.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from verl_ext.visplay import answers_equivalent, canonical_key, extract_boxed

from .benchmarks import LETTERS, EvalItem

SCORER_VERSION = 1  # part of the rule cache key: bump when a rule changes

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_PHRASE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:)\s*[:\s]*(.+?)\s*(?:$|\n)", re.IGNORECASE | re.DOTALL
)
# "(B)", "[B]", "B.", "B:", "B)" or a lone "B" name an option outright; "B 5" only if "5" is option B's text ("A cat").
_LEAD_LETTER = re.compile(
    r"^\s*(?:option\s*)?(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])(?:[.:)]|$)|([A-Za-z])(?=\s))", re.IGNORECASE
)
_OPTION_WORD = re.compile(r"\boption\s*[\(\[]?([A-Za-z])\b", re.IGNORECASE)
_WORDS = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMERIC = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class RuleResult:
    score: float  # 0..1 (text answers with <AND> parts may score in between)
    extracted: str | None  # the final answer taken from the response
    source: str  # boxed | phrase | none
    normalized: str | None = None  # the option letter / yes-no / matched alternative, when one was found

    def to_dict(self) -> dict:
        return asdict(self)


def extract_final_answer(response) -> tuple[str | None, str]:
    """(answer, source): the last \\boxed{}, else a closing "answer is X" / "Answer: X" outside <think>."""
    if not isinstance(response, str):
        return None, "none"
    boxed = extract_boxed(response)
    if boxed:
        return boxed, "boxed"
    visible = _THINK.sub(" ", response)
    matches = list(_ANSWER_PHRASE.finditer(visible))
    if matches:
        text = matches[-1].group(1).strip().rstrip(".").strip()
        if text:
            return text[:500], "phrase"
    return None, "none"


def to_letter(pred: str, choices: dict[str, str] | None) -> str | None:
    """The option letter an answer names: "B", "(b)", "B. 5", "option B", or an option's own text."""
    valid = set(choices) if choices else set(LETTERS[:10])
    key = canonical_key(pred)
    if len(key) == 1 and key.isalpha() and key.upper() in valid:
        return key.upper()
    m = _LEAD_LETTER.match(pred)
    if m:
        explicit = next((g for g in m.groups()[:3] if g), None)
        if explicit and explicit.upper() in valid:
            return explicit.upper()
        bare = m.group(4)
        if bare and choices and bare.upper() in valid:
            if _same_text(pred[m.end() :].strip(" .:"), choices[bare.upper()]):
                return bare.upper()
    m = _OPTION_WORD.search(pred)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    if choices:
        hits = [letter for letter, text in choices.items() if _same_text(pred, text)]
        if len(hits) == 1:
            return hits[0]
    return None


def to_yesno(pred: str) -> str | None:
    words = _WORDS.findall(pred.lower())
    if not words:
        return None
    if words[0] in ("yes", "true", "correct"):
        return "yes"
    if words[0] in ("no", "false", "incorrect"):
        return "no"
    return None


def _norm(text: str) -> str:
    words = _WORDS.findall(str(text).lower().replace(",", ""))
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words if w not in ("a", "an", "the"))


def _is_number(text: str) -> bool:
    return bool(_NUMERIC.fullmatch(text.replace(",", "").strip().rstrip("%").strip()))


def _same_text(pred: str, gold: str) -> bool:
    if canonical_key(pred) == canonical_key(gold) and canonical_key(gold):
        return True
    np_, ng = _norm(pred), _norm(gold)
    return bool(ng) and np_ == ng


def _text_match(pred: str, gold: str) -> bool:
    """A gold alternative matches if equal after normalisation, contained as whole words, or math-equivalent."""
    if _same_text(pred, gold):
        return True
    np_, ng = _norm(pred), _norm(gold)
    if ng and re.search(rf"(?<![\w.]){re.escape(ng)}(?![\w.])", np_):
        return True
    if _is_number(gold) or _is_number(np_) or "\\" in gold:
        return answers_equivalent(gold, pred)
    return False


def score_text(pred: str, gold: str) -> tuple[float, str | None]:
    """MM-Vet-style gold: "a<OR>b" (any), "a<AND>b" (each part, partial credit); else one alternative."""
    alternatives = [a.strip() for a in gold.split("<OR>") if a.strip()] or [gold]
    best, which = 0.0, None
    for alt in alternatives:
        parts = [p.strip() for p in alt.split("<AND>") if p.strip()] or [alt]
        got = sum(_text_match(pred, p) for p in parts) / len(parts)
        if got > best:
            best, which = got, alt
    return best, which


def score_response(item: EvalItem, response) -> RuleResult:
    pred, source = extract_final_answer(response)
    if pred is None:
        return RuleResult(0.0, None, source)
    gold = item.answer
    if item.answer_type == "choice":
        letter = to_letter(pred, item.choices)
        if letter is None and item.choices and gold in item.choices:
            # a value answer to a numeric option list: compare it with the gold option's value
            if answers_equivalent(item.choices[gold], pred):
                letter = gold
        return RuleResult(float(letter == gold), pred, source, letter)
    if item.answer_type == "yesno":
        yn = to_yesno(pred)
        return RuleResult(float(yn == gold), pred, source, yn)
    if item.answer_type == "math":
        ok = _same_text(pred, gold) or answers_equivalent(gold, pred)
        return RuleResult(float(ok), pred, source, pred if ok else None)
    score, which = score_text(pred, gold)
    return RuleResult(score, pred, source, which)
