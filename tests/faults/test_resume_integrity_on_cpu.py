"""Resume never builds on damaged outputs: a truncated, grown, deleted or bit-flipped file inside a finished stage
stops the run with the stage, the file and the command that redoes it; a corrupt manifest or marker is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from verl_ext.cli import evolve as cli_evolve
from verl_ext.evolve.fake_backend import FakeBackend
from verl_ext.evolve.integrity import CorruptOutputError, sha256_file, verify_output
from verl_ext.evolve.loop import run_evolution
from verl_ext.evolve.manifest import STAGE_MARKER, Manifest
from verl_ext.evolve.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ["model.format_warmup=false", "images.max_images=4", "generation.num_questions=12", "iterations=1"]
TRAIN = "iter_1/filter/train.parquet"


def _recipe():
    return load_recipe(ROOT / "recipes/tiny.yaml", overrides=OVERRIDES, env={})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    run_evolution(_recipe(), run, FakeBackend(), log=lambda _m: None)
    return run


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def test_markers_record_size_and_hash_of_every_file(finished):
    marker = json.loads((finished / "iter_1/filter" / STAGE_MARKER).read_text())
    assert set(marker["files"]) == set(marker["sha256"]) and "train.parquet" in marker["files"]
    assert marker["sha256"]["train.parquet"] == sha256_file(finished / TRAIN)
    assert verify_output("1:filter", finished / "iter_1/filter", STAGE_MARKER, full=True) == len(marker["files"])


@pytest.mark.parametrize("damage", ["truncate", "grow", "delete"])
def test_size_changes_are_caught_on_every_resume(run, damage):
    path = run / TRAIN
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "grow":
        path.write_bytes(data + b"\0")
    else:
        path.unlink()
    backend = FakeBackend()
    with pytest.raises(CorruptOutputError, match=f"stage 1:filter: {path}") as info:
        run_evolution(_recipe(), run, backend, log=lambda _m: None)
    assert info.value.stage == "1:filter" and backend.calls == []  # nothing ran on top of it


def test_a_flipped_bit_is_caught_by_verify(run):
    path = run / TRAIN
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    run_evolution(_recipe(), run, FakeBackend(), log=lambda _m: None)  # same size: the stat check passes
    with pytest.raises(CorruptOutputError, match="changed since the stage wrote it"):
        run_evolution(_recipe(), run, FakeBackend(), log=lambda _m: None, verify=True)


def test_the_cli_names_the_command_that_redoes_the_stage(run, capsys, monkeypatch):
    (run / TRAIN).write_bytes(b"")
    recipe = str(ROOT / "recipes/tiny.yaml")
    monkeypatch.setattr("verl_ext.cli.run_evolution", _fake_run_evolution)
    sets = [x for o in OVERRIDES for x in ("--set", o)]
    assert cli_evolve(["--recipe", recipe, "--run-dir", str(run), *sets]) == 2
    err = capsys.readouterr().err
    assert f"error: stage 1:filter: {run / TRAIN} has 0 bytes" in err
    assert f"--run-dir {run} --force-from 1:filter" in err and "python -m verl_ext evolve --recipe" in err


def _fake_run_evolution(recipe, run_dir, **kwargs):  # the CLI's call, on the fake backend
    return run_evolution(recipe, run_dir, FakeBackend(), log=lambda _m: None, verify=kwargs.get("verify", False))


def test_corrupt_manifest_and_marker_are_named(run):
    marker = run / "iter_1/filter" / STAGE_MARKER
    marker.write_text("{not json")
    with pytest.raises(CorruptOutputError, match=f"its marker {marker} is not readable JSON"):
        run_evolution(_recipe(), run, FakeBackend(), log=lambda _m: None)
    (run / "manifest.json").write_text('{"version": 1, "stages": ')
    with pytest.raises(RuntimeError, match="manifest.json: the run's manifest is not readable JSON"):
        Manifest(run)


def test_a_stage_failure_is_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    def crash(recipe, run_dir, **kwargs):
        return run_evolution(recipe, run_dir, FakeBackend(crash_at="1:generate"), log=lambda _m: None)

    monkeypatch.setattr("verl_ext.cli.run_evolution", crash)
    argv = ["--recipe", str(ROOT / "recipes/tiny.yaml"), "--run-dir", str(tmp_path / "run")]
    argv += [x for o in OVERRIDES for x in ("--set", o)]
    assert cli_evolve(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: InjectedCrash: injected crash in 1:generate") and "Traceback" not in err
    assert f"traceback is in {tmp_path / 'run' / 'manifest.json'}" in err
    with pytest.raises(RuntimeError, match="injected crash"):
        cli_evolve([*argv, "--debug"])
