"""The Makefile: `make install` creates .venv and every target uses it; PYTHON= overrides; a target run before the
install says what to do; the commands make echoes are one clean line each; the targets call the `visplay` CLI."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(*args, check=True):
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_install_creates_and_uses_a_venv(tmp_path):
    venv = tmp_path / "v"
    lines = _make("-n", "install", f"VENV={venv}").stdout.splitlines()
    assert lines[0] == f"python3 -m venv {venv}"
    assert lines[1] == f"{venv}/bin/python -m pip install -c constraints/cpu.txt torch==2.13.0"
    assert all(line.startswith(f"{venv}/bin/python ") for line in lines[1:])
    lines = _make("-n", "install", "PYTHON=python3", "TORCH_INDEX=https://download.pytorch.org/whl/cpu").stdout
    assert "venv" not in lines
    assert (
        "python3 -m pip install -c constraints/cpu.txt --extra-index-url https://download.pytorch.org/whl/cpu" in lines
    )


def test_targets_use_the_venv_and_say_so_when_it_is_missing(tmp_path):
    venv = tmp_path / "missing"
    out = _make("-n", "evolve", f"VENV={venv}", "DRY_RUN=1", "RUN_DIR=x").stdout.splitlines()
    assert out[-1] == f"{venv}/bin/python -m verl_ext evolve --recipe recipes/tiny.yaml --run-dir x --dry-run"
    proc = _make("evolve", f"VENV={venv}", check=False)
    assert proc.returncode != 0 and "run 'make install' first" in proc.stderr
    for target, expected in [("eval", "verl_ext eval --run runs/tiny"), ("report", "verl_ext report --run runs/tiny"),
                             ("status", "verl_ext status runs/tiny")]:  # fmt: skip
        assert _make("-n", target, "PYTHON=python3").stdout.splitlines()[-1] == f"python3 -m {expected}"


def test_echoed_commands_are_single_clean_lines():
    for args in (("evolve",), ("evolve", "DRY_RUN=1", "RUN_DIR=r", "EVOLVE_ARGS=--set iterations=1"), ("eval",),
                 ("eval", "MODEL=org/model"), ("install",), ("report",), ("world",), ("test",)):  # fmt: skip
        for line in _make("-n", *args, "PYTHON=python3").stdout.splitlines():
            if "command -v" in line or line.startswith(("\t", '"(or')):
                continue  # the silent (@) environment check, which make -n prints too
            assert "\\" not in line and "\t" not in line and "  " not in line, line
