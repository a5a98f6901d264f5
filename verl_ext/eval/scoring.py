"""Rule scoring of a reasoner response against a benchmark's gold answer, no model involved.

Two steps. (1) The final answer, looked for outside `<think>` first: the last `\\boxed{}`, else a closing phrase
("Final answer: X", "**Answer:** B", "The correct option is B"), else a short last line ("B"); a box inside `<think>`
only when nothing is outside. LaTeX wrappers (`\\text{}`, `\\textbf{}`, `\\mathrm{}`, `$..$`, `**..**`) are unwrapped.
(2) The benchmark's comparison, named by the item's `rule` (docs/eval.md lists which benchmark uses which):

- `mcq`: lmms-eval's option-letter extractor (`official.extract_mcq_answer`), exact letter (MMStar);
- `realworldqa`: that extractor for A-D golds, exact match after normalisation for free answers (RealWorldQA);
- `mmmu`: MMMU's own parsers, option letters with its seeded random guess, open answers as numbers to 2 decimals or
  contained text (MMMU);
- `letter`: an option letter ("B", "(b) 5", "option C") or the option's own text, a value equal to the gold option's
  value (VisNumBench, multiple-choice MathVerse / MATH-Vision: their official scorers use a GPT extractor);
- `yesno`: the first yes/no word of the answer, through LaTeX and negations ("not true" is no) (HallusionBench);
- `math`: the core's math equivalence (math_verify under a hard timeout);
- `text`: `<OR>` alternatives, `<AND>` parts with partial credit (generic free text; MM-Vet is judged only);
- `visplay`: the reference implementation's own extraction and exact match (`protocol_visplay.py`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from verl_ext.visplay import answers_equivalent, canonical_key, extract_boxed

from . import official, protocol_visplay
from .benchmarks import LETTERS, EvalItem

SCORER_VERSION = 2  # part of the rule cache key: bump when a rule changes

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(
    r"(?:final\s+answer|correct\s+answer|best\s+answer|correct\s+option|best\s+option|correct\s+choice|"
    r"\banswer)\s*(?:\*\*|__)?\s*(?:\bis\b|:)\s*(?:\*\*|__)?\s*:?\s*(.+)",
    re.IGNORECASE,
)
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname|emph)\s*\{([^{}]*)\}")
_LAST_LINE_MAX, _LAST_LINE_WORDS = 40, 3  # a longer bare last line is a sentence, not an answer (a cut box: none)


@dataclass(frozen=True)
class RuleResult:
    score: float  # 0..1 (text answers with <AND> parts may score in between)
    extracted: str | None  # the final answer taken from the response
    source: str  # boxed | phrase | last_line | boxed_in_think | none
    normalized: str | None = None  # the option letter / yes-no / matched alternative, when one was found
    guessed: bool = False  # MMMU's official parser guessed a letter (no option named)

    def to_dict(self) -> dict:
        return asdict(self)


def visible_text(response: str) -> str:
    """The response outside `<think>...</think>` (after a lone `</think>`, what follows it)."""
    text = _THINK.sub(" ", response)
    if "</think>" in text.lower():
        text = re.split(r"</think>", text, flags=re.IGNORECASE)[-1]
    return text.strip()


def unwrap_latex(text: str) -> str:
    """`\\text{No}`, `\\textbf{Yes}`, `$B$`, `**B**` -> the text inside (repeatedly, for nested wrappers)."""
    prev = None
    text = text.strip()
    while prev != text:
        prev = text
        text = _LATEX_WRAPPER.sub(r"\1", text).strip()
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("`", "`")):
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)].strip()
    return text


def extract_final_answer(response) -> tuple[str | None, str]:
    """(answer, source), outside <think> first: the last \\boxed{}, else the last "Answer: X" / "The correct option is
    X" line, else a short last line; a box inside <think> only when nothing outside names an answer."""
    if not isinstance(response, str):
        return None, "none"
    visible = visible_text(response)
    boxed = extract_boxed(visible)
    if boxed:
        return unwrap_latex(boxed), "boxed"
    lines = [ln.strip() for ln in visible.splitlines() if ln.strip()]
    for line in reversed(lines):
        m = list(_ANSWER_LINE.finditer(line))
        if m:
            text = unwrap_latex(m[-1].group(1).strip().rstrip(".").strip().strip("*").strip())
            if text:
                return text[:500], "phrase"
    last = lines[-1] if lines else ""
    if len(last) <= _LAST_LINE_MAX and len(last.split()) <= _LAST_LINE_WORDS and "\\boxed" not in last:
        text = unwrap_latex(last.rstrip(".").strip())
        if text:
            return text, "last_line"
    boxed = extract_boxed(response)
    if boxed:
        return unwrap_latex(boxed), "boxed_in_think"
    return None, "none"


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


_YES = {"yes", "true", "correct", "right"}
_NO = {"no", "false", "incorrect", "wrong", "not"}


def to_yesno(pred: str) -> str | None:
    """yes/no from an answer: its first word ("Yes, ...", "No.", "True", "Incorrect"), a negated affirmation ("not
    true", "not correct") as no, "the answer is no"; else the one of yes/no the text holds (None: both, neither)."""
    words = _WORDS.findall(unwrap_latex(pred).lower())
    if not words:
        return None
    first = words[0]
    if first == "not":
        return "no" if len(words) > 1 and words[1] in _YES else None
    if first in _YES:
        return "yes"
    if first in _NO:
        return "no"
    text = " ".join(words)
    m = re.search(r"\banswer (?:is )?(yes|no)\b", text)
    if m:
        return m.group(1)
    found = {w for w in words if w in ("yes", "no")}
    return found.pop() if len(found) == 1 else None


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


# --------------------------------------------------------------------------------------------------
# One rule per benchmark convention
# --------------------------------------------------------------------------------------------------


def _letters(item: EvalItem, default: str) -> list[str]:
    return list(item.choices) if item.choices else list(default)


def _score_mcq(item, pred, text):
    letter = official.extract_mcq_answer(text, _letters(item, "ABCD")) or None
    return RuleResult(float(letter == item.answer), pred, "", letter)


def _score_realworldqa(item, pred, text):
    if item.answer_type == "choice":  # realworldqa_process_results: A-D golds through the shared extractor
        letter = official.extract_mcq_answer(text, ["A", "B", "C", "D"]) or None
        return RuleResult(float(letter == item.answer), pred, "", letter)
    ok = official.realworldqa_open_match(text, item.answer)
    return RuleResult(float(ok), pred, "", text.lower().strip().rstrip(".") if ok else None)


def _score_mmmu(item, pred, text):
    if item.answer_type == "choice":
        letters = _letters(item, LETTERS[:4])
        letter, guessed = official.mmmu_parse_multi_choice(text, letters, dict(item.choices or {}), seed=item.id)
        return RuleResult(float(letter == item.answer), pred, "", letter, guessed)
    golds = [g.strip() for g in item.answer.split("<OR>") if g.strip()]
    preds = official.mmmu_parse_open(text)
    ok = official.mmmu_eval_open(golds, preds)
    return RuleResult(float(ok), pred, "", str(preds[0]) if preds else None)


def _score_letter(item, pred, text):
    letter = to_letter(text, item.choices)
    if letter is None and item.choices and item.answer in item.choices:
        if answers_equivalent(item.choices[item.answer], text):  # a value answer to a numeric option list
            letter = item.answer
    return RuleResult(float(letter == item.answer), pred, "", letter)


def _score_yesno(item, pred, text):
    yn = to_yesno(text)
    return RuleResult(float(yn == item.answer), pred, "", yn)


def _score_math(item, pred, text):
    ok = _same_text(text, item.answer) or answers_equivalent(item.answer, text)
    return RuleResult(float(ok), pred, "", text if ok else None)


def _score_text(item, pred, text):
    score, which = score_text(text, item.answer)
    return RuleResult(score, pred, "", which)


RULES = {
    "mcq": _score_mcq,
    "realworldqa": _score_realworldqa,
    "mmmu": _score_mmmu,
    "letter": _score_letter,
    "yesno": _score_yesno,
    "math": _score_math,
    "text": _score_text,
}
# The official extractors read the whole answer text when no final answer stands out (lmms-eval gives them the whole
# response), and so does yes/no ("No, the bar is 5 units high."); the others need a final answer.
_READS_WHOLE_RESPONSE = {"mcq", "realworldqa", "mmmu", "yesno"}


def score_response(item: EvalItem, response) -> RuleResult:
    """The item's rule applied to the final answer of `response` (see the module docstring)."""
    if item.rule == "visplay":  # the reference's own extraction and exact match (protocol_visplay.py)
        ok, pred = protocol_visplay.rule_correct(response if isinstance(response, str) else "", item.answer)
        return RuleResult(float(ok), pred or None, "reference" if pred else "none", pred or None)
    pred, source = extract_final_answer(response)
    rule = RULES[item.rule]
    if pred is None:
        if item.rule in _READS_WHOLE_RESPONSE and isinstance(response, str) and visible_text(response):
            result = rule(item, None, visible_text(response))
            return RuleResult(result.score, None, "response", result.normalized, result.guessed)
        return RuleResult(0.0, None, source)
    result = rule(item, pred, pred)
    return RuleResult(result.score, pred, source, result.normalized, result.guessed)
