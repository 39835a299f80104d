"""Self-play experience for turn-based two-player zero-sum games.

Each of the N games seats the learner at random as player 0 or 1 and draws its opponent from the
league (the current self, or a frozen snapshot). One rollout step is one *learner decision*: the
learner moves, then the opponent replies until it is the learner's turn again (starting a new
game, with a new seat and opponent, whenever one ends). From the learner's side this is a
single-agent task, so GAE and PPO apply unchanged:

* the reward of a step is the learner's own reward summed over its move and the replies;
* a step is final when the game ended after the learner's move or after the replies;
* the next value is the learner's value at its next decision in the same game, from its own
  point of view (observations are always the mover's view, so no sign flip is needed).

A game's opening reply (when the learner sits second) belongs to no learner transition.

**Opponent groups.** Every game has its own opponent, so a reply would run each league
opponent's network (up to ``C + 1`` of them) over the games. With ``groups = G > 0`` the N games
are split into G equal blocks, and the new games of a block share one opponent drawn (from the
same mixture) at the start of a rollout: each block holds a pair (previous, current) of
opponents, its games started in an earlier rollout play the previous one, and a block draws a
new current opponent only once none of its games still plays the previous one. A reply then
runs two networks per block, whatever the league's size. A game keeps its opponent from its
first move to its last, as without groups; what changes is that the games a block starts
within one rollout face the same opponent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.core.env import Env, State
from superlearner.learners.ppo import PPO
from superlearner.selfplay.league import SELF, LeagueState, record_results, sample_opponents
from superlearner.selfplay.opponents import Match, group_pairs, opponent_policy, outcome_score
from superlearner.selfplay.opponents import sample_moves as _sample
from superlearner.learners.rollout import assemble_rollout, next_values


@struct.dataclass
class SelfPlayStats:
    """Results of games finished in the last rollout (per member)."""

    games: jax.Array  # float32[], games finished
    score: jax.Array  # float32[], mean learner score over them (1 win, 1/2 draw, 0 loss)
    score_vs_self: jax.Array  # float32[], mean score in games against the current self
    score_vs_league: jax.Array  # float32[], mean score against snapshots
    length: jax.Array  # float32[], mean game length in moves


def new_matches(
    env: Env, league: LeagueState, key: jax.Array, num: int, env_params, opening_moves: int = 0, groups: int = 0
) -> Match:
    """``num`` fresh games with random seats and opponents drawn from the league.

    With ``opening_moves`` (static) > 0, each game first plays a uniformly drawn number in
    ``0..opening_moves`` of uniformly random legal plies, which belong to neither player, so
    that training sees varied positions (random openings, as in the arena). A ply that would
    end the game is not played. With ``groups`` (static) > 0, one opponent is drawn per group
    of ``num // groups`` consecutive games (see the module docstring).
    """
    seat_key, opponent_key, reset_key, opening_key = jax.random.split(key, 4)
    games = jax.vmap(env.reset)(jax.random.split(reset_key, num), env_params)
    if opening_moves > 0:
        games = _random_plies(env, games, opening_key, opening_moves, env_params)
    if groups:
        opponent = jnp.repeat(sample_opponents(league, opponent_key, groups), num // groups)
    else:
        opponent = sample_opponents(league, opponent_key, num)
    return Match(
        game=games,
        seat=jax.random.randint(seat_key, (num,), 0, env.num_players, dtype=jnp.int32),
        opponent=opponent,
        learner_return=jnp.zeros((num,), jnp.float32),
        length=jnp.zeros((num,), jnp.int32),
        pair=jnp.stack([opponent, opponent], axis=1),
    )


def next_pairs(league: LeagueState, matches: Match, key: jax.Array, groups: int) -> Match:
    """Starts a rollout with opponent groups: a group whose games all play its current opponent
    moves it to the previous place and draws a new current one; a group with a game still
    playing its previous opponent keeps its pair. ``key`` is consumed."""
    pairs, size = group_pairs(matches, groups)
    settled = jnp.all((matches.opponent == matches.pair[:, 1]).reshape(groups, size), axis=1)
    drawn = sample_opponents(league, key, groups)
    pairs = jnp.where(settled[:, None], jnp.stack([pairs[:, 1], drawn], axis=1), pairs)
    return matches.replace(pair=jnp.repeat(pairs, size, axis=0))


def collect_self_play(
    env: Env,
    learner: PPO,
    params,
    league: LeagueState,
    matches: Match,
    env_params,
    key: jax.Array,
    num_steps: int,
    opening_moves: int = 0,
    groups: int = 0,
    opponent_temperature: float = 1.0,
    with_returns: bool = False,
):
    """Runs ``num_steps`` learner decisions in each of the N games of ``matches``.

    ``matches`` must be at a learner decision (the engine keeps it so between rollouts); new
    games open with up to ``opening_moves`` random plies (static; see `new_matches`). With
    ``groups`` (static) > 0, opponents are drawn per group of games (see the module docstring;
    ``matches`` must come from `new_matches` with the same ``groups``). The opponents sample
    their moves at ``opponent_temperature`` (static; 0: each plays its most probable move).

    Returns:
      ``(matches, league, rollout, stats)``: the games to continue from, the league with the
      finished games' results folded in, a `Rollout` with leading axes ``[T, N]``, and
      `SelfPlayStats`; ``with_returns`` adds float32[T, N], the learner's return of the game
      that ended at each step (0 where none did).
    """
    num = matches.seat.shape[0]
    vstep = jax.vmap(env.step)
    if groups:
        key, pair_key = jax.random.split(key)
        matches = next_pairs(league, matches, pair_key, groups)
    opponent_logits = opponent_policy(learner, league, params, matches, groups)

    def opponent_actions(matches: Match, key):
        return _sample(key, opponent_logits(matches), opponent_temperature)

    def advance(matches: Match, actions, movers, key):
        """Applies ``actions`` in the games where ``movers``; returns rewards for the learner."""
        stepped = vstep(matches.game, actions, jax.random.split(key, num))
        game = jax.tree.map(lambda a, b: jnp.where(_bcast(movers, a), a, b), stepped, matches.game)
        reward = jnp.where(movers, jnp.take_along_axis(stepped.rewards, matches.seat[:, None], 1)[:, 0], 0.0)
        return matches.replace(
            game=game,
            learner_return=matches.learner_return + reward,
            length=matches.length + movers.astype(jnp.int32),
        ), reward

    def finish_and_restart(matches: Match, league: LeagueState, key, results):
        """Records ended games and replaces them by fresh ones."""
        ended = matches.game.terminated | matches.game.truncated
        old_pair = matches.pair
        league = record_results(league, matches.opponent, outcome_score(matches.learner_return), ended)
        results = _add_results(results, matches, ended)
        fresh = new_matches(env, league, key, num, env_params, opening_moves)
        matches = jax.tree.map(lambda a, b: jnp.where(_bcast(ended, a), a, b), fresh, matches)
        if groups:
            # A new game plays its group's current opponent. This is set after the select: had the
            # fresh games read the carried pair before it, XLA's CPU fusion would recompute their
            # random opening plies (a 2.5x slower rollout, measured).
            matches = matches.replace(pair=old_pair, opponent=jnp.where(ended, old_pair[:, 1], matches.opponent))
        return matches, league, results

    def body(carry, step_key):
        matches, league, results = carry
        act_key, move_key, *reply_keys = jax.random.split(step_key, 8)
        game = matches.game
        action, log_prob, value = learner.act(params, game.observation, game.legal_action_mask, act_key)
        matches, reward = advance(matches, action, jnp.ones((num,), bool), move_key)
        done = matches.game.terminated | matches.game.truncated
        episode_return = jnp.where(done, matches.learner_return, 0.0)
        matches, league, results = finish_and_restart(matches, league, reply_keys[0], results)
        # Up to two replies: one in the same game, and one opening a new game where the learner
        # sits second (after a game that ended on the first reply).
        for reply in range(2):
            k_act, k_step, k_new = jax.random.split(reply_keys[1 + reply], 3)
            live = ~(matches.game.terminated | matches.game.truncated)
            movers = live & (matches.game.current_player != matches.seat)
            same_game = movers & ~done
            matches, opp_reward = advance(matches, opponent_actions(matches, k_act), movers, k_step)
            reward = reward + jnp.where(same_game, opp_reward, 0.0)
            ends_now = same_game & (matches.game.terminated | matches.game.truncated)
            episode_return = jnp.where(ends_now, matches.learner_return, episode_return)
            done = done | ends_now
            matches, league, results = finish_and_restart(matches, league, k_new, results)
        out = dict(
            observation=game.observation,
            legal_action_mask=game.legal_action_mask,
            action=action,
            log_prob=log_prob,
            value=value,
            reward=reward,
            done=done,
            episode_return=episode_return,
        )
        return (matches, league, results), out

    results = dict(
        games=jnp.float32(0), score=jnp.float32(0), self_games=jnp.float32(0), self_score=jnp.float32(0),
        length=jnp.float32(0),
    )
    (matches, league, results), out = jax.lax.scan(body, (matches, league, results), jax.random.split(key, num_steps))
    done = out["done"]
    next_value = next_values(out["value"], learner.value(params, matches.game.observation))
    rollout = assemble_rollout(out, jnp.where(done, 0.0, next_value), done)
    games = jnp.maximum(results["games"], 1.0)
    league_games = results["games"] - results["self_games"]
    stats = SelfPlayStats(
        games=results["games"],
        score=results["score"] / games,
        score_vs_self=results["self_score"] / jnp.maximum(results["self_games"], 1.0),
        score_vs_league=(results["score"] - results["self_score"]) / jnp.maximum(league_games, 1.0),
        length=results["length"] / games,
    )
    if with_returns:
        return matches, league, rollout, stats, out["episode_return"]
    return matches, league, rollout, stats


def zero_stats() -> SelfPlayStats:
    """`SelfPlayStats` of no games (a member's statistics before its first rollout)."""
    zero = jnp.float32(0)
    return SelfPlayStats(games=zero, score=zero, score_vs_self=zero, score_vs_league=zero, length=zero)


def _add_results(results: dict, matches: Match, ended: jax.Array) -> dict:
    ended_f = ended.astype(jnp.float32)
    score = outcome_score(matches.learner_return) * ended_f
    vs_self = ended_f * (matches.opponent == SELF)
    return dict(
        games=results["games"] + ended_f.sum(),
        score=results["score"] + score.sum(),
        self_games=results["self_games"] + vs_self.sum(),
        self_score=results["self_score"] + (score * vs_self).sum(),
        length=results["length"] + (matches.length * ended_f).sum(),
    )


def _random_plies(env: Env, games: State, key: jax.Array, max_plies: int, env_params) -> State:
    """Plays ``0..max_plies`` (uniform per game) random legal plies in each of the N games."""
    num = games.current_player.shape[0]
    count_key, *ply_keys = jax.random.split(key, max_plies + 1)
    count = jax.random.randint(count_key, (num,), 0, max_plies + 1)
    for ply, ply_key in enumerate(ply_keys):
        act_key, step_key = jax.random.split(ply_key)
        logits = jnp.where(games.legal_action_mask, 0.0, -jnp.inf)
        actions = jax.random.categorical(act_key, logits).astype(jnp.int32)
        stepped = jax.vmap(env.step)(games, actions, jax.random.split(step_key, num))
        keep = (ply < count) & ~(stepped.terminated | stepped.truncated)
        games = jax.tree.map(lambda a, b: jnp.where(_bcast(keep, a), a, b), stepped, games)
    return games


def _bcast(mask: jax.Array, like: jax.Array) -> jax.Array:
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def to_learner_decision(
    env: Env, league: LeagueState, matches: Match, key: jax.Array, learner: PPO, params, groups: int = 0,
    opponent_temperature: float = 1.0,
) -> Match:
    """Plays the opponent's opening move in games where the learner sits second, so every game
    starts at a learner decision (used once, after the first reset)."""
    num = matches.seat.shape[0]
    logits = opponent_policy(learner, league, params, matches, groups)(matches)
    act_key, step_key = jax.random.split(key)
    actions = _sample(act_key, logits, opponent_temperature)
    movers = matches.game.current_player != matches.seat
    stepped = jax.vmap(env.step)(matches.game, actions, jax.random.split(step_key, num))
    game = jax.tree.map(lambda a, b: jnp.where(_bcast(movers, a), a, b), stepped, matches.game)
    return matches.replace(game=game, length=matches.length + movers.astype(jnp.int32))
