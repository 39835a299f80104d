"""Gumbel AlphaZero (`superlearner.learners.alphazero`) behind the learner interface
(`superlearner.learners.base`).

* Collecting: ``learner.num_steps`` searched moves in each of ``learner.num_envs`` games on the
  member's levels. Without a league the current network plays every seat. With one, each game
  seats the learner at random and draws its opponent from the league (`MemberState.league`): the
  opponent moves by its own snapshot's raw policy, sampled at ``league.opponent_temperature``;
  only the learner's positions enter its replay buffer, and every finished game's result is
  recorded in the league's payoff statistics.
* Updating: the trajectory's positions go into the replay buffer (pending ones get their value
  targets when their game ends), then ``alphazero.num_updates`` SGD steps.
* One-player envs of perfect information (the search plans with the real rules) are accepted
  too: a curriculum over their levels works as for PPO. A game restarted on a new level drops
  the pending positions of the game it replaces, which never get an outcome.
* Levels chosen game by game: where the stage hands the collection ``context.reset_params``
  (levels ``[T, N]``), a game that ends at step t restarts on ``reset_params[t]`` instead of its
  own level, and ``env_params`` follows each slot's game in progress (a curriculum over the start
  positions of a two-player game, or a teacher's draws).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.core.env import Env
from superlearner.errors import ConfigError
from superlearner.learners.alphazero import (
    ALPHAZERO_HPARAMS,
    AlphaZeroHparams,
    AlphaZeroSettings,
    Opponents,
    make_alphazero,
    new_games,
)
from superlearner.learners.base import CollectContext, Learner, LearnerDef, MemberState, Outcome, uses_league
from superlearner.learners.networks import choose_action
from superlearner.schema import field, hparam_fields
from superlearner.selfplay.search import batched_env_params, searchable


@struct.dataclass
class LeagueGames:
    """Self-play games against league opponents, leading axis ``[N]``.

    Attributes:
      games: the `SelfPlayGames` in progress.
      seat: int32, the learner's player index in each game.
      opponent: int32, the league slot of each game's opponent, or `superlearner.selfplay.league.SELF`.
    """

    games: Any
    seat: jax.Array
    opponent: jax.Array


@struct.dataclass
class AlphaZeroBatch:
    """What one collection hands the update: the trajectory ``[T, N]`` and, per game slot, the
    first game that ended in it (``(done, return, truncated)``, to resolve pending entries)."""

    trajectory: dict
    firsts: tuple


@struct.dataclass
class LeagueResults:
    """Games finished against league opponents in one collection (float32 sums)."""

    games: jax.Array
    score: jax.Array
    self_games: jax.Array
    self_score: jax.Array


def settings_from_config(config) -> AlphaZeroSettings:
    """The learner's static settings: the alphazero section plus learner.num_envs / num_steps."""
    az = config.alphazero
    static = {f.name for f in dataclasses.fields(AlphaZeroSettings)}
    values = {name: getattr(az, name) for name in static if hasattr(az, name)}
    values["max_depth"] = az.max_depth or None
    values["decay_updates"] = config.iterations * az.num_updates if az.lr_schedule == "cosine" else 0
    values["lr_timescale"] = az.lr_timescale if az.lr_schedule == "inverse_sqrt" else 0
    return AlphaZeroSettings(num_envs=config.learner.num_envs, unroll_length=config.learner.num_steps, **values)


def make_alphazero_learner(config, env: Env) -> Learner:
    """AlphaZero for ``env`` with the config's ``alphazero`` section and ``learner`` batch shape."""
    az = make_alphazero(env, settings_from_config(config))
    num_envs, lg = config.learner.num_envs, config.league
    with_league = uses_league(config, env, ALPHAZERO_LEARNER)

    def init(key):
        return az.init(key).replace(games={})  # the games live in `MemberState.env_state`

    def start(member: MemberState, key) -> MemberState:
        games_key, seat_key, opponent_key = jax.random.split(key, 3)
        games = new_games(env, games_key, batched_env_params(env, member.env_params, num_envs), num_envs)
        if with_league:
            from superlearner.selfplay.league import sample_opponents

            seat = jax.random.randint(seat_key, (num_envs,), 0, env.num_players, dtype=jnp.int32)
            games = LeagueGames(games=games, seat=seat, opponent=sample_opponents(member.league, opponent_key, num_envs))
        # Pending positions belong to the games just replaced: their outcome will never come.
        buffer = member.learner.buffer
        positions = buffer.positions.replace(pending=jnp.zeros_like(buffer.positions.pending))
        learner = member.learner.replace(buffer=buffer.replace(positions=positions))
        zero = jnp.float32(0)
        stats = LeagueResults(zero, zero, zero, zero) if with_league else {}
        return member.replace(learner=learner, env_state=games, episode_stats=stats)

    def collect(member: MemberState, key, context: CollectContext):
        env_params = batched_env_params(env, member.env_params, num_envs)
        params = member.learner.params
        if with_league:
            search = None
            if lg.opponent_simulations > 0:
                search = functools.partial(_search_opponent, az.search, lg.opponent_simulations,
                                           0.0 if lg.opponent_temperature == 0 else 1.0, env_params)
            opponents = league_opponents(env, az.policy, member.league, member.env_state, params,
                                         lg.opponent_temperature, search)
            games, trajectory, firsts, (league, seat, opponent, results), env_params = az.self_play(
                params, member.env_state.games, member.hparams, key, env_params, opponents, context.reset_params
            )
            member = member.replace(env_state=LeagueGames(games, seat, opponent), league=league, episode_stats=results)
        else:
            games, trajectory, firsts, _, env_params = az.self_play(
                params, member.env_state, member.hparams, key, env_params, reset_params=context.reset_params
            )
            member = member.replace(env_state=games)
        member = member.replace(env_params=env_params)
        return member, AlphaZeroBatch(trajectory, firsts), outcome(trajectory)

    def update(learner_state, batch: AlphaZeroBatch, hparams: AlphaZeroHparams, key):
        learner_state = az.store(learner_state, batch.trajectory, batch.firsts)
        learner_state, metrics, count = az.train(learner_state, hparams, key)
        metrics.update(az.play_metrics(learner_state, batch.trajectory, count))
        return learner_state, metrics

    def summarize(member: MemberState, result: Outcome) -> dict:
        num_done = jnp.maximum(result.done.sum(), 1)
        metrics = dict(episode_return=result.episode_return.sum() / num_done)
        if with_league:
            r = member.episode_stats
            games = jnp.maximum(r.games, 1.0)
            score = r.score / games
            metrics.update(
                episode_return=2.0 * score - 1.0, score=score, games=r.games,
                score_vs_self=r.self_score / jnp.maximum(r.self_games, 1.0),
                score_vs_league=(r.score - r.self_score) / jnp.maximum(r.games - r.self_games, 1.0),
            )
        return metrics

    def act(params, observation, legal_action_mask, key, greedy: bool = False):
        logits, value = az.policy(params, observation, legal_action_mask)
        action, log_prob = choose_action(logits, key, greedy)
        return action, log_prob, value

    def value(params, observation):
        batch = observation.shape[: observation.ndim - len(env.observation_shape)]
        return az.policy(params, observation, jnp.ones(batch + (env.num_actions,), bool))[1]

    def search(params, env_state, key, num_simulations: int, greedy: bool = True, env_params=None, hparams=None):
        return az.act(params, env_state, key, num_simulations, greedy, env_params, hparams=hparams)

    return Learner(
        kind="alphazero", init=init, start=start, collect=collect, update=update, summarize=summarize,
        policy=az.policy, act=act, value=value, search=search, algorithm=az, game_starts=True,
    )


def outcome(trajectory: dict) -> Outcome:
    """The generic `Outcome` of a self-play trajectory ``[T, N]``, from the mover's side."""
    mover = trajectory["player"][..., None]
    done = trajectory["done"]
    reward = jnp.take_along_axis(trajectory["rewards"], mover, axis=-1)[..., 0]
    final = jnp.take_along_axis(trajectory["final_return"], mover, axis=-1)[..., 0]
    return Outcome(
        reward=reward, done=done, value=trajectory["network_value"],
        value_error=trajectory["search_value"] - trajectory["network_value"],
        episode_return=jnp.where(done, final, 0.0),
    )


def _search_opponent(search, num_simulations: int, gumbel_scale: float, env_params, bank, index, state, key):
    """int32[N]: every game's move by the search of its opponent's own network (``bank[index[n]]``)."""
    num = index.shape[0]
    networks = jax.tree.map(lambda x: x[index], bank)  # [N, ...]: one network per game

    def one(network, game, level, game_key):
        add = lambda x: x[None]  # noqa: E731
        output = search(network, jax.tree.map(add, game), game_key, num_simulations, gumbel_scale, jax.tree.map(add, level))
        return output.action[0]

    return jax.vmap(one)(networks, state, env_params, jax.random.split(key, num)).astype(jnp.int32)


def league_opponents(env: Env, policy, league, games: LeagueGames, params, temperature: float,
                     search=None) -> Opponents:
    """`Opponents` hooks that seat each game's league opponent (see the module docstring).

    ``search``: None (opponents play their raw policy at ``temperature``), or ``(bank, index,
    state, key) -> actions``: each opponent searches with its own snapshot's network."""
    from types import SimpleNamespace

    from superlearner.selfplay.league import SELF, record_results, sample_opponents
    from superlearner.selfplay.opponents import Match, opponent_policy, outcome_score, sample_moves

    num = games.seat.shape[0]
    zeros_f, zeros_i = jnp.zeros((num,), jnp.float32), jnp.zeros((num,), jnp.int32)

    def as_match(state, seat, opponent):
        return Match(game=state, seat=seat, opponent=opponent, learner_return=zeros_f, length=zeros_i,
                     pair=jnp.stack([opponent, opponent], axis=1))

    # The opponents' networks are gathered once per collection: snapshots do not change within it.
    start = as_match(games.games.env_state, games.seat, games.opponent)
    logits_of = None
    if search is None:
        # The learner's own moves, against itself too, come from its search: only snapshots need logits.
        logits_of = opponent_policy(SimpleNamespace(policy=policy), league, params, start, one_by_one=True,
                                    with_self=False)

    if search is not None:
        from superlearner.selfplay.opponents import opponent_bank

        bank = opponent_bank(league, params)

    def act(carry, state, key):
        _, seat, opponent, _ = carry
        if search is None:
            action = sample_moves(key, logits_of(as_match(state, seat, opponent)), temperature)
        else:
            action = search(bank, jnp.where(opponent == SELF, league.capacity, opponent), state, key)
        return action, (state.current_player == seat) | (opponent == SELF)

    def end(carry, done, episode_return, key):
        league, seat, opponent, results = carry
        learner_return = jnp.take_along_axis(episode_return, seat[:, None], axis=1)[:, 0]
        score = outcome_score(learner_return)
        league = record_results(league, opponent, score, done)
        ended = done.astype(jnp.float32)
        vs_self = ended * (opponent == SELF)
        results = LeagueResults(
            games=results.games + ended.sum(), score=results.score + (score * ended).sum(),
            self_games=results.self_games + vs_self.sum(), self_score=results.self_score + (score * vs_self).sum(),
        )
        seat_key, opponent_key = jax.random.split(key)
        new_seat = jax.random.randint(seat_key, (num,), 0, env.num_players, dtype=jnp.int32)
        new_opponent = sample_opponents(league, opponent_key, num)
        return league, jnp.where(done, new_seat, seat), jnp.where(done, new_opponent, opponent), results

    zero = jnp.float32(0)
    carry = (league, games.seat, games.opponent, LeagueResults(zero, zero, zero, zero))
    return Opponents(carry=carry, act=act, end=end)


def validate_alphazero(config, env: Env | None, source: str = "config") -> None:
    """AlphaZero's cross-field rules; a one-line `ConfigError` for a config it cannot train."""
    az = config.alphazero
    if az.min_replay_size > az.replay_capacity:
        raise ConfigError(
            f"{source}: alphazero.min_replay_size={az.min_replay_size} exceeds alphazero.replay_capacity="
            f"{az.replay_capacity}; accepted 1..{az.replay_capacity}"
        )
    if az.lr_schedule == "inverse_sqrt" and az.lr_timescale < 1:
        raise ConfigError(
            f"{source}: alphazero.lr_schedule=inverse_sqrt decays over alphazero.lr_timescale SGD steps, which is "
            f"{az.lr_timescale}; give 1 or more (e.g. 4000)"
        )
    if config.league.opponent_groups and env is not None and uses_league(config, env, ALPHAZERO_LEARNER):
        raise ConfigError(
            f"{source}: league.opponent_groups={config.league.opponent_groups}: alphazero draws each game's league "
            "opponent on its own (accepted: 0)"
        )
    if env is not None and not (searchable(env) or (env.num_players == 1 and getattr(env, "perfect_information", True))):
        raise ConfigError(
            f"{source}: learner.kind=alphazero searches with the real rules as its model, which needs a one-player "
            f"env or a two-player zero-sum game of perfect information; {env.id!r} is neither"
        )


def _section_fields() -> list:
    """The ``alphazero`` config section: the static settings (defaults from `AlphaZeroSettings`,
    the one place they are declared), run-level options, then the traced hyperparameters."""
    settings = {f.name: f for f in dataclasses.fields(AlphaZeroSettings)}
    derived = {"num_envs", "unroll_length", "max_depth", "decay_updates"}  # from learner.* and run options
    fields = []
    for name, f in settings.items():
        if name in derived:
            continue
        kind = {"int": int, "bool": bool}[f.type] if isinstance(f.type, str) else f.type
        fields.append((name, kind, field(
            f.default, "static: " + f.metadata["doc"], low=f.metadata.get("low"), high=f.metadata.get("high"))))
        if name == "max_num_considered_actions":
            fields.append(("max_depth", int, field(0, "static: deepest simulation in moves (0: no limit but num_simulations)", low=0)))
    fields += [
        ("lr_schedule", Literal["constant", "cosine", "inverse_sqrt"], field("constant", "static: step size over the run: constant, a cosine decay to zero over train.total_env_steps, or inverse_sqrt: learning_rate / sqrt(1 + t / lr_timescale) over SGD steps t, which needs no end point (runs set by train.time_limit_minutes)")),
        ("eval_simulations", int, field(64, "simulations per move of the loaded agent (eval, ratings, play; --simulations overrides; 0: raw policy)", low=0)),
    ]
    return fields + hparam_fields(ALPHAZERO_HPARAMS, prefix="traced: ")


AlphaZeroConfig = dataclasses.make_dataclass(
    "AlphaZeroConfig", _section_fields(), frozen=True,
    namespace={
        "__doc__": "Gumbel AlphaZero (``learner.kind: alphazero``). Games in parallel and moves per iteration are "
                   "``learner.num_envs`` and ``learner.num_steps``. Static settings set shapes or loop lengths, so "
                   "changing one recompiles; traced ones are starting values, one number or one per member, that a "
                   "meta-learner may change without recompiling.",
        "__module__": __name__,
    },
)

ALPHAZERO_LEARNER = LearnerDef(
    kind="alphazero", hparams=ALPHAZERO_HPARAMS, hparams_type=AlphaZeroHparams, section="alphazero",
    section_type=AlphaZeroConfig, make=make_alphazero_learner, validate=validate_alphazero, self_play_league=False,
    description="Gumbel AlphaZero: self-play with tree search on the real rules, a replay buffer, a residual net",
)
