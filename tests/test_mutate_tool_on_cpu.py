"""tools/mutate.py (`make mutate`) without running mutmut: the verdict of each mutmut exit code, the equivalent
mutants file's format, and the flags that only make sense on an earlier run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mutate():
    spec = importlib.util.spec_from_file_location("mutate_tool", ROOT / "tools" / "mutate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "code, status",
    [(1, "killed"), (3, "killed"), (0, "survived"), (None, "not run"), (34, "not run"), (-24, "timeout"),
     (36, "timeout"), (5, "no tests"), (33, "no tests"), (-11, "suspicious")],
)  # fmt: skip
def test_each_mutmut_exit_code_has_its_verdict(mutate, code, status):
    assert mutate.status_of(code) == status


def test_equivalent_lines_are_parsed_with_their_reasons(mutate, tmp_path):
    listed = tmp_path / "EQUIVALENT.md"
    listed.write_text(
        "# heading `not_a_mutant`\n"
        "- `pkg.mod.x_f__mutmut_3`: the same value either way.\n"
        "* `pkg.mod.xǁCǁm__mutmut_12` — a reason after a dash\n"
        "- `pkg.mod.x_f` : no mutant number, not an entry\n"
    )
    assert mutate.equivalent_names(listed) == {
        "pkg.mod.x_f__mutmut_3": "the same value either way.",
        "pkg.mod.xǁCǁm__mutmut_12": "a reason after a dash",
    }
    assert mutate.equivalent_names(tmp_path / "missing.md") == {}


def test_naming_mutants_needs_an_earlier_run(mutate, capsys):
    with pytest.raises(SystemExit) as exit_info:
        mutate.main(["--mutants", "pkg.mod.x_f__mutmut_3"])
    assert exit_info.value.code == 2
    assert "--mutants re-tests mutants of an earlier run: it needs --incremental" in capsys.readouterr().err
