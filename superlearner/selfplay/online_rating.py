"""An online Bradley-Terry rating of a learner, measured inside the compiled train chunk.

The players of the rating are the fixed anchors (the first one is the zero of the scale, e.g.
``random``) and the learner's last ``H`` *rounds*. At a round the learner, acting greedily from
its raw policy, plays ``G`` games against every anchor and ``G`` games against itself as it was
at the previous round (the first few plies of every game random, so games vary). A round is a
player of its own, the learner at that iteration: its games are edges to the anchors and to the
previous round. The maximum a posteriori Bradley-Terry fit over all players (the model and the
weak Gaussian prior of `superlearner.selfplay.ratings.bradley_terry`, on the Elo scale) gives
every round's rating; the newest round's is the learner's rating, with its standard error from
the inverse of the information.

Why rounds and not one running estimate: the learner changes, so its old games say nothing of
its current strength, yet they say a lot about the anchors' places on the scale. The chain of
games between consecutive rounds keeps the rating measurable once the learner beats every anchor
(where games against anchors carry no information any more); the anchors keep the chain from
drifting.

Everything here is pure and traceable: `make_online_rating` returns ``init(params)``,
``measure(state, params, key) -> state`` and ``metrics(state)`` for one member; vmap them over a
population.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.core.env import Env
from superlearner.selfplay.ratings import ELO_PER_NATS


@struct.dataclass
class RatingState:
    """One member's online rating (see the module docstring); players are ``[A anchors, H rounds]``.

    Attributes:
      points: float32[A + H, A + H], ``points[i, j]``: i's points against j (win 1, draw 1/2).
      rounds: int32[], rounds measured so far.
      ratings: float32[A + H], every player's rating in Elo (the first anchor's is 0).
      rating: float32[], the learner's rating: its newest round's (0 before the first round).
      stderr: float32[], the standard error of ``rating`` in Elo (NaN before the first round).
      scores: float32[A + 1], the newest round's scores against each anchor and against the
        previous round (NaN before there is one).
      previous: the learner's parameters at the newest round (its next round's opponent).
    """

    points: jax.Array
    rounds: jax.Array
    ratings: jax.Array
    rating: jax.Array
    stderr: jax.Array
    scores: jax.Array
    previous: Any


def fit_bradley_terry(points: jax.Array, active: jax.Array, prior_sd: float, start: jax.Array | None = None,
                      iterations: int = 24) -> tuple[jax.Array, jax.Array]:
    """MAP Bradley-Terry ratings with player 0 fixed at 0, traceable; ``(ratings, stderr)`` in Elo.

    The objective of `superlearner.selfplay.ratings.bradley_terry` (a Gaussian prior of standard
    deviation ``prior_sd`` Elo on every rating), maximised by ``iterations`` Newton steps each
    clipped to 2 nats (the objective is concave; the clip only slows the first steps of a fit
    started far from its optimum). Players where ``active`` is false keep rating 0 and stderr 0.

    Args:
      points: float32[N, N], ``points[i, j]``: i's points against j.
      active: bool[N], players with games (player 0 is always fixed).
      prior_sd: the prior's standard deviation in Elo points.
      start: float32[N] Elo ratings to start from (the previous fit), or None (zeros).
      iterations: Newton steps (static).
    """
    num = points.shape[0]
    games = points + points.T
    precision = (ELO_PER_NATS / prior_sd) ** 2
    free = active & (jnp.arange(num) > 0)
    both = free[:, None] & free[None, :]
    eye = jnp.eye(num, dtype=points.dtype)

    def information(theta):
        p = jax.nn.sigmoid(theta[:, None] - theta[None, :])
        weights = games * p * (1.0 - p)
        info = jnp.diag(weights.sum(axis=1)) - weights + precision * eye
        return jnp.where(both, info, eye), p

    def newton(theta, _):
        info, p = information(theta)
        grad = jnp.where(free, jnp.sum(points - games * p, axis=1) - precision * theta, 0.0)
        step = jnp.clip(jnp.linalg.solve(info, grad), -2.0, 2.0)
        return theta + step, None

    theta = jnp.zeros((num,), points.dtype) if start is None else jnp.where(free, start / ELO_PER_NATS, 0.0)
    theta, _ = jax.lax.scan(newton, theta, None, length=iterations)
    info, _ = information(theta)
    variance = jnp.diag(jnp.linalg.inv(info))
    stderr = jnp.where(free, jnp.sqrt(jnp.clip(variance, 0.0, None)) * ELO_PER_NATS, 0.0)
    return theta * ELO_PER_NATS, stderr


def record_round(state: RatingState, vs_anchors: jax.Array, vs_previous: jax.Array, games: int,
                 prior_sd: float = 2000.0) -> RatingState:
    """``state`` with one more round: the learner's points ``vs_anchors`` (float32[A]) against the
    anchors and ``vs_previous`` against the previous round (ignored at the first round), out of
    ``games`` each; the round takes the oldest round's slot and the fit is redone from the last one.
    ``previous`` is left as it is."""
    num_anchors, size = vs_anchors.shape[0], state.points.shape[0]
    history = size - num_anchors
    slot = num_anchors + state.rounds % history
    previous_slot = num_anchors + (state.rounds - 1) % history
    has_previous = state.rounds > 0
    vs_previous = jnp.where(has_previous, vs_previous, jnp.nan)
    row = jnp.zeros((size,), jnp.float32).at[:num_anchors].set(vs_anchors)
    row = row.at[previous_slot].add(jnp.where(has_previous, vs_previous, 0.0))
    column = jnp.zeros((size,), jnp.float32).at[:num_anchors].set(games - vs_anchors)
    column = column.at[previous_slot].add(jnp.where(has_previous, games - vs_previous, 0.0))
    # The slot's old round (the oldest) leaves the rating with all its games.
    points = state.points.at[slot, :].set(row).at[:, slot].set(column)
    active = (points + points.T).sum(axis=1) > 0
    ratings, stderr = fit_bradley_terry(points, active, prior_sd, start=state.ratings)
    return state.replace(points=points, rounds=state.rounds + 1, ratings=ratings, rating=ratings[slot],
                         stderr=stderr[slot], scores=jnp.append(vs_anchors, vs_previous) / games)


class OnlineRating(NamedTuple):
    """``init(params) -> RatingState``, ``measure(state, params, key) -> state`` (one round) and
    ``metrics(state) -> {name: float32[]}``: ``rating``, ``rating_stderr``, ``rating_vs_<anchor>``
    (the newest round's score against each anchor) and ``rating_vs_previous``.
    """

    init: Callable
    measure: Callable
    metrics: Callable
    anchors: tuple


def make_online_rating(env: Env, policy_fn: Callable, anchors: Sequence[str], games: int, opening_moves: int,
                       history: int, prior_sd: float = 2000.0) -> OnlineRating:
    """The online rating of a learner whose raw policy is ``policy_fn(params, observation, mask)
    -> (logits, value)``, against the anchor specs ``anchors`` (the first is the scale's zero).

    ``games`` per opponent and round (rounded up to even, half in each seat), ``opening_moves``
    random plies at the start of every game, ``history`` rounds kept (at least 2).
    """
    from superlearner.selfplay.anchors import make_anchor
    from superlearner.selfplay.arena import from_anchor, from_policy, make_match_fn
    from superlearner.selfplay.opponents import outcome_score

    anchors = tuple(anchors)
    games = games + games % 2
    players = [from_anchor(make_anchor(env, spec)) for spec in anchors]
    num_anchors, size = len(anchors), len(anchors) + history

    def init(params) -> RatingState:
        zeros = jnp.zeros((size,), jnp.float32)
        return RatingState(points=jnp.zeros((size, size), jnp.float32), rounds=jnp.int32(0), ratings=zeros,
                           rating=jnp.float32(0), stderr=jnp.float32(jnp.nan),
                           scores=jnp.full((num_anchors + 1,), jnp.nan, jnp.float32), previous=params)

    def points_against(me, opponent, key):
        returns, _ = make_match_fn(env, me, opponent, games, opening_moves)(key)
        return jnp.sum(outcome_score(returns))

    def measure(state: RatingState, params, key) -> RatingState:
        me = from_policy(policy_fn, params, greedy=True)
        keys = jax.random.split(key, num_anchors + 1)
        vs_anchors = jnp.stack([points_against(me, p, k) for p, k in zip(players, keys[:-1])])
        vs_previous = points_against(me, from_policy(policy_fn, state.previous, greedy=True), keys[-1])
        state = record_round(state, vs_anchors, vs_previous, games, prior_sd)
        return state.replace(previous=params)

    def metrics(state: RatingState) -> dict:
        values = {"rating": state.rating, "rating_stderr": state.stderr, "rating_vs_previous": state.scores[-1]}
        for index, spec in enumerate(anchors):
            values[f"rating_vs_{spec}"] = state.scores[index]
        return values

    return OnlineRating(init=init, measure=measure, metrics=metrics, anchors=anchors)
