"""Facts about a game live in its env file: no module of the package outside ``envs/`` tests or
looks up a built-in env by its id (``if env.id == "kuhn_poker"``, ``{"tic_tac_toe": ...}``,
``frozenset({"othello"})``); it reads what the env declares instead (``perfect_information``,
``heuristic``, ``perfect_player``, ``exploitability``, ... on `superlearner.core.env.Env`).

Read with `ast`: every string constant of the package's code that equals a built-in env id is a
finding (a comparison, a dict key, a call's argument, a set or tuple of ids), except docstrings
and the places listed in `ALLOWED`."""

from __future__ import annotations

import ast
from pathlib import Path

from superlearner.core import registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "superlearner"

# (file relative to the repository, name of the assignment whose value may hold env ids): why.
ALLOWED = {
    # The registry's table of built-in ids and the modules that define them.
    ("superlearner/core/registry.py", "_BUILTIN"),
    # The env a config trains when it names none: the registry's, beside its table.
    ("superlearner/core/registry.py", "DEFAULT_ENV"),
}


def builtin_ids() -> set[str]:
    return set(registry._BUILTIN)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _allowed_values(tree: ast.AST, relative: str) -> set[int]:
    """The constants inside the values of the assignments `ALLOWED` names in this file."""
    names = {name for path, name in ALLOWED if path == relative}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        else:
            continue
        if node.value is not None and names.intersection(targets):
            found |= {id(n) for n in ast.walk(node.value)}
    return found


def env_ids_in(source: str, relative: str, ids: set[str]) -> list[str]:
    """``["path:line: 'id'"]`` for every string constant of ``source`` equal to one of ``ids``."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | _allowed_values(tree, relative)
    return [
        f"{relative}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ids and id(node) not in skip
    ]


def test_no_module_of_the_package_names_a_builtin_env_id():
    ids = builtin_ids()
    assert {"tic_tac_toe", "kuhn_poker", "connect_four", "othello"} <= ids
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        found += env_ids_in(path.read_text(), relative, ids)
    assert not found, (
        "built-in env ids used in the package's code (declare the fact on the env class in envs/ "
        "and read the declaration instead):\n" + "\n".join(found)
    )


def test_the_scan_finds_comparisons_keys_calls_and_sets_but_not_docstrings():
    source = '''
"""Module docstring naming "tic_tac_toe" is fine, and so is this: tic_tac_toe."""

HIDDEN = frozenset({"kuhn_poker"})
TABLE = {"othello": 1}
_BUILTIN = {"maze": "superlearner.envs.maze:Maze"}


def f(env):
    """tic_tac_toe"""
    if env.id == "connect_four":
        return make("cartpole")
    return "a tic_tac_toe game"
'''
    found = env_ids_in(source, "superlearner/probe.py", builtin_ids())
    assert sorted(line.split(": ", 1)[1] for line in found) == sorted(
        ["'kuhn_poker'", "'othello'", "'maze'", "'connect_four'", "'cartpole'"]
    )
    # In the registry, its own table is allowed, and nothing else.
    found = env_ids_in(source, "superlearner/core/registry.py", builtin_ids())
    assert sorted(line.split(": ", 1)[1] for line in found) == sorted(
        ["'kuhn_poker'", "'othello'", "'connect_four'", "'cartpole'"]
    )
