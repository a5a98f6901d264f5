"""The repository documents itself: docs/method.md exists and defines every recipe key; nothing points at a document
outside the repository."""

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


def test_no_reference_to_a_document_outside_the_repository():
    offenders = []
    for path in _files():
        text = path.read_text(errors="replace")
        if "VISPLAY.md" in text or "/work/shared" in text or "../shared" in text:
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
