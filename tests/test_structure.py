"""The package's shape: imports only go down the layers drawn in docs/architecture.md, no import
circle, and no function longer than 150 lines.

Imports are read with `ast` from every module of the package, those inside functions included
(a lazy import is still a dependency)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "superlearner"
ENVS = ROOT / "envs"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
MAX_FUNCTION_LINES = 150


def modules() -> dict[str, Path]:
    """``{dotted module name: file}`` of the package (``envs/`` is ``superlearner.envs``)."""
    found = {}
    for base, prefix in ((PACKAGE, "superlearner"), (ENVS, "superlearner.envs")):
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((prefix, *parts))] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (at any depth of its code)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                # ``from package import module`` depends on the module; ``from module import name``
                # on the module.
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def layers() -> list[tuple[int, str]]:
    """``[(layer, module prefix)]`` from the ``layers`` block of docs/architecture.md."""
    block = re.search(r"```layers\n(.*?)```", ARCHITECTURE.read_text(), re.S)
    assert block, "docs/architecture.md must hold a ```layers block"
    table = []
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            level, prefixes = line.split(":", 1)
            table += [(int(level), prefix.strip()) for prefix in prefixes.split(",") if prefix.strip()]
    return table


def layer_of(module: str, table: list[tuple[int, str]]) -> int:
    matches = [(len(prefix), level) for level, prefix in table if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer of docs/architecture.md"
    return max(matches)[1]


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def test_every_module_has_a_layer_and_imports_only_go_down():
    table = layers()
    edges = graph()
    upward = []
    for module, targets in edges.items():
        here = layer_of(module, table)
        for target in targets:
            if target == "superlearner":  # the package's public surface: only its own modules may use it
                upward.append(f"{module} -> superlearner (import the module that defines the name)")
                continue
            if layer_of(target, table) > here:
                upward.append(f"{module} (layer {here}) -> {target} (layer {layer_of(target, table)})")
    assert not upward, "imports going up the layers:\n" + "\n".join(sorted(upward))


def test_there_is_no_import_circle():
    edges = graph()
    # Tarjan's strongly connected components: any component of two or more modules is a circle.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
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
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not circles, f"import circles: {circles}"


def test_the_checker_finds_an_upward_import_and_a_circle():
    table = [(0, "superlearner.a"), (1, "superlearner.b")]
    assert layer_of("superlearner.b.c", table) == 1 and layer_of("superlearner.a", table) == 0
    known = {"superlearner.a", "superlearner.b"}
    source = Path(__file__).parent / "_structure_probe.py"
    try:
        source.write_text("def f():\n    from superlearner.b import x\n")
        assert imports_of("superlearner.a", source, known) == {"superlearner.b"}
    finally:
        source.unlink()


def test_no_function_in_the_package_is_longer_than_150_lines():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, "functions over 150 lines:\n" + "\n".join(long)
