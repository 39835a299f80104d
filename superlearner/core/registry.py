"""The open registry of environments: `make`, `register`, `list_envs`.

Built-in envs are imported on first use, so ``import superlearner`` compiles nothing. Third-party
packages add envs through the entry-point group ``superlearner.envs``: each entry point's name is
the env id and its object is a factory (usually the Env class) called with the static options.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
from typing import Any, Callable

from superlearner.core.env import Env
from superlearner.errors import UnknownEnvError, UserError

ENTRY_POINT_GROUP = "superlearner.envs"

_BUILTIN: dict[str, str] = {
    "tic_tac_toe": "superlearner.envs.tic_tac_toe:TicTacToe",
    "connect_four": "superlearner.envs.connect_four:ConnectFour",
    "othello": "superlearner.envs.othello:Othello",
    "kuhn_poker": "superlearner.envs.kuhn_poker:KuhnPoker",
    "maze": "superlearner.envs.maze:Maze",
    "cartpole": "superlearner.envs.cartpole:CartPole",
    "acrobot": "superlearner.envs.acrobot:Acrobot",
    "catch": "superlearner.envs.catch:Catch",
}

# The env an experiment config trains when it names none (`superlearner.config.EnvConfig`).
DEFAULT_ENV = "cartpole"

_registered: dict[str, Callable[..., Env]] = {}
_entry_points: dict[str, Any] | None = None


def register(env_id: str, factory: Callable[..., Env] | str, *, overwrite: bool = False) -> None:
    """Adds an env id. ``factory`` is a callable (``factory(**options) -> Env``) or a
    ``"module:attr"`` string imported on first use."""
    if not isinstance(env_id, str) or not env_id:
        raise UserError(f"env id must be a non-empty string, got {env_id!r}")
    if not overwrite and env_id in _known():
        raise UserError(f"env id {env_id!r} is already registered (pass overwrite=True to replace it)")
    _registered[env_id] = factory
    _register_with_gymnasium(env_id)


def list_envs() -> list[str]:
    """All known env ids: built-in, registered in this process, and from entry points."""
    return sorted(_known())


def make(env_id: str, **options: Any) -> Env:
    """Builds the env ``env_id`` with its static (shape-defining) options.

    Raises UnknownEnvError for an unknown id (listing the known ids and the closest match) and
    UserError for an option the env does not accept or a value of the wrong type or range.
    """
    factory = _resolve(env_id)
    _check_option_names(env_id, factory, options)
    env = factory(**options)
    if not isinstance(env, Env):
        raise UserError(f"the factory of {env_id!r} returned {type(env).__name__}, not a superlearner Env")
    return env


def env_description(env_id: str) -> str:
    """The one-line description of an env, read from its class without building it."""
    factory = _resolve(env_id)
    text = getattr(factory, "description", "") or (inspect.getdoc(factory) or "").split("\n")[0]
    return text


def envs_declaring(name: str) -> list[str]:
    """The known env ids whose Env class declares the optional ``name`` (an attribute of `Env`
    that is None unless the env declares it, such as ``"exploitability"`` or
    ``"perfect_player"``), read from the classes without building the envs; for messages that
    say which envs offer something. Factories that are not classes, or fail to load, are left out.
    """
    found = []
    for env_id in list_envs():
        try:
            factory = _resolve(env_id)
        except Exception:  # noqa: BLE001 - a broken third-party entry point hides no other env
            continue
        if inspect.isclass(factory) and getattr(factory, name, None) is not None:
            found.append(env_id)
    return found


def _known() -> set[str]:
    return set(_BUILTIN) | set(_registered) | set(_load_entry_points())


def _load_entry_points() -> dict[str, Any]:
    global _entry_points
    if _entry_points is None:
        _entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return _entry_points


def _resolve(env_id: str) -> Callable[..., Env]:
    if env_id in _registered:
        target = _registered[env_id]
    elif env_id in _BUILTIN:
        target = _BUILTIN[env_id]
    elif env_id in _load_entry_points():
        target = _load_entry_points()[env_id].load()
    else:
        known = list_envs()
        close = difflib.get_close_matches(str(env_id), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownEnvError(f"unknown env id {env_id!r}{hint} Known ids: {', '.join(known)}")
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
    return target


def _check_option_names(env_id: str, factory: Callable[..., Env], options: dict[str, Any]) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for name in options:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listed = ", ".join(accepted) if accepted else "none"
            raise UserError(f"{env_id}: unknown option {name!r}{hint} Accepted options: {listed}")


# Called with every env id `register` adds (the Gymnasium bridge hooks in here when it is imported,
# which `import superlearner` does), so the registry needs to know nothing of who listens.
_register_hooks: list[Callable[[str], None]] = []


def add_register_hook(hook: Callable[[str], None]) -> None:
    """Calls ``hook(env_id)`` for every env id registered from now on."""
    if hook not in _register_hooks:
        _register_hooks.append(hook)


def _register_with_gymnasium(env_id: str) -> None:
    for hook in _register_hooks:
        hook(env_id)
