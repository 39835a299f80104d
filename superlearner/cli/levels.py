"""Held-out and sampled levels of levelled envs: solve rates on the env's named levels, and the
conditional value at risk (CVaR) over sampled levels, re-measured so the selection of the worst
levels does not bias it (``superlearner eval --levels``); and pictures of levels, one SVG for a
batch of levels or for a curriculum run's galleries, drawn by the env's level space (a maze, or
a game's start position as a board).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.errors import UserError


CVAR_FRACTIONS = (0.01, 0.1)


def parse_levels_spec(spec: str) -> tuple[str, int | None]:
    """``"named"`` -> ("named", None); ``"sampled:N"`` -> ("sampled", N)."""
    text = spec.strip()
    if text == "named":
        return "named", None
    name, _, rest = text.partition(":")
    if name == "sampled" and rest.strip().isdigit() and int(rest) >= 1:
        return "sampled", int(rest)
    raise UserError(f"--levels {spec!r}: expected 'named' (the held-out levels) or 'sampled:N' with N >= 1")


def _stack(levels: list) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *levels)


def evaluate_named_levels(env, act_fn, key: jax.Array, levels: dict, episodes: int) -> dict:
    """Solve rates (return > 0) on named levels, ``episodes`` episodes each.

    All levels run in one batched program (``len(levels) * episodes`` episodes, one level per
    episode), so it compiles once.

    Args:
      env: a single-agent env whose params are levels.
      act_fn: ``act_fn(observation[B, ...], mask[B, A], key) -> action[B]``.
      key: consumed.
      levels: ``{name: level}``, each an unbatched level.
      episodes: episodes per level.

    Returns:
      ``{"levels": {name: {"solve_rate", "mean_return"}}, "mean_solve_rate", "mean_return",
      "episodes"}``; the means are over levels.
    """
    from superlearner.core.evaluate import run_episodes

    names = list(levels)
    batch = jax.tree.map(lambda x: jnp.repeat(x, episodes, axis=0), _stack([levels[n] for n in names]))
    returns = run_episodes(env, act_fn, key, len(names) * episodes, env_params=batch, params_batched=True)
    returns = np.asarray(returns, np.float64).reshape(len(names), episodes)
    solved = (returns > 0).mean(axis=1)
    mean_return = returns.mean(axis=1)
    return {
        "levels": {
            name: {"solve_rate": float(s), "mean_return": float(r)} for name, s, r in zip(names, solved, mean_return)
        },
        "mean_solve_rate": float(solved.mean()),
        "mean_return": float(mean_return.mean()),
        "episodes": int(episodes),
    }


def sample_levels(env, key: jax.Array, num_levels: int) -> Any:
    """``num_levels`` levels (leading axis), solvable where the level space can promise it."""
    space = env.level_space
    sample = getattr(space, "sample_solvable_level", None) or space.sample
    return jax.jit(jax.vmap(sample))(jax.random.split(key, num_levels))


def evaluate_sampled_levels(env, act_fn, key: jax.Array, levels: Any, fractions=CVAR_FRACTIONS) -> dict:
    """Mean solve rate and return over sampled levels, and the CVaR of the worst levels.

    Every level is played twice, independently (measurements A and B, one batched program).
    The worst ``fraction`` of the levels is chosen by A's returns; their CVaR is the mean of
    B's returns on them. Choosing and measuring with the same returns would bias the estimate
    low (the chosen levels include the unlucky episodes of easy levels); the second
    measurement removes that bias.

    Args:
      env: a single-agent env whose params are levels.
      act_fn: ``act_fn(observation[B, ...], mask[B, A], key) -> action[B]``.
      key: consumed.
      levels: a batch of N levels (leading axis N).
      fractions: the CVaR levels, e.g. (0.01, 0.1); each chooses ``ceil(fraction * N)`` levels.

    Returns:
      ``num_levels``, ``mean_solve_rate`` and ``mean_return`` (over both measurements of every
      level), and ``cvar``: per fraction (keyed ``"1%"``, ``"10%"``) ``return`` (B's mean
      return on the chosen levels), ``solve_rate`` (B's) and ``num_levels``; ``worst_level``,
      the index of the worst level by A.
    """
    from superlearner.core.evaluate import run_episodes

    num = int(jax.tree.leaves(levels)[0].shape[0])
    both = jax.tree.map(lambda x: jnp.concatenate([x, x]), levels)
    returns = run_episodes(env, act_fn, key, 2 * num, env_params=both, params_batched=True)
    returns = np.asarray(returns, np.float64)
    returns_a, returns_b = returns[:num], returns[num:]
    order = np.argsort(returns_a, kind="stable")
    cvar = {}
    for fraction in fractions:
        count = max(1, math.ceil(fraction * num))
        chosen = returns_b[order[:count]]
        cvar[f"{fraction * 100:g}%"] = {
            "return": float(chosen.mean()),
            "solve_rate": float((chosen > 0).mean()),
            "num_levels": int(count),
        }
    return {
        "num_levels": num,
        "mean_solve_rate": float((returns > 0).mean()),
        "mean_return": float(returns.mean()),
        "cvar": cvar,
        "worst_level": int(order[0]),
    }


def has_levels(env) -> bool:
    return getattr(env, "level_space", None) is not None


def levels_svg(env, levels: Any, captions: list[str] | None = None, columns: int = 4, title: str = "") -> str:
    """One SVG picture of a batch of levels (leading axis), each drawn by ``env.level_space``'s
    ``level_to_svg`` and captioned (by default with its index)."""
    from superlearner.cli.svg import grid_svg

    space = env.level_space
    num = int(jax.tree.leaves(levels)[0].shape[0])
    pictures = [space.level_to_svg(jax.tree.map(lambda x: np.asarray(x[i]), levels)) for i in range(num)]
    captions = [str(i) for i in range(num)] if captions is None else captions
    return grid_svg(pictures, captions, max(1, min(columns, num)), title)


def gallery_svg(env, galleries: list[dict], max_rows: int = 6, title: str = "buffer levels") -> str:
    """A curriculum run's level galleries (`superlearner.curriculum.probe.read_galleries`) as one
    SVG: a row per measurement (up to ``max_rows``, evenly spread over the run), its
    highest-scored levels left to right, each drawn from its text form by ``env.level_space``
    and captioned with the iteration and its score."""
    from superlearner.cli.svg import grid_svg

    galleries = [g for g in galleries if g["levels"]]
    if not galleries:
        raise UserError("the run has no level gallery yet (set curriculum.probe_every_chunks and curriculum.probe_gallery)")
    space = env.level_space
    chosen = np.unique(np.linspace(0, len(galleries) - 1, min(max_rows, len(galleries))).round().astype(int))
    rows = [galleries[int(i)] for i in chosen]
    columns = max(len(g["levels"]) for g in rows)
    pictures, captions = [], []
    for gallery in rows:
        for c in range(columns):
            if c < len(gallery["levels"]):
                level = gallery["levels"][c]
                pictures.append(space.level_to_svg(space.level_from_text(level["text"])))
                captions.append(f"it {gallery['iteration']}: {level['score']:.3f}")
            else:
                pictures.append('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>')
                captions.append("")
    return grid_svg(pictures, captions, columns, title)
