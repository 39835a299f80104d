"""Players and matches of the command line: kinds of players (a network's policy, the league's
policy, an anchor), one compiled match per pair of kinds, reports of wins, draws and losses per
seat, the opponents ``--opponent`` names, and the exact exploitability of games that declare it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.errors import UserError
from superlearner.selfplay.arena import KindFn


def policy_kind(policy_fn, greedy: bool) -> KindFn:
    """A network policy ``policy_fn(params, observation, mask) -> (logits, value)`` as a kind:
    the argmax move (``greedy``) or a sample from the masked softmax (``key`` consumed)."""
    from superlearner.selfplay.arena import from_policy

    def act(params, key, states):
        return from_policy(policy_fn, params, greedy)(key, states)

    return act


def league_kind(policy_fn, greedy: bool) -> KindFn:
    """The league's policy (`superlearner.selfplay.arena.from_league`) as a kind; its ``params`` are
    ``{"snapshots": pytree [C, ...], "weights": float32[C], "choice_key": uint32 key data}``, see
    `league_params`. One snapshot per game, drawn from the weights."""
    from superlearner.selfplay.arena import from_league

    def act(params, key, states):
        choice_key = jax.random.wrap_key_data(params["choice_key"])
        return from_league(policy_fn, params["snapshots"], params["weights"], choice_key, greedy)(key, states)

    return act


def league_params(league, key: jax.Array) -> dict:
    """The `league_kind` parameters of one member's `LeagueState`: its snapshots weighted by
    its meta-strategy (empty slots get 0), and the key of the per-game draw."""
    weights = jnp.asarray(league.meta_strategy) * jnp.asarray(league.filled)
    return {"snapshots": league.params, "weights": weights, "choice_key": jax.random.key_data(key)}


def anchor_kind(anchor) -> KindFn:
    """An anchor ``act(key, state)`` (one state) as a kind; its ``params`` argument is ignored."""
    from superlearner.selfplay.arena import from_anchor

    batched = from_anchor(anchor)

    def act(params, key, states):
        del params
        return batched(key, states)

    return act


def make_pair_match(env, kind_a: KindFn, kind_b: KindFn, num_games: int, opening_moves: int, first_moves=None):
    """A jitted ``match(params_a, params_b, key) -> (returns_a float32[G], seat_a int32[G])``.

    Player A sits first in the first half of the ``num_games`` games and second in the other;
    ``first_moves`` (int[G] or None) forces each game's first ply, and the first
    ``opening_moves`` plies of every game are uniformly random (see
    `superlearner.selfplay.arena.make_match_fn`). ``key`` is consumed.
    """
    from superlearner.selfplay.arena import make_match_fn

    def match(params_a, params_b, key):
        player_a = lambda k, s: kind_a(params_a, k, s)  # noqa: E731
        player_b = lambda k, s: kind_b(params_b, k, s)  # noqa: E731
        return make_match_fn(env, player_a, player_b, num_games, opening_moves, first_moves=first_moves)(key)

    return jax.jit(match)


def match_report(returns, seat_a) -> dict:
    """Player A's record from the ``returns_a`` and ``seat_a`` of a match.

    A game is a win when A's return is positive, a loss when negative, else a draw. Returns a
    JSON-ready dict: ``wins``, ``draws``, ``losses``, ``games``, ``score`` with its 95% Wilson
    interval ``score_low``/``score_high``, ``mean_return`` (chips in poker) and ``seats`` with
    the same record for the games A played ``first`` and ``second``.
    """
    from superlearner.selfplay.ratings import score_summary

    returns = np.asarray(returns, np.float64)
    seat_a = np.asarray(seat_a)

    def record(select) -> dict:
        r = returns[select]
        s = score_summary(int((r > 0).sum()), int((r == 0).sum()), int((r < 0).sum()))
        return {
            "wins": s.wins, "draws": s.draws, "losses": s.losses, "games": s.games,
            "score": s.score, "score_low": s.low, "score_high": s.high,
            "mean_return": float(r.mean()) if r.size else 0.0,
        }

    out = record(np.ones(returns.shape, bool))
    out["seats"] = {"first": record(seat_a == 0), "second": record(seat_a == 1)}
    return out


def first_move_report(returns, seat_a, first_moves) -> dict:
    """Player A's record per forced first move: ``{move: {"first": record, "second": record}}``
    (records as in `match_report`), for games opened by `superlearner.selfplay.arena.all_first_moves`."""
    returns, seat_a, first_moves = np.asarray(returns), np.asarray(seat_a), np.asarray(first_moves)
    out = {}
    for move in np.unique(first_moves):
        select = first_moves == move
        report = match_report(returns[select], seat_a[select])
        out[str(int(move))] = report["seats"]
    return out


def exact_lines_against_perfect(agent) -> dict:
    """The greedy agent against every line of perfect play, in both seats, from the start and
    each first move, for games that declare ``solved_action_values``
    (`superlearner.selfplay.anchors.lines_against_perfect`)."""
    from superlearner.selfplay.anchors import lines_against_perfect

    policy = jax.jit(agent.engine.learner.policy)

    def choose(state) -> int:
        if agent.num_simulations > 0:  # search without noise: deterministic, the key is unused
            return int(agent.act(jax.random.key(0), state, greedy=True))
        logits, _ = policy(agent.params, state.observation[None], state.legal_action_mask[None])
        return int(np.argmax(np.asarray(logits[0])))

    return lines_against_perfect(agent.env, choose)


def record_line(record: dict) -> str:
    return (
        f"+{record['wins']} ={record['draws']} -{record['losses']}  score {record['score']:.3f} "
        f"(95% CI {record['score_low']:.3f}..{record['score_high']:.3f})"
    )


def even_games(games: int, option: str = "--games") -> int:
    """Games rounded up to an even number, so both seats play equally often."""
    if games < 2:
        raise UserError(f"{option} {games}: must be at least 2 (half of the games are played in each seat)")
    return games + games % 2


def openings_of(args, config) -> str:
    from superlearner.selfplay.arena import OPENINGS

    openings = getattr(args, "openings", None) or config.arena.openings
    if openings not in OPENINGS:
        raise UserError(f"--openings {openings}: accepted: {', '.join(OPENINGS)}")
    return openings


def opening_moves_of(args, config) -> int:
    opening = config.arena.opening_moves if args.opening_moves is None else args.opening_moves
    if opening < 0:
        raise UserError(f"--opening-moves {opening}: must be 0 or more")
    return opening


@dataclasses.dataclass(frozen=True)
class Opponent:
    """Who the agent plays: a display ``name``, a `KindFn` and its ``params`` (None for anchors)."""

    name: str
    kind: KindFn
    params: Any = None
    deterministic: bool = False


def make_opponent(env, spec: str, greedy: bool) -> Opponent:
    """The opponent named by an ``--opponent`` spec: an anchor (see `superlearner.selfplay.anchors`) or
    ``checkpoint:PATH``, another trained agent of the same env (greedy unless ``greedy`` is
    false). Raises UserError naming the accepted specs."""
    from superlearner.selfplay.anchors import make_anchor

    spec = spec.strip()
    name, _, rest = spec.partition(":")
    if name == "checkpoint":
        if not rest:
            raise UserError("--opponent checkpoint:PATH needs the path of a run directory or checkpoint")
        from superlearner.run.agent import load_agent

        other = load_agent(rest, greedy=greedy)  # an alphazero run searches with its eval_simulations
        if other.env.id != env.id or other.env.version != env.version:
            raise UserError(
                f"--opponent {spec}: that agent plays {other.env.id} v{other.env.version}, "
                f"this one {env.id} v{env.version}"
            )
        if (other.env.num_actions, tuple(other.env.observation_shape)) != (env.num_actions, tuple(env.observation_shape)):
            raise UserError(f"--opponent {spec}: that agent's env has other options (action or observation shapes differ)")
        return Opponent(f"{rest} (iteration {other.step})", other.kind_of(greedy), other.params, deterministic=greedy)
    try:
        anchor = make_anchor(env, spec)
    except UserError as error:
        extra = "checkpoint:PATH" + (", best-response" if env.exploitability is not None else "")
        raise UserError(f"--opponent {spec}: {error}; or {extra}") from None
    return Opponent(spec, anchor_kind(anchor))


def best_response_report(env, policy_fn, params, league=None) -> dict:
    """The exact exploitability (NashConv / 2) of a network policy and of its league.

    Args:
      env: an env that declares ``exploitability`` (and ``info_states``).
      policy_fn: ``policy_fn(params, observation, mask) -> (logits, value)``.
      params: the agent's network parameters.
      league: the agent's `LeagueState` (one member's, snapshot axis C first on ``params``), or None.

    Returns:
      ``exploitability`` of the agent's action probabilities, ``exploitability_greedy`` of the
      argmax policy it plays by default, and (with a league) ``exploitability_league`` of the
      league's policy: one snapshot per game drawn from the league's meta-strategy (exactly the
      mixture training plays and logs, `superlearner.selfplay.arena.league_exploitability`), with
      ``league_policies``, how many snapshots have weight in it.
    """
    from superlearner.selfplay.arena import info_state_policy, league_exploitability, league_weights

    probabilities = jax.jit(info_state_policy(env, policy_fn))
    current = np.asarray(probabilities(params), np.float64)  # [I, A]
    # The argmax among the legal actions of each information state.
    legal = np.asarray(env.info_states().legal_action_masks, bool)
    greedy = np.eye(env.num_actions)[np.argmax(np.where(legal, current, -1.0), axis=-1)]
    out = {
        "exploitability": float(env.exploitability(current)),
        "exploitability_greedy": float(env.exploitability(greedy)),
    }
    if league is not None and hasattr(league, "params") and hasattr(league, "filled"):
        snapshots = np.asarray(jax.vmap(probabilities)(league.params), np.float64)  # [C, I, A]
        out["exploitability_league"] = league_exploitability(env, snapshots, league)
        out["league_policies"] = int((league_weights(league) > 0).sum())
    return out
