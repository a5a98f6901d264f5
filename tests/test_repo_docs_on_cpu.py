"""The repository documents itself: docs/method.md exists and defines every recipe key; nothing points at a document
outside the repository; the install's constraints carry no local version labels."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from verl_ext.evolve.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "method.md"
SCANNED = ["README.md", "ARCHITECTURE.md", "Makefile", "setup.py", "recipes", "verl_ext", "docs", "constraints", ".ci"]
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".txt", ".jinja", ".sh", ".sbatch", ""}


def _files():
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)


def _recipe_keys(cls=Recipe, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f.metadata.get("key", f.name)
        path = f"{prefix}{key}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys.extend(_recipe_keys(hint, path + "."))
        else:
            keys.append(path)
    return keys


MACHINE_SHARED = "/".join(("", "work", "shared"))  # joined here so that this file itself names no machine path


def test_no_reference_to_a_document_outside_the_repository():
    offenders = []
    for path in _files():
        text = path.read_text(errors="replace")
        if "VISPLAY.md" in text or MACHINE_SHARED in text or "../shared" in text:
            offenders.append(path.relative_to(ROOT).as_posix())
    assert METHOD.is_file()
    assert not offenders, f"these files point at a document that is not in the repository: {offenders}"


def test_method_doc_defines_every_recipe_key():
    lines = METHOD.read_text().splitlines()
    keys = _recipe_keys()
    assert len(keys) > 60 and "questioner.lambda" in keys and "questioner.grpo.kl_coef" in keys
    missing = []
    for key in keys:
        parts = key.split(".")
        leaf = parts[-1]
        prefixes = [f"`{parts[0]}."] if len(parts) > 1 else ["`"]
        if "grpo" in parts:
            prefixes.append("`*.grpo.")
        word = re.compile(rf"(?<![\w]){re.escape(leaf)}(?![\w])")
        if not any(any(p in line for p in prefixes) and word.search(line) for line in lines if line.startswith("|")):
            missing.append(key)
    assert not missing, f"docs/method.md has no table row for these recipe keys: {missing}"


def test_cpu_constraints_resolve_on_pypi():
    """A local version label (`torch==2.13.0+cpu`) exists on no index but PyTorch's own: pip on a machine that
    reaches only PyPI fails with ResolutionImpossible. The CPU wheel index is opt-in: make install TORCH_INDEX=...
    (constraints/resolve.sh, run by CI, proves the whole resolution against PyPI alone)."""
    pins = {}
    for line in (ROOT / "constraints" / "cpu.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints/cpu.txt: {line!r} is not pinned with =="
            pins[name.lower()] = version
    labelled = {name: v for name, v in pins.items() if "+" in v}
    assert not labelled, f"constraints/cpu.txt pins local versions that PyPI does not have: {labelled}"
    assert "torch" in pins and "torchvision" in pins
