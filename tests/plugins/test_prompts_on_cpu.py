"""The questioner/reasoner prompt templates: defaults, user files, and the shipped copies staying identical."""

from pathlib import Path

import jinja2
import pytest

from verl_ext import prompts
from verl_ext.visplay import QuestionRecord, parse_question

REPO = Path(__file__).resolve().parents[2]


def test_default_questioner_prompt_names_the_parsed_format():
    text = prompts.render_questioner_prompt()
    assert "<type>" in text and "<question>" in text and "<answer>" in text
    for qtype in ("multiple choice", "numerical", "regression"):
        assert qtype in text
    # the format line of the prompt, filled in, is what parse_question accepts
    example = "<type>numerical</type><question>How many circles?</question><answer>3</answer>"
    assert parse_question(example) == QuestionRecord("numerical", "How many circles?", "3")


def test_reasoner_prompt_wraps_the_question_and_asks_for_a_box():
    text = prompts.render_reasoner_prompt("  How many red squares?  ")
    assert text.startswith("How many red squares?")
    assert "\\boxed{}" in text


def test_user_template_and_errors(tmp_path):
    template = tmp_path / "mine.jinja"
    template.write_text("[{{ question_type }}] {{ question }}\n")
    assert prompts.render_reasoner_prompt("Q?", template, "numerical") == "[numerical] Q?"
    assert prompts.render_reasoner_prompt("Q?", str(template)) == "[] Q?"
    assert prompts.render_reasoner_prompt("Q?", "null") == prompts.render_reasoner_prompt("Q?")
    with pytest.raises(FileNotFoundError, match="prompt template not found"):
        prompts.render_questioner_prompt(tmp_path / "absent.jinja")
    bad = tmp_path / "bad.jinja"
    bad.write_text("{{ not_a_variable }}")
    with pytest.raises(jinja2.UndefinedError):
        prompts.render_reasoner_prompt("Q?", bad)


@pytest.mark.parametrize("name", ["questioner.jinja", "reasoner.jinja"])
def test_example_templates_are_the_packaged_ones(name):
    packaged = (prompts.PROMPT_DIR / name).read_text()
    assert (REPO / "examples" / "visplay" / "prompts" / name).read_text() == packaged
