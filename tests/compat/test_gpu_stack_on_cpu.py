"""`make install-gpu` installs one consistent stack: the engine versions verl declares for its own extras (read from
the installed verl's metadata, no network), flash-attn after torch without build isolation."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import setuptools
from packaging.requirements import Requirement

from verl_ext.compat import gpu_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup_kwargs():
    captured = {}
    original = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
    return captured


def test_pins_are_what_verl_declares_for_its_engine_extras():
    declared = gpu_stack.verl_declared_pins()
    assert declared, "verl's metadata declares no pinned extras (is verl installed?)"
    for name, version in gpu_stack.wanted_pins().items():
        assert declared.get(name) == version, f"{name}: we pin {version}, verl declares {declared.get(name)}"


def test_gpu_extra_pins_every_package_exactly(setup_kwargs):
    gpu = [Requirement(r) for r in setup_kwargs["extras_require"]["gpu"]]
    assert {gpu_stack.normalize(r.name) for r in gpu} == {"vllm", "torch", "torchvision", "transformers"}
    for req in gpu:
        (spec,) = req.specifier
        assert spec.operator == "==", f"{req} is not pinned"
        assert spec.version == gpu_stack.verl_declared_pins()[gpu_stack.normalize(req.name)]
    # flash-attn is not in the one-resolve extra: its sdist needs torch at build time
    assert "flash-attn" not in {gpu_stack.normalize(r.name) for r in gpu}


def test_base_requirements_accept_the_pinned_engine_stack(setup_kwargs):
    base = {gpu_stack.normalize(Requirement(r).name): Requirement(r) for r in setup_kwargs["install_requires"]}
    for name, version in gpu_stack.GPU_PINS.items():
        if name in base:
            assert base[name].specifier.contains(version), f"install_requires {base[name]} excludes {name}=={version}"


def test_make_install_gpu_builds_flash_attn_without_isolation_after_the_extra():
    out = subprocess.run(
        ["make", "-n", "install-gpu", f"PYTHON={sys.executable}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    extra = next(i for i, line in enumerate(out) if '".[gpu,test]"' in line)
    flash = next(i for i, line in enumerate(out) if "flash-attn" in line)
    assert flash > extra and "--no-build-isolation" in out[flash]
    assert f'"{gpu_stack.flash_attn_requirement()}"' in out[flash]


def test_declared_pin_parser():
    lines = ['vllm==0.24.0; extra == "vllm"', "torch==2.11.0; extra == 'sglang'", "numpy>=2.0.0", "x; extra == 'vllm'"]
    assert gpu_stack.declared_pins(lines, ("vllm",)) == {"vllm": "0.24.0"}
