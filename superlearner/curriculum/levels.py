"""Autonomous curricula: level buffers, level samplers, regret scores and a learning-progress teacher.

Everything here is a pure function over pytrees: it runs under ``jit``, batches with ``vmap``
(over a population, for instance) and never calls ``jit`` itself. A sampler made by
`make_level_sampler` holds static settings only (kind, capacity, batch size, prioritisation);
its state, a `LevelBuffer`, is passed in and returned. Every number a meta-learner may change
(replay probability, temperature, staleness coefficient, fresh ratio, teacher rates) is a float32
array in `CurriculumHparams`, so changing it never recompiles.

Kinds of sampler:

* ``"dr"``: domain randomisation, every level is fresh from the level space; the buffer is unused.
* ``"plr"``: robust Prioritized Level Replay (Jiang et al. 2021, "Prioritized Level Replay";
  Jiang et al. 2021, "Replay-Guided Adversarial Environment Design"). With probability
  ``replay_prob`` (once the buffer holds ``min_fill_ratio * capacity`` levels) a step replays
  buffer levels, drawn by score and staleness, and trains on them; otherwise it plays fresh
  levels, scores them and offers them to the buffer, without a gradient step.
* ``"accel"``: ACCEL (Parker-Holder et al. 2022, "Evolving Curricula with Regret-Based
  Environment Design"): robust PLR, and the step after a replay step plays the replayed levels
  changed by ``num_edits`` edits of the level space's ``mutate``; the mutants are scored and
  offered to the buffer, without a gradient step.
* ``"sfl"``: Sampling For Learnability (Rutherford et al. 2024, "No Regrets: Investigating and
  Improving Regret Approximations for Curriculum Discovery"): the buffer keeps the levels of
  highest learnability ``p (1 - p)`` (``p`` the agent's success rate); every step trains on a
  batch whose first ``round(fresh_ratio * batch_size)`` levels are fresh and the rest replayed.

One curriculum step of the engine, for one population member with ``B`` envs::

    buffer, batch = sampler.next_levels(buffer, key, hparams)     # batch.levels: level[B]
    ...reset the B envs on batch.levels, roll out T steps, scale the gradient by batch.train...
    scores = jax.vmap(positive_value_loss, in_axes=1)(advantages, dones)   # float32[B]
    buffer = sampler.update(buffer, batch, scores)

A score that is not finite (a level on which no episode finished) means "no measurement": the
level is not inserted and a buffer entry keeps its old score.

In a two-player game the levels are start positions and a game is never cut to change its level:
`superlearner.curriculum.positions` draws each game's start from the same sampler, game by game.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.core.env import check_option, tree_select
from superlearner.errors import UserError
from superlearner.core.hashing import fmix32

Array = jax.Array
PRNGKey = jax.Array
Level = Any

KINDS = ("dr", "plr", "accel", "sfl")
PRIORITIZATIONS = ("rank", "proportional")

# `LevelBatch.mode`: what the levels of a step are.
MODE_FRESH, MODE_REPLAY, MODE_MUTATE = 0, 1, 2

_NAME = "curriculum"


# ------------------------------------------------------------------------------------------------
# Types.


@struct.dataclass
class CurriculumHparams:
    """The curriculum's adaptable numbers; every field is float32[] (a leading population axis
    in a train state). Build with `CurriculumHparams.from_values`.

    Attributes:
      replay_prob: PLR/ACCEL: probability that a step replays buffer levels.
      temperature: score prioritisation temperature; lower concentrates on the top scores.
      staleness_coef: weight of the staleness distribution in the replay mixture (PLR's rho).
      fresh_ratio: SFL: the fraction of each batch that is fresh random levels.
      lp_fast_rate: teacher: step size of the fast moving average of outcomes, per outcome.
      lp_slow_rate: teacher: step size of the slow moving average of outcomes, per outcome.
      lp_epsilon: teacher: probability mass spread uniformly over all bins.
      lp_temperature: teacher: softmax temperature over |learning progress| / max |learning progress|.
    """

    replay_prob: Array
    temperature: Array
    staleness_coef: Array
    fresh_ratio: Array
    lp_fast_rate: Array
    lp_slow_rate: Array
    lp_epsilon: Array
    lp_temperature: Array

    @classmethod
    def from_values(cls, **values: float) -> "CurriculumHparams":
        """Defaults (JaxUED's maze settings for replay; SFL's half-fresh batches) with overrides.

        Raises UserError for a name that is not a field.
        """
        defaults = dict(
            replay_prob=0.8,
            temperature=0.3,
            staleness_coef=0.3,
            fresh_ratio=0.5,
            lp_fast_rate=0.1,
            lp_slow_rate=0.02,
            lp_epsilon=0.1,
            lp_temperature=0.2,
        )
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise UserError(
                f"{_NAME}: unknown hyperparameter(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(defaults)}"
            )
        defaults.update(values)
        return cls(**{name: jnp.asarray(value, jnp.float32) for name, value in defaults.items()})


@struct.dataclass
class LevelBuffer:
    """A fixed-capacity buffer of levels and their statistics; ``C`` is the capacity.

    Attributes:
      levels: the level pytree with leading axis C (slots not ``valid`` hold filler).
      scores: float32[C], the latest score of each level (higher is replayed more).
      last_sampled: int32[C], `step` when each level was last played (for staleness).
      num_sampled: int32[C], how many times each level was replayed.
      valid: bool[C], which slots hold a level.
      hashes: uint32[C], each level's hash, for de-duplication.
      max_returns: float32[C], the best episode return seen on each level (MaxMC); -inf if none.
      success_rates: float32[C], the latest measured success rate of each level (SFL).
      step: int32[], the number of levels played so far that the buffer was told of (replays
        drawn plus levels offered to `insert`): the clock of staleness.
      pending_levels: ACCEL: the levels of the last replay step, leading axis B (batch size);
        ``()`` for the other kinds.
      pending: bool[], ACCEL: whether the next step mutates ``pending_levels``.
    """

    levels: Any
    scores: Array
    last_sampled: Array
    num_sampled: Array
    valid: Array
    hashes: Array
    max_returns: Array
    success_rates: Array
    step: Array
    pending_levels: Any
    pending: Array

    @property
    def size(self) -> Array:
        """int32[]: the number of levels held."""
        return self.valid.sum(dtype=jnp.int32)


@struct.dataclass
class LevelBatch:
    """The levels of one step (from `LevelSampler.next_levels`); ``B`` is the batch size.

    Attributes:
      levels: the level pytree with leading axis B: reset the B envs on these.
      indices: int32[B], each level's buffer slot, or -1 for a level not taken from the buffer
        (fresh or mutated); `LevelSampler.update` re-scores the first and offers the second.
      mode: int32[], `MODE_FRESH`, `MODE_REPLAY` or `MODE_MUTATE` (SFL batches that mix fresh
        and replayed levels are `MODE_REPLAY`).
      train: bool[], whether the learner should take a gradient step on this rollout (false on
        the exploration and mutation steps of robust PLR and ACCEL): multiply the update by it.
    """

    levels: Any
    indices: Array
    mode: Array
    train: Array


class LevelSampler(NamedTuple):
    """A level sampler's static settings and pure functions (see `make_level_sampler`).

    Attributes:
      kind: "dr", "plr", "accel" or "sfl".
      capacity: C, the buffer size.
      batch_size: B, the levels per step (the number of envs).
      init: ``init(example_level) -> LevelBuffer``.
      next_levels: ``next_levels(buffer, key, hparams) -> (buffer, LevelBatch)``.
      update: ``update(buffer, batch, scores[B], *, max_returns=None, success_rates=None,
        mask=None) -> buffer``.
      decide: ``decide(buffer, key, hparams) -> mode int32[]``.
      sample_fresh: ``sample_fresh(key, num) -> levels[num]``.
      sample_replay: ``sample_replay(buffer, key, hparams, num) -> (buffer, levels[num],
        indices[num])``.
      mutate: ``mutate(key, levels[num]) -> levels[num]``.
      insert: ``insert(buffer, levels[num], scores[num], *, max_returns=None,
        success_rates=None, mask=None) -> buffer``.
      update_scores: ``update_scores(buffer, indices[num], scores[num], *, max_returns=None,
        success_rates=None, mask=None) -> buffer``.
      replay_probabilities: ``replay_probabilities(buffer, hparams) -> float32[C]``.
      level_hash: ``level_hash(level) -> uint32[]`` for one level.
    """

    kind: str
    capacity: int
    batch_size: int
    init: Callable[[Level], LevelBuffer]
    next_levels: Callable[..., tuple[LevelBuffer, LevelBatch]]
    update: Callable[..., LevelBuffer]
    decide: Callable[[LevelBuffer, PRNGKey, CurriculumHparams], Array]
    sample_fresh: Callable[[PRNGKey, int], Level]
    sample_replay: Callable[..., tuple[LevelBuffer, Level, Array]]
    mutate: Callable[[PRNGKey, Level], Level]
    insert: Callable[..., LevelBuffer]
    update_scores: Callable[..., LevelBuffer]
    replay_probabilities: Callable[[LevelBuffer, CurriculumHparams], Array]
    level_hash: Callable[[Level], Array]


# ------------------------------------------------------------------------------------------------
# Scores on one rollout (leading axis T of one env; batch with vmap over envs).


def _mean_over_finished_episodes(x_t: Array, done_t: Array) -> tuple[Array, Array]:
    """The mean over finished episodes of each episode's time average of ``x_t``.

    Args:
      x_t: float[T], a per-step quantity.
      done_t: bool[T], true where an episode ended at t (terminated or truncated).

    Returns:
      ``(mean, num_episodes)``: float32[] (0 when no episode finished) and int32[]. Steps after
      the last ``done`` belong to an unfinished episode and are left out.
    """
    done_t = done_t.astype(jnp.bool_)

    def step(carry, inputs):
        total, episode_sum, episode_length, count = carry
        x, done = inputs
        episode_sum = episode_sum + x
        episode_length = episode_length + 1
        total = total + jnp.where(done, episode_sum / episode_length, 0.0)
        count = count + done.astype(jnp.int32)
        episode_sum = jnp.where(done, 0.0, episode_sum)
        episode_length = jnp.where(done, 0, episode_length)
        return (total, episode_sum, episode_length, count), None

    zero = jnp.zeros((), jnp.float32)
    (total, _, _, count), _ = jax.lax.scan(
        step, (zero, zero, jnp.int32(0), jnp.int32(0)), (x_t.astype(jnp.float32), done_t)
    )
    return total / jnp.maximum(count, 1), count


def positive_value_loss(
    advantage_t: Array, done_t: Array, incomplete_value: float | Array = -jnp.inf
) -> Array:
    """Positive value loss, a regret estimate: the mean of ``max(A_t, 0)`` over an episode.

    Per finished episode, the time average of the clipped advantages; then the mean over the
    finished episodes of the rollout (Jiang et al. 2021, "Replay-Guided Adversarial Environment
    Design"; the accounting of JaxUED and minimax).

    Args:
      advantage_t: float[T], GAE advantages of one env's rollout.
      done_t: bool[T], true where an episode ended at t.
      incomplete_value: the score when no episode finished (default -inf: no measurement).

    Returns:
      float32[].
    """
    mean, count = _mean_over_finished_episodes(jnp.maximum(advantage_t, 0.0), done_t)
    return jnp.where(count > 0, mean, jnp.asarray(incomplete_value, jnp.float32))


def max_episode_return(reward_t: Array, done_t: Array) -> Array:
    """float32[]: the highest return of the episodes that finished in the rollout; -inf if none.

    Args:
      reward_t: float[T], rewards of one env's rollout.
      done_t: bool[T], true where an episode ended at t.
    """
    done_t = done_t.astype(jnp.bool_)

    def step(carry, inputs):
        best, episode_return = carry
        reward, done = inputs
        episode_return = episode_return + reward
        best = jnp.where(done, jnp.maximum(best, episode_return), best)
        return (best, jnp.where(done, 0.0, episode_return)), None

    init = (jnp.float32(-jnp.inf), jnp.float32(0.0))
    (best, _), _ = jax.lax.scan(step, init, (reward_t.astype(jnp.float32), done_t))
    return best


def max_mc(
    value_t: Array, done_t: Array, max_return: Array, incomplete_value: float | Array = -jnp.inf
) -> Array:
    """MaxMC regret: the mean of ``max_return - V(s_t)`` over an episode.

    ``max_return`` is the best return ever achieved on the level (see `combined_max_returns`).
    Averaged like `positive_value_loss` (Jiang et al. 2021, "Replay-Guided Adversarial
    Environment Design").

    Args:
      value_t: float[T], the value estimates of one env's rollout.
      done_t: bool[T], true where an episode ended at t.
      max_return: float[], the level's best return so far.
      incomplete_value: the score when no episode finished (default -inf: no measurement).

    Returns:
      float32[].
    """
    mean, count = _mean_over_finished_episodes(max_return - value_t, done_t)
    return jnp.where((count > 0) & jnp.isfinite(max_return), mean, jnp.asarray(incomplete_value, jnp.float32))


def episode_success_rate(success_t: Array, done_t: Array) -> tuple[Array, Array]:
    """The fraction of finished episodes that succeeded, and their number.

    Args:
      success_t: bool[T], true where a successful episode ended at t (e.g. reward > 0 at the
        last step of a maze episode).
      done_t: bool[T], true where an episode ended at t.

    Returns:
      ``(rate, num_episodes)``: float32[] (NaN when no episode finished: no measurement) and
      int32[].
    """
    done_t = done_t.astype(jnp.bool_)
    count = done_t.sum(dtype=jnp.int32)
    wins = (success_t.astype(jnp.bool_) & done_t).sum(dtype=jnp.int32)
    rate = jnp.where(count > 0, wins / jnp.maximum(count, 1), jnp.nan)
    return rate.astype(jnp.float32), count


def smoothed_success_rate(
    rate: Array, count: Array, stored: Array, indices: Array, prior: float, memory: float
) -> Array:
    """SFL's success estimate of each env's level: the rollout's episodes under a Beta prior,
    averaged with what the buffer already holds for a replayed level.

    One rollout of a maze level holds one or two episodes, so the raw rate is 0 or 1 and its
    learnability ``p (1 - p)`` is 0 whatever the level's true rate; the prior keeps the estimate
    off the ends, and the memory accumulates evidence across replays.

    Args:
      rate: float[B], measured success rate (NaN: no episode finished).
      count: int[B], episodes finished.
      stored: float[C], the buffer's success rates.
      indices: int32[B], each env's buffer slot (negative: a fresh level).
      prior: pseudo-successes and pseudo-failures added to the count.
      memory: weight of the stored rate for a replayed level.

    Returns:
      float[B], NaN where no episode finished.
    """
    count = jnp.asarray(count, jnp.float32)
    wins = jnp.where(count > 0, rate, 0.0) * count
    measured = jnp.where(count > 0, (wins + prior) / (count + 2.0 * prior), jnp.nan)
    old = stored[jnp.clip(indices, 0, stored.shape[0] - 1)]
    replayed = (indices >= 0) & jnp.isfinite(old)
    return jnp.where(replayed & (count > 0), memory * old + (1.0 - memory) * measured, measured).astype(jnp.float32)


def learnability(success_rate: Array) -> Array:
    """``p (1 - p)``: highest for levels solved half the time (Rutherford et al. 2024). Any shape."""
    p = jnp.asarray(success_rate, jnp.float32)
    return p * (1.0 - p)


def ema_update(average: Array, value: Array, rate: Array, count: Array | int = 1) -> Array:
    """``count`` steps of an exponential moving average towards ``value``: any broadcastable shapes.

    ``average + (1 - (1 - rate) ** count) * (value - average)``, exactly ``count`` repeated
    updates ``average += rate * (value - average)``.
    """
    return average + (1.0 - (1.0 - rate) ** count) * (value - average)


def learning_progress(fast: Array, slow: Array) -> Array:
    """Absolute learning progress ``|fast - slow|`` of two moving averages of a task's outcome.

    Portelas et al. 2019 ("Teacher algorithms for curriculum learning of Deep RL in continuously
    parameterized environments"); Kanitscheider et al. 2021 ("Multi-task curriculum learning in
    a complex, visual, hard-exploration domain: Minecraft"). Any shape.
    """
    return jnp.abs(fast - slow)


def combined_max_returns(buffer: LevelBuffer, indices: Array, episode_max_returns: Array) -> Array:
    """float32[B]: the best return known for each level of a batch, for `max_mc`.

    The larger of this rollout's best (``episode_max_returns``, float[B], from
    `max_episode_return`) and the buffer's record for replayed levels (``indices`` >= 0).
    """
    stored = buffer.max_returns[jnp.clip(indices, 0, buffer.scores.shape[0] - 1)]
    stored = jnp.where(indices >= 0, stored, -jnp.inf)
    return jnp.maximum(stored, episode_max_returns.astype(jnp.float32))


# ------------------------------------------------------------------------------------------------
# Replay distributions (pure functions of the buffer's arrays; shapes [C]).


def _normalise_log_weights(log_weights: Array, mask: Array) -> Array:
    """Probabilities ∝ exp(log_weights) over ``mask``; uniform over ``mask`` when every weight
    there is zero; uniform over all entries when ``mask`` is empty. Never divides by zero."""
    log_weights = jnp.where(mask, log_weights, -jnp.inf)
    top = jnp.max(log_weights)
    has_weight = jnp.isfinite(top)
    weights = jnp.where(mask, jnp.exp(log_weights - jnp.where(has_weight, top, 0.0)), 0.0)
    weights = jnp.where(has_weight, weights, mask.astype(jnp.float32))
    total = weights.sum()
    uniform = jnp.full(weights.shape, 1.0 / weights.shape[0], jnp.float32)
    return jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0), uniform)


def score_ranks(scores: Array, valid: Array) -> Array:
    """int32[C]: 1 + the number of valid entries with a strictly higher score.

    Ties share a rank (so equal scores get equal weights); invalid entries rank after all
    valid ones. O(C log C).
    """
    order_key = jnp.where(valid, -scores, jnp.inf)
    ascending = jnp.sort(order_key)
    return (1 + jnp.searchsorted(ascending, order_key, side="left")).astype(jnp.int32)


def score_probabilities(scores: Array, valid: Array, temperature: Array, prioritization: str) -> Array:
    """float32[C]: PLR's score distribution P_S over the valid entries.

    ``"rank"``: P_S ∝ (1 / rank)^(1 / temperature) (`score_ranks`). ``"proportional"``:
    P_S ∝ max(score, 0)^(1 / temperature), uniform over the valid entries when all are zero.
    Empty buffer: uniform over all slots (nothing valid to replay; `LevelSampler.decide` never
    replays then).
    """
    inverse_temperature = 1.0 / jnp.maximum(temperature, 1e-6)
    if prioritization == "rank":
        log_weights = -jnp.log(score_ranks(scores, valid).astype(jnp.float32)) * inverse_temperature
    elif prioritization == "proportional":
        log_weights = jnp.log(jnp.maximum(scores, 0.0)) * inverse_temperature
    else:
        raise UserError(
            f"{_NAME}: prioritization={prioritization!r} is not known; accepted: {', '.join(PRIORITIZATIONS)}"
        )
    return _normalise_log_weights(log_weights, valid)


def staleness_probabilities(last_sampled: Array, valid: Array, step: Array) -> Array:
    """float32[C]: PLR's staleness distribution P_C ∝ step - last_sampled over the valid entries.

    Uniform over the valid entries when none is stale; uniform over all slots when empty.
    """
    staleness = jnp.maximum(step - last_sampled, 0).astype(jnp.float32)
    return _normalise_log_weights(jnp.log(staleness), valid)


def replay_probabilities(
    buffer: LevelBuffer, hparams: CurriculumHparams, prioritization: str = "rank"
) -> Array:
    """float32[C]: ``(1 - staleness_coef) P_S + staleness_coef P_C`` (Jiang et al. 2021)."""
    p_score = score_probabilities(buffer.scores, buffer.valid, hparams.temperature, prioritization)
    p_stale = staleness_probabilities(buffer.last_sampled, buffer.valid, buffer.step)
    rho = jnp.clip(hparams.staleness_coef, 0.0, 1.0)
    return (1.0 - rho) * p_score + rho * p_stale


def _expand(mask: Array, leaf: Array) -> Array:
    """``mask`` (bool[n]) shaped to broadcast against a stack of n copies of ``leaf``."""
    return mask.reshape((-1,) + (1,) * jnp.ndim(leaf))


# ------------------------------------------------------------------------------------------------
# Hashing any level pytree.


def _leaf_words(x: Array) -> Array:
    """uint32[n]: the bits of one array leaf as 32-bit words."""
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_ or (jnp.issubdtype(x.dtype, jnp.integer) and x.dtype.itemsize < 4):
        words = x.astype(jnp.uint32)
    elif x.dtype.itemsize == 4:
        words = jax.lax.bitcast_convert_type(x, jnp.uint32)
    elif x.dtype.itemsize == 2:
        words = jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
    elif x.dtype.itemsize == 8:
        words = jax.lax.bitcast_convert_type(x, jnp.uint32)
    else:
        raise UserError(f"{_NAME}: cannot hash a level leaf of dtype {x.dtype}")
    return words.reshape(-1)


def tree_hash(level: Level) -> Array:
    """uint32[]: a hash of every bit of a level pytree (its leaves' values, shapes and order).

    Each word is mixed with its position, the mixed words are summed, and the sum finalised;
    equal levels hash equally, different ones collide with probability about 2**-32. Used when
    a level space has no ``level_hash`` of its own. Floats hash by bits (-0.0 differs from 0.0).
    """
    leaves = jax.tree.leaves(level)
    if not leaves:
        return jnp.uint32(0)
    words = jnp.concatenate([_leaf_words(leaf) for leaf in leaves])
    positions = jnp.arange(words.shape[0], dtype=jnp.uint32)
    mixed = fmix32(words ^ fmix32(positions * jnp.uint32(0x9E3779B9) + jnp.uint32(0x7F4A7C15)))
    return fmix32(jnp.sum(mixed, dtype=jnp.uint32) ^ jnp.uint32(words.shape[0]))


# ------------------------------------------------------------------------------------------------
# The level sampler: buffer functions shared by every kind, then one small factory per kind.


@dataclasses.dataclass(frozen=True)
class _SamplerSettings:
    """The static settings of a level sampler, checked (see `make_level_sampler`)."""

    kind: str
    capacity: int
    batch_size: int
    prioritization: str
    num_edits: int
    min_fill: int
    train_on_fresh: bool
    mutation_tries: int
    sample_fn: Callable
    mutate_fn: Callable | None
    hash_fn: Callable
    valid_fn: Callable | None


def _init(s: _SamplerSettings, example_level: Level, *, keeps_pending: bool = False) -> LevelBuffer:
    """An empty buffer whose slots are shaped like ``example_level`` (one unbatched level);
    ``keeps_pending`` (ACCEL) also gives it room for a batch of levels to mutate."""

    def stack(n):
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), example_level)

    return LevelBuffer(
        levels=stack(s.capacity),
        scores=jnp.zeros((s.capacity,), jnp.float32),
        last_sampled=jnp.zeros((s.capacity,), jnp.int32),
        num_sampled=jnp.zeros((s.capacity,), jnp.int32),
        valid=jnp.zeros((s.capacity,), jnp.bool_),
        hashes=jnp.zeros((s.capacity,), jnp.uint32),
        max_returns=jnp.full((s.capacity,), -jnp.inf, jnp.float32),
        success_rates=jnp.zeros((s.capacity,), jnp.float32),
        step=jnp.int32(0),
        pending_levels=stack(s.batch_size) if keeps_pending else (),
        pending=jnp.bool_(False),
    )


def _sample_fresh(s: _SamplerSettings, key: PRNGKey, num: int) -> Level:
    """``num`` (static) fresh levels from the level space, leading axis num. Consumes key."""
    return jax.vmap(s.sample_fn)(jax.random.split(key, num))


def _probabilities(s: _SamplerSettings, buffer: LevelBuffer, hparams: CurriculumHparams) -> Array:
    """float32[C]: the replay distribution (`replay_probabilities`)."""
    return replay_probabilities(buffer, hparams, s.prioritization)


def _sample_replay(
    s: _SamplerSettings, buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams, num: int
) -> tuple[LevelBuffer, Level, Array]:
    """Draws ``num`` (static) buffer levels, with replacement, from `replay_probabilities`.

    The drawn levels become the least stale (``last_sampled`` = the advanced ``step``) and
    their ``num_sampled`` grows. Consumes key.

    Returns:
      ``(buffer, levels[num], indices int32[num])``.
    """
    p = _probabilities(s, buffer, hparams)
    indices = jax.random.choice(key, s.capacity, (num,), replace=True, p=p).astype(jnp.int32)
    step = buffer.step + num
    buffer = buffer.replace(
        last_sampled=buffer.last_sampled.at[indices].set(step),
        num_sampled=buffer.num_sampled.at[indices].add(1),
        step=step,
    )
    levels = jax.tree.map(lambda x: x[indices], buffer.levels)
    return buffer, levels, indices


def _mutate_one(s: _SamplerSettings, key: PRNGKey, parent: Level) -> Level:
    """One level changed by ``num_edits`` edits; with ``valid_fn``, the first valid one of
    ``mutation_tries`` mutants, or the parent if none is valid. Consumes key."""
    if s.valid_fn is None:
        return s.mutate_fn(key, parent, s.num_edits)

    def attempt(carry, attempt_key):
        found, level = carry
        candidate = s.mutate_fn(attempt_key, parent, s.num_edits)
        ok = s.valid_fn(candidate)
        level = tree_select(~found & ok, candidate, level)
        return (found | ok, level), None

    (_, level), _ = jax.lax.scan(
        attempt, (jnp.bool_(False), parent), jax.random.split(key, s.mutation_tries)
    )
    return level


def _mutate(s: _SamplerSettings, key: PRNGKey, levels: Level) -> Level:
    """Each of a batch of levels (leading axis num) changed by ``num_edits`` edits; with
    ``valid_fn``, mutants stay valid (see ``mutation_tries``). Consumes key."""
    num = jax.tree.leaves(levels)[0].shape[0]
    return jax.vmap(functools.partial(_mutate_one, s))(jax.random.split(key, num), levels)


def _optional(values, num, fill):
    if values is None:
        return jnp.full((num,), fill, jnp.float32)
    return jnp.asarray(values, jnp.float32)


def _mask(mask, num):
    return jnp.ones((num,), jnp.bool_) if mask is None else jnp.asarray(mask, jnp.bool_)


def _insert(
    s: _SamplerSettings,
    buffer: LevelBuffer,
    levels: Level,
    scores: Array,
    *,
    max_returns: Array | None = None,
    success_rates: Array | None = None,
    mask: Array | None = None,
) -> LevelBuffer:
    """Offers a batch of levels to the buffer, one after the other.

    A level whose hash is already held updates that entry (its score and success rate are
    replaced, its best return raised, it becomes least stale) instead of being added twice.
    Otherwise it takes an empty slot if there is one, or replaces the lowest-scoring level
    if and only if its own score is strictly higher. Levels with a non-finite score, failing
    ``valid_fn`` or masked out are skipped.

    Args:
      buffer: the buffer.
      levels: level pytree, leading axis num.
      scores: float[num].
      max_returns: float[num] best returns seen (MaxMC); -inf when None.
      success_rates: float[num] measured success rates (SFL); NaN entries are not stored.
      mask: bool[num], which levels to offer; all when None.
    """
    num = jnp.shape(scores)[0]
    scores = jnp.asarray(scores, jnp.float32)
    max_returns = _optional(max_returns, num, -jnp.inf)
    success_rates = _optional(success_rates, num, jnp.nan)
    offered = _mask(mask, num) & jnp.isfinite(scores)
    if s.valid_fn is not None:
        offered = offered & jax.vmap(s.valid_fn)(levels)
    hashes = jax.vmap(s.hash_fn)(levels).astype(jnp.uint32)
    slots = jnp.arange(s.capacity)

    def offer(buffer: LevelBuffer, item):
        level, score, level_hash, max_return, success_rate, offer_it = item
        duplicate = buffer.valid & (buffer.hashes == level_hash)
        has_duplicate = jnp.any(duplicate)
        full = jnp.all(buffer.valid)
        lowest = jnp.argmin(jnp.where(buffer.valid, buffer.scores, jnp.inf))
        first_empty = jnp.argmin(buffer.valid)
        target = jnp.where(has_duplicate, jnp.argmax(duplicate), jnp.where(full, lowest, first_empty))
        write = offer_it & (has_duplicate | ~full | (score > buffer.scores[lowest]))
        at = write & (slots == target)
        step = buffer.step + offer_it.astype(jnp.int32)
        kept_rate = jnp.where(has_duplicate, buffer.success_rates, 0.0)
        new_rate = jnp.where(jnp.isnan(success_rate), kept_rate, success_rate)
        old_best = jnp.where(has_duplicate, buffer.max_returns, -jnp.inf)
        return buffer.replace(
            # One slot's update, not a select over the whole buffer: C can be thousands.
            levels=jax.tree.map(
                lambda stored, new: stored.at[target].set(jnp.where(write, new, stored[target])),
                buffer.levels,
                level,
            ),
            scores=jnp.where(at, score, buffer.scores),
            last_sampled=jnp.where(at, step, buffer.last_sampled),
            num_sampled=jnp.where(at & ~has_duplicate, 0, buffer.num_sampled),
            valid=buffer.valid | at,
            hashes=jnp.where(at, level_hash, buffer.hashes),
            max_returns=jnp.where(at, jnp.maximum(old_best, max_return), buffer.max_returns),
            success_rates=jnp.where(at, new_rate, buffer.success_rates),
            step=step,
        ), None

    buffer, _ = jax.lax.scan(offer, buffer, (levels, scores, hashes, max_returns, success_rates, offered))
    return buffer


def _update_scores(
    s: _SamplerSettings,
    buffer: LevelBuffer,
    indices: Array,
    scores: Array,
    *,
    max_returns: Array | None = None,
    success_rates: Array | None = None,
    mask: Array | None = None,
) -> LevelBuffer:
    """New scores for buffer entries that were just played.

    An entry drawn more than once in the batch gets the mean of its scores (and of its
    success rates) and the largest best return. Non-finite scores, NaN success rates,
    negative indices and masked-out entries change nothing.

    Args:
      buffer: the buffer.
      indices: int32[num] buffer slots.
      scores: float[num].
      max_returns: float[num] best returns seen in the rollout (MaxMC).
      success_rates: float[num] measured success rates (SFL).
      mask: bool[num], which entries to apply; all when None.
    """
    num = jnp.shape(indices)[0]
    scores = jnp.asarray(scores, jnp.float32)
    use = _mask(mask, num) & (indices >= 0) & (indices < s.capacity)
    # Unused entries scatter to an out-of-range slot, which "drop" discards.
    target = jnp.where(use, indices, s.capacity)

    def mean_into(old, values, ok):
        ok = ok & use
        where = jnp.where(ok, target, s.capacity)
        total = jnp.zeros((s.capacity,), jnp.float32).at[where].add(jnp.where(ok, values, 0.0), mode="drop")
        count = jnp.zeros((s.capacity,), jnp.float32).at[where].add(1.0, mode="drop")
        return jnp.where(count > 0, total / jnp.maximum(count, 1.0), old)

    new_scores = mean_into(buffer.scores, scores, jnp.isfinite(scores))
    new_rates = buffer.success_rates
    if success_rates is not None:
        rates = jnp.asarray(success_rates, jnp.float32)
        new_rates = mean_into(buffer.success_rates, rates, ~jnp.isnan(rates))
    new_best = buffer.max_returns
    if max_returns is not None:
        new_best = buffer.max_returns.at[target].max(jnp.asarray(max_returns, jnp.float32), mode="drop")
    valid = buffer.valid
    return buffer.replace(
        scores=jnp.where(valid, new_scores, buffer.scores),
        success_rates=jnp.where(valid, new_rates, buffer.success_rates),
        max_returns=jnp.where(valid, new_best, buffer.max_returns),
    )


def _record_scores(
    s: _SamplerSettings,
    buffer: LevelBuffer,
    batch: LevelBatch,
    scores: Array,
    *,
    max_returns: Array | None = None,
    success_rates: Array | None = None,
    mask: Array | None = None,
) -> LevelBuffer:
    """`LevelSampler.update` of the kinds with a buffer: re-scores the replayed levels
    (`_update_scores`) and offers the others (`_insert`).

    Args:
      buffer: the buffer returned by `next_levels`.
      batch: the step's `LevelBatch`.
      scores: float[B], e.g. `positive_value_loss`, `max_mc` or (SFL) `learnability` of
        each env's rollout; non-finite entries mean no measurement.
      max_returns: float[B], best returns of the rollout (MaxMC bookkeeping).
      success_rates: float[B], measured success rates (SFL bookkeeping; NaN = none).
      mask: bool[B], which envs to record; all when None.
    """
    mask = _mask(mask, s.batch_size)
    replayed = batch.indices >= 0
    buffer = _update_scores(
        s, buffer, batch.indices, scores, max_returns=max_returns, success_rates=success_rates,
        mask=mask & replayed,
    )
    return _insert(
        s, buffer, batch.levels, scores, max_returns=max_returns, success_rates=success_rates,
        mask=mask & ~replayed,
    )


def _no_index(s: _SamplerSettings) -> Array:
    """int32[B] of -1: a batch none of whose levels comes from the buffer."""
    return jnp.full((s.batch_size,), -1, jnp.int32)


def _replay_coin(s: _SamplerSettings, buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams) -> Array:
    """Robust PLR's choice: `MODE_REPLAY` with probability ``replay_prob`` once the buffer holds
    ``min_fill`` levels, else `MODE_FRESH` (int, not yet cast). Consumes key."""
    filled = buffer.size >= s.min_fill
    replay = filled & (jax.random.uniform(key) < hparams.replay_prob)
    return jnp.where(replay, MODE_REPLAY, MODE_FRESH)


# The branches of a replay-or-fresh step: ``branch(buffer) -> (buffer, levels[B], indices[B])``.


def _fresh_branch(s: _SamplerSettings, key: PRNGKey, buffer: LevelBuffer) -> tuple[LevelBuffer, Level, Array]:
    """B fresh levels; the buffer is unchanged. Consumes key."""
    return buffer, _sample_fresh(s, key, s.batch_size), _no_index(s)


def _replay_branch(
    s: _SamplerSettings, key: PRNGKey, hparams: CurriculumHparams, buffer: LevelBuffer
) -> tuple[LevelBuffer, Level, Array]:
    """B replayed buffer levels (`_sample_replay`). Consumes key."""
    return _sample_replay(s, buffer, key, hparams, s.batch_size)


def _switch_step(
    s: _SamplerSettings, buffer: LevelBuffer, mode: Array, branches: list[Callable]
) -> tuple[LevelBuffer, LevelBatch]:
    """The step of ``branches[mode]``; robust PLR trains on replayed levels only (and on fresh
    ones too with ``train_on_fresh``)."""
    buffer, levels, indices = jax.lax.switch(mode, branches, buffer)
    train = (mode == MODE_REPLAY) | (jnp.bool_(s.train_on_fresh) & (mode == MODE_FRESH))
    return buffer, LevelBatch(levels=levels, indices=indices, mode=mode, train=train)


def _sampler(
    s: _SamplerSettings,
    *,
    decide: Callable,
    next_levels: Callable,
    update: Callable,
    init: Callable | None = None,
) -> LevelSampler:
    """A `LevelSampler` of one kind's step functions and the buffer functions every kind shares."""
    bind = functools.partial
    return LevelSampler(
        kind=s.kind,
        capacity=s.capacity,
        batch_size=s.batch_size,
        init=init or bind(_init, s),
        next_levels=next_levels,
        update=update,
        decide=decide,
        sample_fresh=bind(_sample_fresh, s),
        sample_replay=bind(_sample_replay, s),
        mutate=bind(_mutate, s),
        insert=bind(_insert, s),
        update_scores=bind(_update_scores, s),
        replay_probabilities=bind(_probabilities, s),
        level_hash=s.hash_fn,
    )


# Every kind's ``next_levels(buffer, key, hparams)`` splits its key the same way, into
# ``decide_key, fresh_key, replay_key, mutate_key``, whichever of them it uses.


def _make_dr(s: _SamplerSettings) -> LevelSampler:
    """Domain randomisation: every step trains on fresh levels; the buffer is unused."""

    def decide(buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams) -> Array:
        """int32[]: always `MODE_FRESH`."""
        del buffer, key, hparams
        return jnp.int32(MODE_FRESH)

    def next_levels(buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams):
        decide_key, fresh_key, _, _ = jax.random.split(key, 4)
        mode = decide(buffer, decide_key, hparams)
        levels = _sample_fresh(s, fresh_key, s.batch_size)
        return buffer, LevelBatch(levels=levels, indices=_no_index(s), mode=mode, train=jnp.bool_(True))

    def update(
        buffer: LevelBuffer,
        batch: LevelBatch,
        scores: Array,
        *,
        max_returns: Array | None = None,
        success_rates: Array | None = None,
        mask: Array | None = None,
    ) -> LevelBuffer:
        """The buffer, unchanged: fresh levels are not kept."""
        del batch, scores, max_returns, success_rates, mask
        return buffer

    return _sampler(s, decide=decide, next_levels=next_levels, update=update)


def _make_plr(s: _SamplerSettings) -> LevelSampler:
    """Robust PLR (Jiang et al. 2021): replay buffer levels with probability ``replay_prob``,
    else play fresh levels (scored and offered to the buffer)."""

    def decide(buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams) -> Array:
        """int32[]: `MODE_REPLAY` or `MODE_FRESH` (`_replay_coin`). Consumes key."""
        return _replay_coin(s, buffer, key, hparams).astype(jnp.int32)

    def next_levels(buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams):
        decide_key, fresh_key, replay_key, _ = jax.random.split(key, 4)
        mode = decide(buffer, decide_key, hparams)
        branches = [
            functools.partial(_fresh_branch, s, fresh_key),
            functools.partial(_replay_branch, s, replay_key, hparams),
        ]
        return _switch_step(s, buffer, mode, branches)

    return _sampler(s, decide=decide, next_levels=next_levels, update=functools.partial(_record_scores, s))


def _make_accel(s: _SamplerSettings) -> LevelSampler:
    """ACCEL (Parker-Holder et al. 2022): robust PLR whose step after a replay step plays the
    replayed levels mutated (scored and offered to the buffer)."""
    if s.mutate_fn is None:
        raise UserError(
            f"{_NAME}: kind='accel' needs a level space with mutate(key, level, num_edits), or mutate_fn"
        )

    def decide(buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams) -> Array:
        """int32[]: `MODE_MUTATE` right after a replay step, else as robust PLR. Consumes key."""
        mode = _replay_coin(s, buffer, key, hparams)
        return jnp.where(buffer.pending, MODE_MUTATE, mode).astype(jnp.int32)

    def next_levels(buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams):
        decide_key, fresh_key, replay_key, mutate_key = jax.random.split(key, 4)
        mode = decide(buffer, decide_key, hparams)

        def replay_and_keep(buffer):
            buffer, levels, indices = _replay_branch(s, replay_key, hparams, buffer)
            return buffer.replace(pending_levels=levels, pending=jnp.bool_(True)), levels, indices

        def mutate_kept(buffer):
            mutants = _mutate(s, mutate_key, buffer.pending_levels)
            return buffer.replace(pending=jnp.bool_(False)), mutants, _no_index(s)

        branches = [functools.partial(_fresh_branch, s, fresh_key), replay_and_keep, mutate_kept]
        return _switch_step(s, buffer, mode, branches)

    init = functools.partial(_init, s, keeps_pending=True)
    return _sampler(s, decide=decide, next_levels=next_levels, update=functools.partial(_record_scores, s), init=init)


def _make_sfl(s: _SamplerSettings) -> LevelSampler:
    """SFL (Rutherford et al. 2024): once the buffer is filled, every batch mixes
    ``round(fresh_ratio * B)`` fresh levels with replayed ones, and always trains."""

    def decide(buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams) -> Array:
        """int32[]: `MODE_REPLAY` (a mixed batch) once the buffer holds ``min_fill`` levels,
        else `MODE_FRESH`."""
        del key, hparams
        return jnp.where(buffer.size >= s.min_fill, MODE_REPLAY, MODE_FRESH).astype(jnp.int32)

    def next_levels(buffer: LevelBuffer, key: PRNGKey, hparams: CurriculumHparams):
        decide_key, fresh_key, replay_key, _ = jax.random.split(key, 4)
        mode = decide(buffer, decide_key, hparams)
        fresh = _sample_fresh(s, fresh_key, s.batch_size)
        num_fresh = jnp.round(jnp.clip(hparams.fresh_ratio, 0.0, 1.0) * s.batch_size).astype(jnp.int32)
        use_fresh = (jnp.arange(s.batch_size) < num_fresh) | (mode == MODE_FRESH)
        indices = jax.random.choice(
            replay_key, s.capacity, (s.batch_size,), replace=True, p=_probabilities(s, buffer, hparams)
        ).astype(jnp.int32)
        replayed = jax.tree.map(lambda x: x[indices], buffer.levels)
        # Only the replayed slots are plays of buffer levels.
        played = jnp.where(use_fresh, s.capacity, indices)
        step = buffer.step + (~use_fresh).sum(dtype=jnp.int32)
        buffer = buffer.replace(
            last_sampled=buffer.last_sampled.at[played].set(step, mode="drop"),
            num_sampled=buffer.num_sampled.at[played].add(1, mode="drop"),
            step=step,
        )
        levels = jax.tree.map(lambda f, r: jnp.where(_expand(use_fresh, f[0]), f, r), fresh, replayed)
        indices = jnp.where(use_fresh, -1, indices)
        return buffer, LevelBatch(levels=levels, indices=indices, mode=mode, train=jnp.bool_(True))

    return _sampler(s, decide=decide, next_levels=next_levels, update=functools.partial(_record_scores, s))


# The sampler factory of each kind (the keys are `KINDS`).
_SAMPLERS: dict[str, Callable[[_SamplerSettings], LevelSampler]] = {
    "dr": _make_dr,
    "plr": _make_plr,
    "accel": _make_accel,
    "sfl": _make_sfl,
}


def make_level_sampler(
    kind: str,
    level_space: Any = None,
    capacity: int = 4000,
    batch_size: int = 1,
    *,
    prioritization: str = "rank",
    num_edits: int = 5,
    min_fill_ratio: float = 0.5,
    train_on_fresh: bool = False,
    mutation_tries: int = 4,
    sample_fn: Callable[[PRNGKey], Level] | None = None,
    mutate_fn: Callable[[PRNGKey, Level, int], Level] | None = None,
    hash_fn: Callable[[Level], Array] | None = None,
    valid_fn: Callable[[Level], Array] | None = None,
) -> LevelSampler:
    """Builds a level sampler; nothing is compiled here (the caller jits).

    Args:
      kind: "dr", "plr", "accel" or "sfl" (see the module docstring).
      level_space: an object with ``sample(key) -> level`` and, for "accel",
        ``mutate(key, level, num_edits) -> level``; its ``level_hash(level) -> uint32[]`` is used
        for de-duplication when present (`tree_hash` otherwise). The explicit ``*_fn``
        arguments take precedence over it.
      capacity: C, the number of levels the buffer holds.
      batch_size: B, the levels per step (the number of envs of a population member).
      prioritization: "rank" or "proportional" (see `score_probabilities`).
      num_edits: ACCEL: edits per mutation.
      min_fill_ratio: replay only once the buffer holds ``ceil(min_fill_ratio * C)`` levels
        (at least one).
      train_on_fresh: PLR/ACCEL: also take gradient steps on fresh levels (PLR without the
        "robust" part); robust PLR, the default, trains on replayed levels only.
      mutation_tries: ACCEL with ``valid_fn``: mutants failing ``valid_fn`` are drawn again up
        to this many times in all; if none passes, the parent level is kept.
      sample_fn: ``sample_fn(key) -> level``, one fresh level.
      mutate_fn: ``mutate_fn(key, level, num_edits) -> level``.
      hash_fn: ``hash_fn(level) -> uint32[]``.
      valid_fn: ``valid_fn(level) -> bool[]``: levels failing it are never inserted and
        mutants failing it are redrawn (e.g. a maze's ``is_valid`` with
        ``require_solvable=True``). None accepts every level.

    Raises:
      UserError: for an unknown kind or prioritization, a bad size, or a missing function.
    """
    if kind not in _SAMPLERS:
        raise UserError(f"{_NAME}: kind={kind!r} is not known; accepted: {', '.join(KINDS)}")
    if prioritization not in PRIORITIZATIONS:
        raise UserError(
            f"{_NAME}: prioritization={prioritization!r} is not known; accepted: {', '.join(PRIORITIZATIONS)}"
        )
    check_option(_NAME, "capacity", capacity, int, 1)
    check_option(_NAME, "batch_size", batch_size, int, 1)
    check_option(_NAME, "num_edits", num_edits, int, 0)
    check_option(_NAME, "mutation_tries", mutation_tries, int, 1)
    check_option(_NAME, "min_fill_ratio", min_fill_ratio, float, 0.0, 1.0)
    check_option(_NAME, "train_on_fresh", train_on_fresh, bool)

    sample_fn = sample_fn or getattr(level_space, "sample", None)
    if sample_fn is None:
        raise UserError(f"{_NAME}: kind={kind!r} needs a level space with sample(key), or sample_fn")
    settings = _SamplerSettings(
        kind=kind,
        capacity=capacity,
        batch_size=batch_size,
        prioritization=prioritization,
        num_edits=num_edits,
        min_fill=max(1, int(np.ceil(min_fill_ratio * capacity))),
        train_on_fresh=train_on_fresh,
        mutation_tries=mutation_tries,
        sample_fn=sample_fn,
        mutate_fn=mutate_fn or getattr(level_space, "mutate", None),
        hash_fn=hash_fn or getattr(level_space, "level_hash", None) or tree_hash,
        valid_fn=valid_fn,
    )
    return _SAMPLERS[kind](settings)


# ------------------------------------------------------------------------------------------------
# A learning-progress teacher over a binned task space.


@struct.dataclass
class TeacherState:
    """Per-bin moving averages of outcomes; ``K`` is the number of bins.

    Attributes:
      fast: float32[K], fast exponential moving average of each bin's outcome.
      slow: float32[K], slow exponential moving average of each bin's outcome.
      counts: int32[K], outcomes seen per bin (a bin's averages start at its first outcome).
    """

    fast: Array
    slow: Array
    counts: Array


class LearningProgressTeacher(NamedTuple):
    """A learning-progress teacher's pure functions (see `make_lp_teacher`).

    Attributes:
      num_bins: K.
      init: ``init() -> TeacherState``.
      probabilities: ``probabilities(state, hparams) -> float32[K]``.
      sample: ``sample(key, state, hparams, num) -> int32[num]`` bins.
      update: ``update(state, bins[num], outcomes[num], hparams, mask=None) -> TeacherState``.
    """

    num_bins: int
    init: Callable[[], TeacherState]
    probabilities: Callable[[TeacherState, CurriculumHparams], Array]
    sample: Callable[[PRNGKey, TeacherState, CurriculumHparams, int], Array]
    update: Callable[..., TeacherState]


def make_lp_teacher(num_bins: int) -> LearningProgressTeacher:
    """A teacher that samples the task bins whose outcome is changing fastest.

    Each bin keeps a fast and a slow moving average of its outcomes (success or normalised
    return); its learning progress is ``|fast - slow|`` (`learning_progress`). Bins are drawn
    from ``(1 - lp_epsilon) softmax(|LP| / max|LP| / lp_temperature) + lp_epsilon / K``, so
    both improvement and forgetting attract the teacher, and every bin keeps being visited
    (Kanitscheider et al. 2021; Portelas et al. 2019).
    """
    check_option(_NAME, "num_bins", num_bins, int, 1)

    def init() -> TeacherState:
        return TeacherState(
            fast=jnp.zeros((num_bins,), jnp.float32),
            slow=jnp.zeros((num_bins,), jnp.float32),
            counts=jnp.zeros((num_bins,), jnp.int32),
        )

    def probabilities(state: TeacherState, hparams: CurriculumHparams) -> Array:
        """float32[K]: the teacher's sampling distribution."""
        progress = learning_progress(state.fast, state.slow)
        top = jnp.max(progress)
        scaled = progress / jnp.where(top > 0, top, 1.0)
        greedy = jax.nn.softmax(scaled / jnp.maximum(hparams.lp_temperature, 1e-6))
        epsilon = jnp.clip(hparams.lp_epsilon, 0.0, 1.0)
        return (1.0 - epsilon) * greedy + epsilon / num_bins

    def sample(key: PRNGKey, state: TeacherState, hparams: CurriculumHparams, num: int) -> Array:
        """int32[num]: ``num`` (static) bins drawn independently. Consumes key."""
        logits = jnp.log(probabilities(state, hparams))
        return jax.random.categorical(key, logits, shape=(num,)).astype(jnp.int32)

    def update(
        state: TeacherState,
        bins: Array,
        outcomes: Array,
        hparams: CurriculumHparams,
        mask: Array | None = None,
    ) -> TeacherState:
        """Folds a batch of outcomes (float[num] for bins int32[num]) into the averages.

        A bin seen n times in the batch with mean outcome m takes n moving-average steps
        towards m (`ema_update`), so the rates are per outcome whatever the batch size. A bin's
        first outcomes set both averages, so a new bin starts with zero progress. ``mask``
        (bool[num]) leaves out entries without an outcome (e.g. no finished episode).
        """
        outcomes = jnp.asarray(outcomes, jnp.float32)
        use = jnp.ones(outcomes.shape, jnp.bool_) if mask is None else jnp.asarray(mask, jnp.bool_)
        bins = jnp.where(use, bins, num_bins)  # out of range: dropped
        totals = jnp.zeros((num_bins,), jnp.float32).at[bins].add(jnp.where(use, outcomes, 0.0), mode="drop")
        counts = jnp.zeros((num_bins,), jnp.int32).at[bins].add(1, mode="drop")
        seen = counts > 0
        mean = totals / jnp.maximum(counts, 1)
        first = seen & (state.counts == 0)
        fast = ema_update(state.fast, mean, hparams.lp_fast_rate, counts)
        slow = ema_update(state.slow, mean, hparams.lp_slow_rate, counts)
        return TeacherState(
            fast=jnp.where(first, mean, jnp.where(seen, fast, state.fast)),
            slow=jnp.where(first, mean, jnp.where(seen, slow, state.slow)),
            counts=state.counts + counts,
        )

    return LearningProgressTeacher(
        num_bins=num_bins, init=init, probabilities=probabilities, sample=sample, update=update
    )


def bin_values(
    bins: Array, low: float | Array, high: float | Array, num_bins: int, key: PRNGKey | None = None
) -> Array:
    """float32[num]: the task parameter of each bin of ``[low, high]`` cut into ``num_bins`` equal bins.

    Without ``key``, each bin's centre; with ``key`` (consumed), a uniform draw inside the bin.
    """
    bins = jnp.asarray(bins)
    width = (jnp.asarray(high, jnp.float32) - jnp.asarray(low, jnp.float32)) / num_bins
    if key is None:
        offset = jnp.full(bins.shape, 0.5, jnp.float32)
    else:
        offset = jax.random.uniform(key, bins.shape, jnp.float32)
    return (low + (bins.astype(jnp.float32) + offset) * width).astype(jnp.float32)


def bins_to_params(
    bins: Array,
    base_params: Any,
    field: str,
    low: float | Array,
    high: float | Array,
    num_bins: int,
    key: PRNGKey | None = None,
) -> Any:
    """Task params for a batch of bins: ``base_params`` with ``field`` set by `bin_values`.

    For a parametric task space such as `superlearner.envs.cartpole.CartPoleParams`, e.g.
    ``bins_to_params(bins, make_default_params(), "length", 0.25, 2.0, 8)``. Every field of the
    result has leading axis num (the other fields are broadcast copies of ``base_params``).

    Raises:
      UserError: when ``base_params`` has no field ``field``.
    """
    names = [f.name for f in dataclasses.fields(base_params)] if dataclasses.is_dataclass(base_params) else []
    if field not in names:
        raise UserError(
            f"{_NAME}: params {type(base_params).__name__} have no field {field!r}; "
            f"accepted: {', '.join(names)}"
        )
    values = bin_values(bins, low, high, num_bins, key)
    num = values.shape[0]
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + jnp.shape(x)), base_params)
    dtype = jnp.asarray(getattr(base_params, field)).dtype
    return batched.replace(**{field: values.astype(dtype)})
