"""The league: frozen snapshots of a learner, a payoff record, and opponent sampling, inside jit.

Snapshots are stacked parameter pytrees of fixed capacity C in the TrainState (a ring: when
full, the oldest is replaced). ``win_rate[k]`` is the learner's decayed-average score against
snapshot k (win 1, draw 1/2, loss 0), starting from a neutral prior of 1/2 for unplayed pairs.

Opponents are drawn per game from a mixture whose weights are hyperparameters (arrays in the
train state, so a meta-learner may tune them without recompiling):

* ``self``: the current learner (plain self-play);
* ``uniform``: a uniformly chosen past snapshot (fictitious self-play; Heinrich et al. 2015);
* ``pfsp_hard``: prioritised fictitious self-play favouring the snapshots we lose to,
  weight ``(1 - w)^2`` (Vinyals et al. 2019, AlphaStar);
* ``pfsp_even``: PFSP favouring the snapshots near an even score, weight ``w (1 - w)``;
* ``meta``: a snapshot drawn from the league's meta-strategy (PSRO; Lanctot et al. 2017).

**The league's policy** is the mixture of its snapshots weighted by ``meta_strategy``: each game,
one snapshot is drawn from it and plays the whole game. The meta-strategy comes from a
*meta-solver* over the empirical payoff matrix ``payoff[i, j]`` (the mean return of snapshot i
against snapshot j, both seats; antisymmetric), which is filled one row at a time as snapshots
join (`add_snapshot` takes the new snapshot's row, measured by games against every snapshot):

* ``uniform``: every filled snapshot alike (the average policy of fictitious play);
* ``nash``: a Nash equilibrium of the symmetric zero-sum meta-game, solved by regret matching+
  with linear averaging (`nash_meta_strategy`; Tammelin 2014), as in PSRO-Nash.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

SELF = -1  # the opponent index meaning "the current learner"


@struct.dataclass
class LeagueHparams:
    """Adaptable league settings (float32 scalars)."""

    weight_self: jax.Array
    weight_uniform: jax.Array
    weight_pfsp_hard: jax.Array
    weight_pfsp_even: jax.Array
    weight_meta: jax.Array
    payoff_decay: jax.Array  # step size of the decayed average of scores
    beat_margin: jax.Array  # add a snapshot once the learner scores above this against the league


@struct.dataclass
class LeagueState:
    """One learner's league. Leading axis C on the snapshot fields.

    Attributes:
      params: network parameters of the snapshots, leading axis C.
      num_added: int32[], snapshots added so far (slot of the next one: num_added % C).
      win_rate: float32[C], the learner's decayed-average score against each snapshot.
      games: float32[C], games played against each snapshot since it was added.
      added_at: int32[C], the iteration each snapshot was taken (-1 for empty slots).
      last_added: int32[], the iteration of the latest snapshot.
      payoff: float32[C, C], the mean return of snapshot i against snapshot j (both seats),
        antisymmetric; 0 where a pair was not measured.
      meta_strategy: float32[C], the league's policy: the weight of each snapshot (0 on empty
        slots, summing to one).
      hparams: LeagueHparams.
    """

    params: Any
    num_added: jax.Array
    win_rate: jax.Array
    games: jax.Array
    added_at: jax.Array
    last_added: jax.Array
    payoff: jax.Array
    meta_strategy: jax.Array
    hparams: LeagueHparams

    @property
    def capacity(self) -> int:
        return self.win_rate.shape[-1]

    @property
    def filled(self) -> jax.Array:
        """bool[C]: which slots hold a snapshot."""
        return self.added_at >= 0


def init_league(params: Any, capacity: int, hparams: LeagueHparams, iteration: int = 0) -> LeagueState:
    """A league whose first snapshot is ``params`` (the untrained learner)."""
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (capacity,) + x.shape), params)
    added_at = jnp.full((capacity,), -1, jnp.int32).at[0].set(iteration)
    return LeagueState(
        params=stacked,
        num_added=jnp.int32(1),
        win_rate=jnp.full((capacity,), 0.5, jnp.float32),
        games=jnp.zeros((capacity,), jnp.float32),
        added_at=added_at,
        last_added=jnp.int32(iteration),
        payoff=jnp.zeros((capacity, capacity), jnp.float32),
        meta_strategy=jnp.zeros((capacity,), jnp.float32).at[0].set(1.0),
        hparams=hparams,
    )


def add_snapshot(
    league: LeagueState,
    params: Any,
    iteration: jax.Array,
    payoff_row: jax.Array | None = None,
    meta_solver: str = "uniform",
    solver_iterations: int = 1000,
) -> LeagueState:
    """Writes ``params`` into the next ring slot, resets that slot's record to the prior and
    recomputes the meta-strategy.

    Args:
      payoff_row: float32[C], the new snapshot's mean return against each slot as it is before
        the write (entries of empty slots and of the replaced slot are ignored); None leaves the
        new snapshot's payoffs at 0.
      meta_solver: ``"uniform"`` or ``"nash"`` (static; see the module docstring).
      solver_iterations: regret-matching iterations of the ``nash`` solver (static).
    """
    slot = league.num_added % league.capacity
    added_at = league.added_at.at[slot].set(iteration)
    row = jnp.zeros((league.capacity,), jnp.float32) if payoff_row is None else payoff_row
    row = jnp.where(added_at >= 0, row, 0.0).at[slot].set(0.0)
    payoff = league.payoff.at[slot, :].set(row).at[:, slot].set(-row)
    filled = added_at >= 0
    if meta_solver == "nash":
        meta_strategy = nash_meta_strategy(payoff, filled, solver_iterations)
    else:
        meta_strategy = uniform_meta_strategy(filled)
    return league.replace(
        params=jax.tree.map(lambda bank, p: bank.at[slot].set(p), league.params, params),
        num_added=league.num_added + 1,
        win_rate=league.win_rate.at[slot].set(0.5),
        games=league.games.at[slot].set(0.0),
        added_at=added_at,
        last_added=jnp.asarray(iteration, jnp.int32),
        payoff=payoff,
        meta_strategy=meta_strategy,
    )


def uniform_meta_strategy(filled: jax.Array) -> jax.Array:
    """float32[C]: equal weight on every filled slot (fictitious play's average policy)."""
    mask = filled.astype(jnp.float32)
    return mask / jnp.maximum(mask.sum(), 1.0)


def nash_meta_strategy(payoff: jax.Array, filled: jax.Array, num_iterations: int) -> jax.Array:
    """float32[C]: an approximate Nash equilibrium of the symmetric zero-sum meta-game.

    Args:
      payoff: float32[C, C], the row snapshot's mean return against the column one
        (antisymmetric).
      filled: bool[C], the slots that hold a snapshot; the others get weight 0.
      num_iterations: regret-matching+ iterations (static).

    Regret matching+ in self-play with linearly weighted averaging of the strategies (Tammelin
    2014, "Solving large imperfect information games using CFR+"); the average's
    exploitability in the meta-game falls as O(1/sqrt(T)) or faster.
    """
    mask = filled.astype(jnp.float32)
    uniform = uniform_meta_strategy(filled)

    def body(t, carry):
        regret, average = carry
        total = regret.sum()
        strategy = jnp.where(total > 0, regret / jnp.maximum(total, 1e-30), uniform)
        value = payoff @ strategy
        regret = jnp.maximum(regret + value - strategy @ value, 0.0) * mask
        return regret, average + (t + 1.0) * strategy

    zeros = jnp.zeros_like(mask)
    _, average = jax.lax.fori_loop(0, num_iterations, body, (zeros, zeros))
    average = average * mask
    return average / jnp.maximum(average.sum(), 1e-30)


def meta_entropy(league: LeagueState) -> jax.Array:
    """float32[]: the entropy (nats) of the meta-strategy; log(filled) when uniform."""
    p = league.meta_strategy
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, 1e-30)), 0.0))


def opponent_distribution(league: LeagueState) -> jax.Array:
    """float32[C + 1]: the probability of each snapshot, and (last entry) of the current self."""
    h = league.hparams
    filled = league.filled.astype(jnp.float32)
    w = league.win_rate

    def normalised(weights):
        weights = weights * filled
        total = weights.sum()
        return jnp.where(total > 0, weights / jnp.maximum(total, 1e-12), 0.0), total > 0

    uniform, has_uniform = normalised(jnp.ones_like(w))
    hard, has_hard = normalised((1.0 - w) ** 2)
    even, has_even = normalised(w * (1.0 - w))
    mix_uniform = h.weight_uniform * has_uniform
    mix_hard = h.weight_pfsp_hard * has_hard
    mix_even = h.weight_pfsp_even * has_even
    meta, has_meta = normalised(league.meta_strategy)
    mix_meta = h.weight_meta * has_meta
    snapshots = mix_uniform * uniform + mix_hard * hard + mix_even * even + mix_meta * meta
    probs = jnp.concatenate([snapshots, h.weight_self[None]])
    total = probs.sum()
    only_self = jnp.zeros_like(probs).at[-1].set(1.0)
    return jnp.where(total > 0, probs / jnp.maximum(total, 1e-12), only_self)


def sample_opponents(league: LeagueState, key: jax.Array, num: int) -> jax.Array:
    """int32[num]: opponent indices in 0..C-1, or `SELF` (-1) for the current learner."""
    probs = opponent_distribution(league)
    choice = jax.random.choice(key, probs.shape[0], (num,), p=probs)
    return jnp.where(choice == league.capacity, SELF, choice).astype(jnp.int32)


def record_results(league: LeagueState, opponent: jax.Array, score: jax.Array, finished: jax.Array) -> LeagueState:
    """Folds finished games into the decayed-average win rates.

    Args:
      opponent: int32[G], each game's opponent index (`SELF` games are not recorded).
      score: float32[G], the learner's score (1 win, 1/2 draw, 0 loss).
      finished: bool[G], which games finished.

    Several results against one snapshot are folded in as ``n`` decay steps towards their mean.
    """
    counted = finished & (opponent >= 0)
    index = jnp.where(counted, opponent, 0)
    n = jnp.zeros_like(league.win_rate).at[index].add(counted.astype(jnp.float32))
    total = jnp.zeros_like(league.win_rate).at[index].add(jnp.where(counted, score, 0.0))
    mean = total / jnp.maximum(n, 1.0)
    keep = (1.0 - league.hparams.payoff_decay) ** n
    win_rate = jnp.where(n > 0, keep * league.win_rate + (1.0 - keep) * mean, league.win_rate)
    return league.replace(win_rate=win_rate, games=league.games + n)


def league_score(league: LeagueState) -> jax.Array:
    """float32[]: the learner's mean win rate over the filled snapshots."""
    filled = league.filled.astype(jnp.float32)
    return (league.win_rate * filled).sum() / jnp.maximum(filled.sum(), 1.0)


def maybe_add_snapshot(
    league: LeagueState,
    params: Any,
    iteration: jax.Array,
    every: int,
    rule: str,
    payoff_fn: Callable[[LeagueState, Any, jax.Array], jax.Array] | None = None,
    key: jax.Array | None = None,
    meta_solver: str = "uniform",
    solver_iterations: int = 1000,
) -> LeagueState:
    """Adds a snapshot when due: every ``every`` iterations (``rule="every"``), or (``"beat"``)
    once the learner's league score exceeds ``beat_margin`` and at least ``every`` iterations
    have passed since the last one.

    ``payoff_fn(league, params, key) -> float32[C]`` measures the new snapshot's payoff row
    (see `add_snapshot`); it runs only when a snapshot is due (a `lax.cond`), with ``key``.
    """
    waited = iteration - league.last_added >= every
    if rule == "every":
        due = waited
    else:
        due = waited & (league_score(league) > league.hparams.beat_margin)

    def add(league):
        row = None if payoff_fn is None else payoff_fn(league, params, key)
        return add_snapshot(league, params, iteration, row, meta_solver, solver_iterations)

    return jax.lax.cond(due, add, lambda league: league, league)
