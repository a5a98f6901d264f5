"""The package's layers (ARCHITECTURE.md): imports between first-level units of `verl_ext` point one way, form no
cycle, and the test-support package is never imported by the product. Imports inside functions count; imports under
`if TYPE_CHECKING:` do not (they never run)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "verl_ext"

# Lower numbers sit lower; a unit may import its own layer or a lower one, never a higher one. A new first-level
# module or package must be placed here (and in ARCHITECTURE.md) before the suite passes.
LAYERS = {
    # 0: pure core and shared utilities (no verl, no torch at import)
    "visplay": 0,
    "compat": 0,
    "atomic_io": 0,
    "image_io": 0,
    "prompts": 0,
    "openai_client": 0,
    "__init__": 0,
    # 1: the embedded tiny default (model, images, fixtures); test support (tests and test tools only)
    "tiny": 1,
    "testing": 1,
    # 2: engines and framework glue: inference engines, verl plugins, the TRL local backend
    "inference": 2,
    "plugins": 2,
    "local": 2,
    # 3: the evolution loop
    "evolve": 3,
    # 4: applications on runs: evaluation and the report
    "eval": 4,
    "report": 4,
    # 5: the controlled-world experiment (an application of the loop, the report and the local backend)
    "world": 5,
    # 6: the command line
    "cli": 6,
    "__main__": 6,
}
TEST_SUPPORT = "testing"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _unit_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name == "__init__.py" else rel.stem


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_lines(tree)
    package_parts = ["verl_ext", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(module)
            found += [f"{module}.{alias.name}" for alias in node.names]
    return found


def import_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the files (relative to verl_ext/) that import it."""
    units = {
        p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in PACKAGE.rglob("*.py"):
        source = _unit_of(path)
        for module in _imported_modules(path):
            parts = module.split(".")
            if parts[0] != "verl_ext" or len(parts) < 2 or parts[1] not in units or parts[1] == source:
                continue
            graph[source][parts[1]].add(str(path.relative_to(PACKAGE)))
    return graph


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize(
    ("edges", "has_cycle"),
    [
        ({"a": {"b"}, "b": {"c"}}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"b", "c"}, "c": {"b"}, "b": {"d"}, "d": {"c"}}, True),
        ({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}}, False),
    ],
)
def test_find_cycle_finds_what_is_there(edges, has_cycle):
    cycle = find_cycle(edges)
    assert (cycle is not None) == has_cycle
    if cycle:
        assert cycle[0] == cycle[-1] and all(b in edges[a] for a, b in zip(cycle, cycle[1:], strict=False))


def test_the_graph_sees_imports_inside_functions(tmp_path):
    # The loop reaches the inference package from inside a method (local_backend) and at module level (backend).
    files = import_graph()["evolve"]["inference"]
    assert {"evolve/backend.py", "evolve/local_backend.py"} <= files


def test_no_import_cycle_between_units():
    graph = import_graph()
    cycle = find_cycle({unit: set(targets) for unit, targets in graph.items()})
    assert cycle is None, (
        "import cycle: "
        + " -> ".join(cycle)
        + "".join(f"\n  {a} -> {b}: {sorted(graph[a][b])}" for a, b in zip(cycle, cycle[1:], strict=False))
    )


def test_every_unit_has_a_layer_and_imports_point_down():
    graph = import_graph()
    units = {
        p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    assert units <= set(LAYERS), f"place these in LAYERS and ARCHITECTURE.md: {sorted(units - set(LAYERS))}"
    upward = [
        f"{a} (layer {LAYERS[a]}) -> {b} (layer {LAYERS[b]}): {sorted(files)}"
        for a, targets in graph.items()
        for b, files in targets.items()
        if LAYERS[b] > LAYERS[a]
    ]
    assert not upward, "imports that point up:\n  " + "\n  ".join(upward)


def test_test_support_is_imported_only_by_itself():
    graph = import_graph()
    users = {a: sorted(files) for a, targets in graph.items() for b, files in targets.items() if b == TEST_SUPPORT}
    assert not users, f"product code imports verl_ext.{TEST_SUPPORT}: {users}"
