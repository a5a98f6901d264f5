"""Parsing of model outputs: the questioner's tagged question block and the reasoner's final boxed answer.

Both parsers are linear-time on any input (no backtracking regex over the whole text) and return None on bad input.

The questioner's block (`parse_question`), rule by rule:

- A block is six tags in a row: `<type>`, `</type>`, `<question>`, `</question>`, `<answer>`, `</answer>` (case and
  whitespace inside the angle brackets are free). The *last* such run of tags in the text is the output's block;
  text before or after it is ignored, and so is a trailing incomplete block (a truncated second attempt).
- The last block decides alone: if it is malformed, the output is unparsable (None) and an earlier, well-formed
  block is never used instead. Malformed means any of: text other than whitespace between `</type>` and
  `<question>` or between `</question>` and `<answer>`; a type that is not one of QUESTION_TYPES after
  lower-casing and reading `_`/`-`/runs of whitespace as one space; an empty (all-whitespace) question or answer.
- Question and answer are stripped of surrounding whitespace; nothing else is changed.

The reasoner's final answer (`extract_boxed`), rule by rule:

- The final answer is the content of the last `\\boxed{...}` or `\\fbox{...}` opened in the text (so the inner one
  of nested boxes; whitespace allowed between the command and its brace), up to its own closing brace (escaped
  characters `\\{`, `\\}`, `\\\\` never open or close one), stripped.
- A command with no brace after it (`\\boxed 5`, `\\boxedx{1}`) is not a box: an earlier box is the answer.
- A last box that never closes is a truncated response: there is no final answer (None), even when an earlier box
  closed.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

QUESTION_TYPES = ("multiple choice", "numerical", "regression")

# One tag token; whitespace allowed inside the angle brackets. Tags never nest, so a flat token scan is enough.
_TAG = re.compile(r"<\s*(/?)\s*(type|question|answer)\s*>", re.IGNORECASE)
# One letter per tag (upper case opens, lower case closes), so a block is the substring "TtQqAa" of the tag string.
_TAG_CODES = {("", "type"): "T", ("/", "type"): "t", ("", "question"): "Q", ("/", "question"): "q",
              ("", "answer"): "A", ("/", "answer"): "a"}  # fmt: skip
_BLOCK = "TtQqAa"
_TYPE_SEPARATORS = re.compile(r"[\s_\-]+")
# Bracket tokens of a LaTeX group: an escaped character (\{, \}, \\) never opens or closes one.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_OPEN_BRACE = re.compile(r"[ \t\r\n]*\{")


@dataclass(frozen=True)
class QuestionRecord:
    """One parsed questioner output."""

    type: str  # one of QUESTION_TYPES
    question: str
    answer: str


def parse_question(text) -> QuestionRecord | None:
    """Parse `<type>..</type><question>..</question><answer>..</answer>`; the last complete block decides.

    Returns None for non-str input, no complete block, or a malformed last block (text between its tags, an unknown
    type, an empty question or answer); the module docstring gives the rules.
    """
    if not isinstance(text, str):
        return None
    tags = _TAG.findall(text)
    codes = "".join([_TAG_CODES[(slash, name.lower())] for slash, name in tags])
    start = codes.rfind(_BLOCK)  # the last complete run of the six tags: that block decides alone
    if start < 0:
        return None
    window = [(m.start(), m.end()) for m in itertools.islice(_TAG.finditer(text), start, start + len(_BLOCK))]
    # Only whitespace may separate a closing tag from the next opening tag.
    if text[window[1][1] : window[2][0]].strip() or text[window[3][1] : window[4][0]].strip():
        return None
    qtype = _TYPE_SEPARATORS.sub(" ", text[window[0][1] : window[1][0]]).strip().lower()
    question = text[window[2][1] : window[3][0]].strip()
    answer = text[window[4][1] : window[5][0]].strip()
    if qtype not in QUESTION_TYPES or not question or not answer:
        return None
    return QuestionRecord(type=qtype, question=question, answer=answer)


def _last_box_opener(text: str) -> int | None:
    """Index just after the `{` of the last `\\boxed{` / `\\boxed {` / `\\fbox{` in text, or None."""
    # One search cursor per command, so each rfind scans any stretch of text at most once: O(n) overall.
    found = {cmd: text.rfind(cmd) for cmd in _BOX_COMMANDS}
    while True:
        cmd = max(found, key=found.get)
        pos = found[cmd]
        if pos < 0:
            return None
        opener = _OPEN_BRACE.match(text, pos + len(cmd))
        if opener is not None:
            return opener.end()
        found[cmd] = text.rfind(cmd, 0, pos)  # -1 once none is left before pos (pos = 0 included)


def extract_boxed(text) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), nested braces balanced, stripped.

    None for non-str input, no box, or an unbalanced last box (a truncated response has no final answer).
    """
    if not isinstance(text, str):
        return None
    start = _last_box_opener(text)
    if start is None:
        return None
    depth = 1
    for m in _BRACE_TOKEN.finditer(text, start):
        token = m.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return text[start : m.start()].strip()
    return None
