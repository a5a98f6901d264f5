"""The questioner and reasoner prompts, rendered from Jinja files.

Pure (jinja2 only): the verl datasets, the questioner reward manager and the offline generation code all
render the same text from here. A config key may point to a user's own template file; null means the
packaged default under `verl_ext/prompts/`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jinja2

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
DEFAULT_QUESTIONER_TEMPLATE = PROMPT_DIR / "questioner.jinja"
DEFAULT_REASONER_TEMPLATE = PROMPT_DIR / "reasoner.jinja"
ANSWER_ONLY_REASONER_TEMPLATE = PROMPT_DIR / "reasoner_answer_only.jinja"

# How the frozen reasoner S_{t-1} is asked inside the questioner's reward (recipe questioner.reasoner_prompt):
# answer_only as the reference implementation (a system prompt asking for the final answer only, in \boxed{}; the
# question type in the user text), or step_by_step, the trained reasoner's own <think> prompt (prompts.reasoner).
FROZEN_REASONER_PROMPTS = ("answer_only", "step_by_step")
ANSWER_ONLY_SYSTEM_PROMPT = (
    "You answer questions about images. Give only the final answer, inside \\boxed{}, with no explanation "
    "and no reasoning steps."
)

# StrictUndefined: a template that names a variable we do not pass fails loudly instead of rendering "".
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)


def resolve_template_path(path: str | os.PathLike | None, default: Path) -> Path:
    """The template file to use: `path` (with `~` expanded) or the packaged default when empty."""
    if path is None or str(path).strip() in ("", "null", "None"):
        return default
    resolved = Path(os.path.expanduser(str(path)))
    if not resolved.is_file():
        raise FileNotFoundError(
            f"prompt template not found: {resolved} (set it to a Jinja file, or null for the default)"
        )
    return resolved


@functools.lru_cache(maxsize=32)
def _load(path: str) -> jinja2.Template:
    return _ENV.from_string(Path(path).read_text(encoding="utf-8"))


def load_template(path: str | os.PathLike | None, default: Path) -> jinja2.Template:
    return _load(str(resolve_template_path(path, default)))


def render_questioner_prompt(template: str | os.PathLike | None = None, **variables) -> str:
    """The questioner's instruction for one image (the image itself goes in the chat message)."""
    return load_template(template, DEFAULT_QUESTIONER_TEMPLATE).render(**variables).strip()


def render_reasoner_prompt(
    question: str, template: str | os.PathLike | None = None, question_type: str | None = None
) -> str:
    """The reasoner's instruction for one question. Templates see `content` (EasyR1's name), `question`
    (the same text) and `question_type` (may be empty)."""
    question = "" if question is None else str(question)
    return (
        load_template(template, DEFAULT_REASONER_TEMPLATE)
        .render(content=question, question=question, question_type=question_type or "")
        .strip()
    )


def frozen_reasoner_messages(
    question: str, question_type: str | None, style: str, template: str | os.PathLike | None = None
) -> tuple[str | None, str]:
    """(system prompt or None, user text) with which the frozen reasoner answers a generated question in the
    questioner's reward. `template` (prompts.reasoner) applies to step_by_step only."""
    if style == "step_by_step":
        return None, render_reasoner_prompt(question, template, question_type)
    if style == "answer_only":
        user = render_reasoner_prompt(question, ANSWER_ONLY_REASONER_TEMPLATE, question_type)
        return ANSWER_ONLY_SYSTEM_PROMPT, user
    raise ValueError(f"frozen reasoner prompt must be one of {FROZEN_REASONER_PROMPTS}, got {style!r}")
