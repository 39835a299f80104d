"""A curriculum over the start positions of two-player games, game by game.

A self-play game often outlasts an iteration, so the level samplers' way (every env restarts on
a new level each iteration, `superlearner.curriculum.levels`) would cut games and lose their
outcomes. Here no game is cut: each game slot plays its game to the end by the rules, and where
it ends, the slot's next game starts from a level drawn for that moment: with probability
``standard_start_rate`` the game's standard start, else what the sampler's kind draws:

* ``dr``: a fresh level;
* ``plr``: once the buffer holds ``min_fill`` levels, a buffer level (by score and staleness)
  with probability ``replay_prob``, else a fresh one;
* ``accel``: as plr, and half of the buffer draws are played mutated (ACCEL alternates replay
  and mutation steps), the mutant being a new level;
* ``sfl``: once the buffer is filled, a fresh level with probability ``fresh_ratio``, else a
  buffer level.

A finished game scores the level it started from: ``learnability``, ``p (1 - p)`` of the start
side's expected score ``p`` (win 1, draw 1/2), smoothed over the games of the level as SFL's
`smoothed_success_rate` does (Rutherford et al. 2024), or ``value_error``, the mean over the
game's plies of the positive part of ``Outcome.value_error`` (for a search learner, the search
value minus the network value: a positive value loss, Jiang et al. 2021). Every scored level is
offered to the buffer (`LevelSampler.insert`: a level already held is updated in place);
standard starts are never scored. Every game trains the learner, fresh levels included (PLR with
``train_on_fresh``): a game's positions cannot be told apart in the learner's replay.

The stage (`superlearner.engine.curriculum_stage`) calls, per member and iteration::

    draws = draw_starts(sampler, space, buffer, hparams, rate, key, (T, N), num_edits)  # reset_params
    ...collect T plies of every game; a game ending at (t, n) restarts on draws.levels[t, n]...
    games, levels, finished = follow_games(games, levels, draws, outcome)
    buffer = mark_replays(buffer, draws, outcome.done)
    buffer, metrics = record_games(sampler, buffer, finished, score, prior, memory)

It needs an `Outcome` whose steps are plies of every game (AlphaZero's self-play): the start
side's result comes from the last mover's and the parity of the game's plies.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.curriculum.levels import (
    MODE_REPLAY, CurriculumHparams, LevelBuffer, LevelSampler, learnability, smoothed_success_rate,
)

Array = jax.Array
PRNGKey = jax.Array

# Where a game's start level came from (`StartDraws.sources`, `GameStarts.source`).
SOURCE_STANDARD, SOURCE_FRESH, SOURCE_REPLAY, SOURCE_MUTANT = 0, 1, 2, 3
SCORES = ("learnability", "value_error")
# ACCEL: the share of buffer draws played mutated.
MUTATION_SHARE = 0.5


@struct.dataclass
class StartDraws:
    """Start levels drawn ahead of a collection, leading axes ``[T, N]``: where slot n's game
    ends at step t, its next game starts from ``levels[t, n]``.

    Attributes:
      levels: the level pytree, leading axes ``[T, N]``.
      indices: int32, the buffer slot of a replayed level, else -1.
      sources: int32, `SOURCE_STANDARD`, `SOURCE_FRESH`, `SOURCE_REPLAY` or `SOURCE_MUTANT`.
    """

    levels: Any
    indices: Array
    sources: Array


@struct.dataclass
class GameStarts:
    """Per game slot ``[N]``, the start of its game in progress (its level is the member's
    ``env_params``).

    Attributes:
      source: int32, where the start level came from (a ``SOURCE_*``).
      plies: int32, plies played in the game so far.
      error_sum: float32, the sum over those plies of the positive value error.
    """

    source: Array
    plies: Array
    error_sum: Array


@struct.dataclass
class FinishedGames:
    """Games that ended during a collection, leading axes ``[T, N]`` (meaningful where ``done``).

    Attributes:
      done: bool, slot n's game ended at step t.
      levels: the level the game started from.
      source: int32, where that level came from.
      start_return: float32, the game's return for the side to move at its start (-1, 0, 1).
      value_error: float32, the mean over the game's plies of the positive value error.
    """

    done: Array
    levels: Any
    source: Array
    start_return: Array
    value_error: Array


def new_games(sources: Array) -> GameStarts:
    """`GameStarts` of games just started from levels of ``sources`` (int32[N])."""
    zeros = jnp.zeros(sources.shape, jnp.int32)
    return GameStarts(source=sources.astype(jnp.int32), plies=zeros, error_sum=zeros.astype(jnp.float32))


def _select(mask: Array, on_true: Any, on_false: Any) -> Any:
    """Per-entry select between two level pytrees whose leaves lead with ``mask.shape``."""
    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree.map(pick, on_true, on_false)


def draw_starts(
    sampler: LevelSampler,
    space: Any,
    buffer: LevelBuffer | None,
    hparams: CurriculumHparams,
    standard_start_rate: Array,
    key: PRNGKey,
    shape: tuple[int, int],
    num_edits: int = 1,
) -> StartDraws:
    """Start levels for every moment a game may end (see the module docstring). The buffer is
    not changed: a replay counts when its game starts (`mark_replays`).

    A fresh level and a mutant are one line of random legal plies each (the level space's
    ``play_line``): 1..``space.max_plies`` from the standard start, or ``num_edits`` from a
    buffer level; so every draw runs the same loop once.

    Args:
      sampler: the level sampler (its kind and buffer functions).
      space: the game's level space (``standard_level``, ``play_line``, ``max_plies``).
      buffer: the sampler's buffer, or None before there is one (standard or fresh starts only).
      hparams: the curriculum's adaptable numbers.
      standard_start_rate: float32[], the probability of the standard start.
      key: consumed.
      shape: static ``(T, N)``.
      num_edits: static, ACCEL's plies per mutation.

    Returns:
      `StartDraws` with leading axes ``shape``.
    """
    num = shape[0] * shape[1]
    decide_key, coin_key, count_key, line_key, replay_key = jax.random.split(key, 5)
    standard_coin, kind_coin = jax.random.uniform(coin_key, (2, num))
    standard = jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + jnp.shape(x)), space.standard_level())
    sources = jnp.full((num,), SOURCE_FRESH, jnp.int32)
    indices = jnp.full((num,), -1, jnp.int32)
    base = standard
    if buffer is not None and sampler.kind != "dr":
        modes = jax.vmap(lambda k: sampler.decide(buffer, k, hparams))(jax.random.split(decide_key, num))
        replay = modes == MODE_REPLAY
        if sampler.kind == "sfl":
            replay = replay & (kind_coin >= jnp.clip(hparams.fresh_ratio, 0.0, 1.0))
        sources = jnp.where(replay, SOURCE_REPLAY, SOURCE_FRESH)
        if sampler.kind == "accel":
            sources = jnp.where(replay & (kind_coin < MUTATION_SHARE), SOURCE_MUTANT, sources)
        probabilities = sampler.replay_probabilities(buffer, hparams)
        drawn = jax.random.choice(replay_key, sampler.capacity, (num,), replace=True, p=probabilities).astype(jnp.int32)
        base = _select(replay, jax.tree.map(lambda x: x[drawn], buffer.levels), standard)
        indices = jnp.where(sources == SOURCE_REPLAY, drawn, -1)
    sources = jnp.where(standard_coin < standard_start_rate, SOURCE_STANDARD, sources).astype(jnp.int32)
    base = _select(sources == SOURCE_STANDARD, standard, base)
    fresh_plies = jax.random.randint(count_key, (num,), 1, space.max_plies + 1, dtype=jnp.int32)
    plies = jnp.where(sources == SOURCE_FRESH, fresh_plies, jnp.where(sources == SOURCE_MUTANT, num_edits, 0))
    length = max(space.max_plies, num_edits)
    levels, _ = jax.vmap(lambda k, level, n: space.play_line(k, level, n, length))(
        jax.random.split(line_key, num), base, plies
    )
    reshape = lambda x: x.reshape(shape + x.shape[1:])  # noqa: E731
    return StartDraws(levels=jax.tree.map(reshape, levels), indices=reshape(indices), sources=reshape(sources))


def follow_games(games: GameStarts, levels: Any, draws: StartDraws, outcome) -> tuple[GameStarts, Any, FinishedGames]:
    """Pairs every game that ended during a collection with the level it started from.

    Args:
      games: `GameStarts` ``[N]`` before the collection.
      levels: the start level of each slot's game in progress, leading axis ``[N]``.
      draws: the collection's `StartDraws` ``[T, N]`` (the levels its new games started from).
      outcome: the collection's `Outcome` ``[T, N]``, one ply of every game per step, from the
        mover's side.

    Returns:
      ``(games, levels, finished)``: the slots' games and start levels after the collection,
      and the `FinishedGames` ``[T, N]``.
    """

    def step(carry, inputs):
        games, levels = carry
        done, value_error, final_return, next_source, next_levels = inputs
        plies = games.plies + 1
        error_sum = games.error_sum + jnp.maximum(value_error, 0.0)
        # Plies alternate between the players, so the last mover is the start's player to move
        # when an even number of plies came before the last one.
        start_return = jnp.where(games.plies % 2 == 0, final_return, -final_return)
        finished = FinishedGames(done=done, levels=levels, source=games.source, start_return=start_return,
                                 value_error=error_sum / plies)
        games = GameStarts(source=jnp.where(done, next_source, games.source), plies=jnp.where(done, 0, plies),
                           error_sum=jnp.where(done, 0.0, error_sum))
        return (games, _select(done, next_levels, levels)), finished

    inputs = (outcome.done, outcome.value_error, outcome.episode_return, draws.sources, draws.levels)
    (games, levels), finished = jax.lax.scan(step, (games, levels), inputs)
    return games, levels, finished


def mark_replays(buffer: LevelBuffer, draws: StartDraws, done: Array) -> LevelBuffer:
    """Counts the replays whose games started during a collection: the buffer levels drawn at
    the steps where a game ended (``done`` bool[T, N]) become the least stale, and their
    ``num_sampled`` grows (PLR's staleness clock advances by one per replay)."""
    capacity = buffer.valid.shape[0]
    started = (done & (draws.sources == SOURCE_REPLAY)).reshape(-1)
    played = jnp.where(started, draws.indices.reshape(-1), capacity)
    clock = buffer.step + jnp.cumsum(started.astype(jnp.int32))
    return buffer.replace(
        last_sampled=buffer.last_sampled.at[played].max(clock, mode="drop"),
        num_sampled=buffer.num_sampled.at[played].add(1, mode="drop"),
        step=buffer.step + started.sum(dtype=jnp.int32),
    )


def _held_slots(buffer: LevelBuffer, hashes: Array) -> Array:
    """int32[M]: the buffer slot holding each hash, or -1."""
    match = buffer.valid[None, :] & (buffer.hashes[None, :] == hashes[:, None])
    return jnp.where(match.any(axis=1), jnp.argmax(match, axis=1), -1).astype(jnp.int32)


def record_games(
    sampler: LevelSampler, buffer: LevelBuffer, finished: FinishedGames, score: str, prior: float, memory: float
) -> tuple[LevelBuffer, dict]:
    """Scores the start level of every finished game and offers it to the buffer.

    The finished games are taken one at a time in time order (a loop as long as the number of
    games that ended), so a level whose games end twice in a collection smooths the second
    against what the first stored. Standard starts are not scored; domain randomisation keeps no
    buffer.

    Args:
      sampler: the level sampler.
      buffer: its buffer.
      finished: `FinishedGames` ``[T, N]``.
      score: ``"learnability"`` or ``"value_error"`` (see the module docstring).
      prior: the Beta prior of the start side's smoothed score (``curriculum.sfl_prior``).
      memory: the weight a held level's stored score rate keeps (``curriculum.sfl_memory``).

    Returns:
      ``(buffer, metrics)``: float32 scalars ``curriculum_games`` (games finished), the shares of
      them started from the standard start, a replayed and a mutated level, the mean score and
      start side's score of the scored ones, and the buffer's size.
    """
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), finished)
    scored = flat.done & (flat.source != SOURCE_STANDARD)
    count = scored.sum(dtype=jnp.int32)
    order = jnp.argsort((~scored).astype(jnp.int32), stable=True)  # the scored games first, in time order

    def record_one(carry):
        i, buffer, total = carry
        game = jax.tree.map(lambda x: x[order[i]][None], flat)
        slots = _held_slots(buffer, jax.vmap(sampler.level_hash)(game.levels))
        measured = (game.start_return + 1.0) / 2.0
        rate = smoothed_success_rate(measured, jnp.ones_like(slots), buffer.success_rates, slots, prior, memory)
        value = learnability(rate) if score == "learnability" else game.value_error
        if sampler.kind != "dr":
            buffer = sampler.insert(buffer, game.levels, value, success_rates=rate)
        return i + 1, buffer, total + value[0]

    _, buffer, total = jax.lax.while_loop(
        lambda carry: carry[0] < count, record_one, (jnp.int32(0), buffer, jnp.float32(0.0))
    )
    done = flat.done.astype(jnp.float32)
    num_done = jnp.maximum(done.sum(), 1.0)
    share = lambda source: (done * (flat.source == source)).sum() / num_done  # noqa: E731
    num_scored = jnp.maximum(count, 1).astype(jnp.float32)
    metrics = {
        "curriculum_games": done.sum(),
        "curriculum_standard_share": share(SOURCE_STANDARD),
        "curriculum_replay_share": share(SOURCE_REPLAY),
        "curriculum_mutant_share": share(SOURCE_MUTANT),
        "curriculum_score": total / num_scored,
        "curriculum_start_side_score": jnp.where(scored, (flat.start_return + 1.0) / 2.0, 0.0).sum() / num_scored,
        "curriculum_buffer_size": buffer.size.astype(jnp.float32),
    }
    return buffer, metrics
