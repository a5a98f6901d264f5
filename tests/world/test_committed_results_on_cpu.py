"""Every write-up of the controlled world in docs/world/ is computed from the JSON committed beside it: each
`results.md` is what `render_markdown` makes of its `results.json`, each gate's `gate.md` what `render_gate` makes
of its `gate.json`. Hand-edited figures, or a renderer change that was not re-applied to them, fail here."""

import json
from pathlib import Path

import pytest

from verl_ext.world.gate import render_gate
from verl_ext.world.results import load_results, render_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "world"
RESULTS = sorted(p.parent for p in DOCS.rglob("results.json"))
GATES = sorted(p.parent for p in DOCS.rglob("gate.json"))


def test_there_are_committed_results():
    assert RESULTS, f"no results.json under {DOCS}"
    assert GATES, f"no gate.json under {DOCS}"


@pytest.mark.parametrize("folder", RESULTS, ids=lambda p: str(p.relative_to(DOCS)))
def test_results_md_is_rendered_from_results_json(folder):
    results = load_results(folder / "results.json")
    assert (folder / "results.md").read_text() == render_markdown(results)


@pytest.mark.parametrize("folder", GATES, ids=lambda p: str(p.relative_to(DOCS)))
def test_gate_md_is_rendered_from_gate_json(folder):
    gate = json.loads((folder / "gate.json").read_text())
    assert (folder / "gate.md").read_text() == render_gate(gate)


def test_a_changed_figure_is_caught(tmp_path):
    """The check can fail: one digit of a committed results.md changed is not what its JSON renders."""
    folder = RESULTS[0]
    text = (folder / "results.md").read_text()
    first_digit = next(i for i, ch in enumerate(text) if ch.isdigit())
    edited = text[:first_digit] + str((int(text[first_digit]) + 1) % 10) + text[first_digit + 1 :]
    assert edited != render_markdown(load_results(folder / "results.json"))
