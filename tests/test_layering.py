"""The import layering of docs/architecture.md, checked on the source: no import cycle between modules, and no
module imports a higher layer. Imports are read with ``ast`` (every runtime import, also those inside functions;
``if TYPE_CHECKING:`` blocks are left out because they never run)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("envs", "rllib_ext", "tuning", "warmroute")
LAYERS = (
    ("envs.errors",),
    ("envs",),
    ("warmroute", "warmroute.artifacts"),
    ("rllib_ext",),
    ("tuning",),
    ("warmroute.pipeline", "warmroute.report", "warmroute.deploy", "warmroute.serve", "warmroute.realengine"),
    ("warmroute.cli",),
)
"""Bottom to top; a module belongs to the layer of its longest matching prefix and may import its own layer or lower."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names imported at run time (``from a import b`` gives ``a.b`` and ``a``; the caller keeps modules)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports at run time."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = _runtime_imports(tree, name, path.name == "__init__.py")
        graph[name] = {target for target in imported if target in modules and target != name}
    return graph


def layer_of(module: str) -> int:
    best, depth = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    assert best >= 0, f"{module} is in no layer of tests/test_layering.py"
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_there_is_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph()) == []


def test_the_error_type_and_every_package_init_import_only_the_standard_library() -> None:
    # Importing envs.errors runs envs/__init__.py first, so both stay free of vidur, gymnasium, Ray and torch; and
    # with no __init__.py importing project code, the graph above holds every project module an import runs.
    for path in [ROOT / "envs" / "errors.py", *(p for package in PACKAGES for p in (ROOT / package).rglob("__init__.py"))]:
        imported = _runtime_imports(ast.parse(path.read_text()), _module_name(path), path.name == "__init__.py")
        assert [name for name in imported if name.split(".")[0] not in sys.stdlib_module_names] == [], path


def test_the_layer_check_sees_a_cycle_and_skips_type_checking_imports() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\ndef f():\n    import y\n"
    assert _runtime_imports(ast.parse(source), "m", False) == ["typing", "typing.TYPE_CHECKING", "y"]


def test_no_folder_holds_more_than_a_third_of_the_code_unless_the_architecture_doc_says_why() -> None:
    # The project's code: the four packages plus benchmarks/ and scripts/ (tests/ not counted).
    folders = (*PACKAGES, "benchmarks", "scripts")
    lines = {p: sum(len(f.read_text().splitlines()) for f in (ROOT / p).rglob("*.py")) for p in folders}
    doc = (ROOT / "docs" / "architecture.md").read_text()
    large = [p for p, n in lines.items() if n > sum(lines.values()) / 3]
    assert all(f"`{p}/` may hold more than a third" in doc for p in large), (lines, large)
