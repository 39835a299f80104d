"""What a curriculum run is doing, measured between train chunks.

`CurriculumProbe.measure` returns, per population member, the policy's solve rate (actions
sampled) on the env's named held-out levels (the figure the curriculum is meant to raise) and statistics of the
level buffer the curriculum trains from: how many levels it holds, their scores, and their
difficulty (the shortest start-to-goal path, where the level space defines one). It also writes
a small gallery of the buffer's levels (the highest-scored ones, in text form) into the run
directory, one file per measurement, which `superlearner plot` draws as a grid over time.

Everything it runs is compiled once, when the probe is built; a measurement is keyed by the
iteration, so a resumed run measures exactly what the uninterrupted one did.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.errors import UserError
from superlearner.core.evaluate import learner_act_fn, play_episodes

GALLERY_DIR = "curriculum"


def gallery_path(run_dir: Path, iteration: int) -> Path:
    return Path(run_dir) / GALLERY_DIR / f"gallery-{iteration:09d}.json"


class CurriculumProbe:
    """Held-out solve rate and level-buffer statistics of every population member.

    Args:
      engine: the run's `Engine` (a single-agent env with a level space).
      run_dir: where gallery files go (None: no gallery).
    """

    def __init__(self, engine, run_dir: Path | None):
        env, cc = engine.env, engine.config.curriculum
        self.engine, self.run_dir = engine, run_dir
        self.gallery_size = cc.probe_gallery
        self.episodes = cc.probe_episodes
        named = {}
        if hasattr(env, "named_levels"):
            try:
                named = env.named_levels()
            except UserError:  # a grid too small for the held-out maps: buffer statistics only
                named = {}
        self.names = list(named)
        self._heldout = None
        if self.names:
            num = len(self.names) * self.episodes
            levels = jax.tree.map(
                lambda *xs: jnp.repeat(jnp.stack([jnp.asarray(x) for x in xs]), self.episodes, axis=0),
                *[named[n] for n in self.names],
            )
            learner = engine.learner

            def heldout(params, key):
                act = learner_act_fn(learner, params, greedy=False)
                return play_episodes(env, act, key, num, levels, params_batched=True)

            self._heldout = jax.jit(jax.vmap(heldout, in_axes=(0, None)))
        space = getattr(env, "level_space", None)
        self._path_length = None
        if space is not None and hasattr(space, "shortest_path_length"):
            self._path_length = jax.jit(jax.vmap(space.shortest_path_length))
        self._to_text = getattr(space, "level_to_text", None) if space is not None else None

    def measure(self, state, key: jax.Array, iteration: int, write_gallery: bool = True) -> dict:
        """Metrics (lists with one value per member) for the log; writes the gallery file."""
        out: dict[str, list] = {}
        if self._heldout is not None:
            returns = np.asarray(self._heldout(state.learner.params, key))  # [P, L * E]
            solved = (returns > 0).reshape(returns.shape[0], len(self.names), self.episodes).mean(axis=-1)
            out["heldout_solve_rate"] = solved.mean(axis=-1).tolist()
            out["heldout_return"] = returns.mean(axis=-1).tolist()
        buffer = state.curriculum.get("buffer") if isinstance(state.curriculum, dict) else None
        if buffer is None:
            return out
        valid = np.asarray(buffer.valid)  # [P, C]
        scores = np.asarray(buffer.scores, np.float64)
        finite = valid & np.isfinite(scores)
        out["buffer_levels"] = valid.sum(axis=-1).astype(float).tolist()
        out["buffer_score_mean"] = [float(s[f].mean()) if f.any() else float("nan") for s, f in zip(scores, finite)]
        out["buffer_score_max"] = [float(s[f].max()) if f.any() else float("nan") for s, f in zip(scores, finite)]
        lengths = None
        if self._path_length is not None:
            flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), buffer.levels)
            lengths = np.asarray(self._path_length(flat)).reshape(valid.shape).astype(np.float64)
            reachable = valid & (lengths >= 0)
            out["buffer_path_length_mean"] = [
                float(l[r].mean()) if r.any() else float("nan") for l, r in zip(lengths, reachable)
            ]
        if write_gallery and self.run_dir is not None and self.gallery_size > 0 and self._to_text is not None:
            self._write_gallery(buffer, scores, finite, lengths, iteration)
        return out

    def _write_gallery(self, buffer, scores, finite, lengths, iteration: int) -> None:
        """The first member's highest-scored buffer levels, as text, into one JSON file."""
        order = [int(i) for i in np.argsort(-np.where(finite[0], scores[0], -np.inf), kind="stable") if finite[0][i]]
        chosen = order[: self.gallery_size]
        levels = []
        for index in chosen:
            level = jax.tree.map(lambda x: np.asarray(x[0, index]), buffer.levels)
            levels.append({
                "slot": index,
                "score": float(scores[0, index]),
                "path_length": None if lengths is None else int(lengths[0, index]),
                "text": self._to_text(level),
            })
        path = gallery_path(self.run_dir, iteration)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"iteration": iteration, "levels": levels}, indent=1))
        temporary.replace(path)


def read_galleries(run_dir: str | Path) -> list[dict]:
    """Every gallery file of a run, in iteration order."""
    folder = Path(run_dir) / GALLERY_DIR
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("gallery-*.json"))]
