"""The `visplay` command: --help lists every command and each command's --help works; `status` prints the stage table
of a run (done, failed and not-started stages); an unknown recipe lists the recipes there are."""

from pathlib import Path

import pytest

from verl_ext.cli import COMMANDS, main
from verl_ext.evolve.fake_backend import FakeBackend
from verl_ext.evolve.loop import run_evolution
from verl_ext.evolve.manifest import Manifest
from verl_ext.evolve.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("evolve", "status", "eval", "report", "world", "preflight"):
        assert name in COMMANDS and f"  {name} " in out
    assert main([]) == 2
    assert main(["evolv"]) == 2
    assert "unknown command 'evolv'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evolve", "status", "eval", "report", "world"])
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_unknown_recipe_lists_the_recipes(capsys):
    assert main(["evolve", "--recipe", str(ROOT / "recipes" / "doesnotexist.yaml")]) == 2
    err = capsys.readouterr().err
    assert "recipe file not found" in err
    for name in ("tiny", "qwen2.5-vl-7b", "qwen2.5-vl-3b", "mimo-vl-7b"):
        assert name in err


def test_status_prints_the_stage_table(tmp_path, capsys):
    recipe = load_recipe(
        ROOT / "recipes/tiny.yaml",
        overrides=["model.format_warmup=false", "images.max_images=4", "generation.num_questions=8", "iterations=2"],
        env={},
    )
    run = tmp_path / "run"
    run_evolution(recipe, run, FakeBackend(), stop_after="1:filter", log=lambda _m: None)
    manifest = Manifest(run)
    manifest.start("1:reasoner", config={}, config_hash="x", inputs={}, outputs={})
    manifest.fail("1:reasoner", "Traceback ...\nRuntimeError: out of memory")

    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line[:2] in ("0:", "1:", "2:")}
    assert rows["0:images"] == rows["1:questioner"] == rows["1:filter"] == "done"
    assert rows["1:reasoner"] == "failed"
    assert rows["2:reasoner_merge"] == "pending"  # not started: listed from the run's resolved recipe
    assert len(rows) == 1 + 2 * 7
    assert "failed 1:reasoner: RuntimeError: out of memory" in out
    assert "next: 1:reasoner" in out

    assert main(["status", str(tmp_path / "nothing")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
