"""The command-line arena: games against anchors and other runs, held-out levels, ratings, play.

The commands behind ``superlearner eval --opponent/--levels/--svg``, ``superlearner ratings`` and
``superlearner play``. Each ``cmd_*`` takes the parsed arguments of `superlearner.cli` and returns
an exit status; mistakes a user can make raise `UserError` (one line, exit status 2).

The array work is in pure, reusable pieces the commands only print:

* `make_pair_match`: one compiled match function per pair of player *kinds*; the players'
  parameters are jit arguments, so every pair of checkpoints reuses one program.
* `match_report`: win/draw/loss, the score with a 95% interval, per seat.
* `evaluate_named_levels` / `evaluate_sampled_levels`: solve rates on held-out levels, and the
  conditional value at risk (CVaR) over sampled levels, re-measured so the selection of the
  worst levels does not bias it.
* `kuhn_best_response_report`: the exact exploitability of a Kuhn poker agent and its league.
* `game_svg`: an animated SVG of a game or an episode.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable
from xml.sax.saxutils import escape

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.errors import UserError

KindFn = Callable[[Any, jax.Array, Any], jax.Array]
"""``act(params, key, states) -> int32[B]``: a kind of player; ``params`` (a pytree, or None for
anchors) is passed at call time so one compiled program serves every player of the kind."""

CVAR_FRACTIONS = (0.01, 0.1)
# Past this many moves an SVG shows every k-th position (and always the last), to stay small.
MAX_SVG_FRAMES = 120
SECONDS_PER_FRAME = 0.8


# ---------------------------------------------------------------------------------------------
# Players and matches.


def policy_kind(policy_fn, greedy: bool) -> KindFn:
    """A network policy ``policy_fn(params, observation, mask) -> (logits, value)`` as a kind:
    the argmax move (``greedy``) or a sample from the masked softmax (``key`` consumed)."""
    from superlearner.arena import from_policy

    def act(params, key, states):
        return from_policy(policy_fn, params, greedy)(key, states)

    return act


def league_kind(policy_fn, greedy: bool) -> KindFn:
    """The league's policy (`superlearner.arena.from_league`) as a kind; its ``params`` are
    ``{"snapshots": pytree [C, ...], "weights": float32[C], "choice_key": uint32 key data}``, see
    `league_params`. One snapshot per game, drawn from the weights."""
    from superlearner.arena import from_league

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
    from superlearner.arena import from_anchor

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
    `superlearner.arena.make_match_fn`). ``key`` is consumed.
    """
    from superlearner.arena import make_match_fn

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
    from superlearner.ratings import score_summary

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
    (records as in `match_report`), for games opened by `superlearner.arena.all_first_moves`."""
    returns, seat_a, first_moves = np.asarray(returns), np.asarray(seat_a), np.asarray(first_moves)
    out = {}
    for move in np.unique(first_moves):
        select = first_moves == move
        report = match_report(returns[select], seat_a[select])
        out[str(int(move))] = report["seats"]
    return out


def exact_lines_against_perfect(agent) -> dict:
    """The greedy agent against every line of perfect tic-tac-toe play, in both seats, from the
    empty board and each first move (`superlearner.anchors.tic_tac_toe_lines_against_perfect`)."""
    from superlearner.anchors import tic_tac_toe_lines_against_perfect

    policy = jax.jit(agent.engine.learner.policy)

    def choose(state) -> int:
        if agent.num_simulations > 0:  # search without noise: deterministic, the key is unused
            return int(agent.act(jax.random.key(0), state, greedy=True))
        logits, _ = policy(agent.params, state.observation[None], state.legal_action_mask[None])
        return int(np.argmax(np.asarray(logits[0])))

    return tic_tac_toe_lines_against_perfect(agent.env, choose)


def _record_line(record: dict) -> str:
    return (
        f"+{record['wins']} ={record['draws']} -{record['losses']}  score {record['score']:.3f} "
        f"(95% CI {record['score_low']:.3f}..{record['score_high']:.3f})"
    )


def _even_games(games: int, option: str = "--games") -> int:
    """Games rounded up to an even number, so both seats play equally often."""
    if games < 2:
        raise UserError(f"{option} {games}: must be at least 2 (half of the games are played in each seat)")
    return games + games % 2


def _openings(args, config) -> str:
    from superlearner.arena import OPENINGS

    openings = getattr(args, "openings", None) or config.arena.openings
    if openings not in OPENINGS:
        raise UserError(f"--openings {openings}: accepted: {', '.join(OPENINGS)}")
    return openings


def _opening_moves(args, config) -> int:
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
    """The opponent named by an ``--opponent`` spec: an anchor (see `superlearner.anchors`) or
    ``checkpoint:PATH``, another trained agent of the same env (greedy unless ``greedy`` is
    false). Raises UserError naming the accepted specs."""
    from superlearner.anchors import make_anchor

    spec = spec.strip()
    name, _, rest = spec.partition(":")
    if name == "checkpoint":
        if not rest:
            raise UserError("--opponent checkpoint:PATH needs the path of a run directory or checkpoint")
        from superlearner.agent import load_agent

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
        extra = "checkpoint:PATH" + (", best-response" if env.id == "kuhn_poker" else "")
        raise UserError(f"--opponent {spec}: {error}; or {extra}") from None
    return Opponent(spec, anchor_kind(anchor))


# ---------------------------------------------------------------------------------------------
# Kuhn poker: exact exploitability.


def kuhn_best_response_report(env, policy_fn, params, league=None) -> dict:
    """The exact exploitability (NashConv / 2) of a Kuhn poker network policy and of its league.

    Args:
      env: the kuhn_poker env.
      policy_fn: ``policy_fn(params, observation, mask) -> (logits, value)``.
      params: the agent's network parameters.
      league: the agent's `LeagueState` (one member's, snapshot axis C first on ``params``), or None.

    Returns:
      ``exploitability`` of the agent's action probabilities, ``exploitability_greedy`` of the
      argmax policy it plays by default, and (with a league) ``exploitability_league`` of the
      league's policy: one snapshot per game drawn from the league's meta-strategy (exactly the
      mixture training plays and logs, `superlearner.arena.kuhn_league_policy`), with
      ``league_policies``, how many snapshots have weight in it.
    """
    from superlearner.anchors import kuhn_exploitability
    from superlearner.arena import kuhn_league_policy, kuhn_observations, kuhn_policy_table

    observations = jnp.asarray(kuhn_observations(env))
    mask = jnp.ones((observations.shape[0], env.num_actions), bool)

    @jax.jit
    def probabilities(p):
        logits, _ = policy_fn(p, observations, mask)
        return jax.nn.softmax(logits, axis=-1)

    current = np.asarray(probabilities(params), np.float64)  # [12, 2]
    greedy = np.eye(env.num_actions)[np.argmax(current, axis=-1)]
    out = {
        "exploitability": float(kuhn_exploitability(kuhn_policy_table(current))),
        "exploitability_greedy": float(kuhn_exploitability(kuhn_policy_table(greedy))),
    }
    if league is not None and hasattr(league, "params") and hasattr(league, "filled"):
        snapshots = np.asarray(jax.vmap(probabilities)(league.params), np.float64)  # [C, 12, 2]
        mixture = kuhn_league_policy(snapshots, league)
        out["exploitability_league"] = float(kuhn_exploitability(kuhn_policy_table(mixture)))
        out["league_policies"] = int((np.asarray(league.meta_strategy) * np.asarray(league.filled) > 0).sum())
    return out


# ---------------------------------------------------------------------------------------------
# Levels.


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
    from superlearner.evaluate import run_episodes

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
    from superlearner.evaluate import run_episodes

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


def _has_levels(env) -> bool:
    return getattr(env, "level_space", None) is not None


# ---------------------------------------------------------------------------------------------
# SVG of one game.


_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([\d.]+)"[^>]*?\bheight="([\d.]+)"')


def _text_frame(text: str) -> str:
    """A monospace SVG picture of ``text`` (for envs without an SVG rendering)."""
    lines = text.splitlines() or [""]
    width = 16 + 8 * max(len(line) for line in lines)
    height = 12 + 16 * len(lines)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, line in enumerate(lines):
        parts.append(
            f'<text x="8" y="{20 + 16 * i}" font-family="monospace" font-size="13" xml:space="preserve">'
            f"{escape(line)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_frame(env, state) -> str:
    """``env.render_svg(state)``, or the text rendering drawn as SVG when the env has none."""
    try:
        return env.render_svg(state)
    except NotImplementedError:
        return _text_frame(env.render_text(state))


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + ([line] if line else [])


def animated_svg(
    frames: list[str], captions: list[str], footer: str, seconds_per_frame: float = SECONDS_PER_FRAME
) -> str:
    """One SVG that shows ``frames`` (SVG documents of equal size) in turn, looping.

    Each frame is a group whose visibility a discrete SMIL ``<animate>`` switches on for its
    time slot; the last frame is held for three slots. The last frame is also visible without
    animation, so a viewer without SMIL shows the final position. ``captions[i]`` is written
    under frame i and ``footer`` (e.g. the move list) under all of them.
    """
    if not frames:
        raise ValueError("animated_svg needs at least one frame")
    size = _SIZE.search(frames[0])
    frame_w, frame_h = (float(size.group(1)), float(size.group(2))) if size else (300.0, 300.0)
    width = max(frame_w, 360.0)
    footer_lines = _wrap(footer, max(20, int(width // 7)))
    height = frame_h + 26 + 16 * len(footer_lines) + 6
    num = len(frames)
    slots = num + 2
    duration = slots * seconds_per_frame
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}">',
        f'<rect width="{width:g}" height="{height:g}" fill="white"/>',
    ]
    for i, (frame, caption) in enumerate(zip(frames, captions)):
        last = i == num - 1
        parts.append(f'<g visibility="{"visible" if last else "hidden"}">')
        if num > 1:
            start, end = i / slots, (i + 1) / slots
            if i == 0:
                values, times = "visible;hidden", f"0;{end:.6g}"
            elif last:
                values, times = "hidden;visible", f"0;{start:.6g}"
            else:
                values, times = "hidden;visible;hidden", f"0;{start:.6g};{end:.6g}"
            parts.append(
                f'<animate attributeName="visibility" calcMode="discrete" values="{values}" '
                f'keyTimes="{times}" dur="{duration:g}s" repeatCount="indefinite"/>'
            )
        parts.append(frame)
        parts.append(
            f'<text x="6" y="{frame_h + 18:g}" font-family="sans-serif" font-size="13">{escape(caption)}</text>'
        )
        parts.append("</g>")
    for k, line in enumerate(footer_lines):
        parts.append(
            f'<text x="6" y="{frame_h + 38 + 16 * k:g}" font-family="monospace" font-size="12">{escape(line)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _thin(count: int) -> list[int]:
    """Indices of the frames kept out of ``count``: all, or evenly spaced with the last."""
    if count <= MAX_SVG_FRAMES:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, MAX_SVG_FRAMES).round().astype(int).tolist()))


def game_svg(
    env,
    players: list[tuple[str, KindFn, Any]],
    key: jax.Array,
    opening_moves: int = 0,
    params=None,
    max_moves: int = 10_000,
) -> tuple[str, dict]:
    """Plays one game (or, with one player, one episode) and draws it as an animated SVG.

    Args:
      env: the env.
      players: per seat, ``(name, kind, kind_params)``.
      key: consumed.
      opening_moves: the first plies are uniformly random legal moves (as in the arena).
      params: the level (``env.default_params`` when None).
      max_moves: a bound on the game's length.

    Returns:
      ``(svg, summary)``, the summary with ``moves`` (text), ``movers`` and ``rewards``.
    """
    from superlearner.anchors import random_act

    reset = jax.jit(env.reset)
    step = jax.jit(env.step)
    acts = [
        jax.jit(lambda p, k, s, kind=kind: kind(p, k, jax.tree.map(lambda x: x[None], s))[0])
        for _, kind, _ in players
    ]
    opening = jax.jit(random_act)
    reset_key, key = jax.random.split(key)
    state = reset(reset_key, params)
    states, moves, movers = [state], [], []
    rewards = np.zeros(env.num_players)
    while not bool(state.terminated | state.truncated) and len(moves) < max_moves:
        mover = int(state.current_player)
        key, act_key, step_key = jax.random.split(key, 3)
        if len(moves) < opening_moves:
            action = int(opening(act_key, state))
            movers.append("opening")
        else:
            name, _, kind_params = players[mover]
            action = int(acts[mover](kind_params, act_key, state))
            movers.append(name)
        moves.append(env.action_to_text(action))
        state = step(state, jnp.int32(action), step_key, params)
        rewards += np.asarray(state.rewards, np.float64)
        states.append(state)
    keep = _thin(len(states))
    frames = [render_frame(env, states[i]) for i in keep]
    captions = []
    for i in keep:
        if i == 0:
            captions.append("start")
        else:
            captions.append(f"move {i}: {movers[i - 1]} plays {moves[i - 1]}")
    names = " vs ".join(f"{name} (player {seat})" for seat, (name, _, _) in enumerate(players))
    result = ", ".join(f"player {p} {r:+g}" for p, r in enumerate(rewards))
    captions[-1] += f"  |  result: {result}"
    footer = f"{env.id}: {names}. Moves: {' '.join(moves) or '(none)'}. Result: {result}."
    summary = {"moves": moves, "movers": movers, "rewards": rewards.tolist()}
    return animated_svg(frames, captions, footer), summary


def _write_text(path: str, text: str, option: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as error:
        raise UserError(f"{option} {path}: cannot write the file ({error.strerror or error})") from None


# ---------------------------------------------------------------------------------------------
# eval


def cmd_eval(args) -> int:
    """``superlearner eval PATH --opponent SPEC | --levels SPEC | --svg PATH``."""
    from superlearner.agent import load_agent

    if args.opponent is not None and args.levels is not None:
        raise UserError("--opponent and --levels measure different things (two-player games, levelled envs); give one")
    if args.levels is not None:
        parse_levels_spec(args.levels)
    if args.opponent is not None:
        _even_games(args.games)
        if args.svg and args.opponent.strip() == "best-response":
            raise UserError("--svg: best-response is computed exactly, no game is played; use another --opponent for an SVG")
    if args.svg:
        _check_writable(args.svg, "--svg")
    agent = load_agent(args.path, greedy=not args.sample, num_simulations=search_simulations(args))
    check_eval_request(agent.env, args.opponent, args.levels)
    if agent.env.num_players == 1:
        return _eval_single(agent, args)
    return _eval_game(agent, args)


def check_eval_request(env, opponent: str | None, levels: str | None) -> None:
    """Raises UserError when ``env`` cannot be evaluated as asked: ``--opponent`` on a
    single-agent env, ``--levels`` on an env without levels (or a bad levels spec)."""
    if env.num_players == 1 and opponent is not None:
        raise UserError(
            f"--opponent {opponent}: {env.id} is a single-agent env; --opponent is for two-player "
            "games (use --episodes, or --levels for envs with levels)"
        )
    if levels is None:
        return
    kind, _ = parse_levels_spec(levels)
    if env.num_players != 1 or not _has_levels(env):
        what = "a single-agent env without levels" if env.num_players == 1 else f"a {env.num_players}-player game"
        raise UserError(
            f"--levels {levels}: {env.id} is {what}; --levels is for single-agent envs with a level space (e.g. maze)"
        )
    if kind == "named" and not hasattr(env, "named_levels"):
        raise UserError(f"--levels named: {env.id} has no named held-out levels; use sampled:N")


def _check_writable(path: str, option: str) -> None:
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UserError(f"{option} {path}: the folder {folder} does not exist")


def _agent_header(agent) -> dict:
    return {
        "env": agent.env.id,
        "checkpoint_iteration": agent.step,
        "member": agent.member,
        "greedy": agent.greedy,
        "simulations": agent.num_simulations,
    }


def search_simulations(args) -> int | None:
    """The ``--simulations N`` / ``--raw-policy`` choice of a command: N, 0 (raw policy) or
    None (the run's ``alphazero.eval_simulations``)."""
    simulations, raw = getattr(args, "simulations", None), getattr(args, "raw_policy", False)
    if simulations is not None and simulations < 0:
        raise UserError(f"--simulations {simulations}: must be 0 (the raw policy) or more")
    if raw and simulations:
        raise UserError(f"--raw-policy and --simulations {simulations} contradict each other; give one")
    return 0 if raw else simulations


def _mode(agent) -> str:
    mode = "greedy" if agent.greedy else "sampling"
    return f"{mode}, search with {agent.num_simulations} simulations" if agent.num_simulations else mode


def _eval_game(agent, args) -> int:
    env, greedy = agent.env, agent.greedy
    spec = (args.opponent or "random").strip()
    if spec == "best-response":
        if env.id != "kuhn_poker":
            from superlearner.anchors import anchor_specs

            raise UserError(
                f"--opponent best-response: exact best responses are computed for kuhn_poker only; "
                f"accepted for {env.id}: {', '.join(anchor_specs(env))}, checkpoint:PATH"
            )
        return _eval_best_response(agent, args)
    games = _even_games(args.games)
    opening = _opening_moves(args, agent.config)
    openings = _openings(args, agent.config)
    first_moves = None
    if openings == "all-first-moves":
        from superlearner.arena import all_first_moves

        first_moves = all_first_moves(env, games)
    opponent = make_opponent(env, spec, greedy)
    if first_moves is not None and len(first_moves) != games:
        print(
            f"note: --games {args.games} rounded up to {len(first_moves)} so every first move is played "
            "equally often in both seats", file=sys.stderr,
        )
        games = len(first_moves)
    elif games != args.games:
        print(f"note: --games {args.games} rounded up to {games} so both seats play equally often", file=sys.stderr)
    if greedy and opponent.deterministic and opening == 0 and first_moves is None:
        print(
            "note: both players are greedy and no opening plies are random, so every game in a seat is "
            "the same game; vary them with --opening-moves N or --sample",
            file=sys.stderr,
        )
    match_key, svg_key, choice_key = jax.random.split(jax.random.key(args.seed), 3)
    kind, params = agent.kind_of(greedy), agent.params
    as_league = bool(getattr(args, "league", False))
    if as_league and agent.num_simulations:
        raise UserError(f"--league plays the league's snapshots from their policies; it does not search "
                        f"(drop --simulations {agent.num_simulations})")
    if as_league:
        # The league's policy plays: one snapshot per game, drawn from its meta-strategy.
        kind = league_kind(agent.engine.learner.policy, greedy)
        league = _member_league(agent, args.path)
        if league is None:
            raise UserError(f"--league: {args.path} has no league (it was not trained by self-play)")
        params = league_params(league, choice_key)
    match = make_pair_match(env, kind, opponent.kind, games, opening, first_moves)
    returns, seat_a = match(params, opponent.params, match_key)
    report = dict(
        _agent_header(agent), opponent=spec, opening_moves=opening, openings=openings,
        player="league" if as_league else "agent", **match_report(returns, seat_a),
    )
    if first_moves is not None:
        report["first_moves"] = first_move_report(returns, seat_a, first_moves)
    if env.id == "tic_tac_toe" and spec == "perfect" and greedy and not as_league:
        report["exact"] = exact_lines_against_perfect(agent)
    if args.svg:
        svg, game = game_svg(
            env, [("agent", kind, agent.params), (opponent.name, opponent.kind, opponent.params)], svg_key, opening
        )
        _write_text(args.svg, svg, "--svg")
        report["svg"] = {"path": str(args.svg), **game}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    mode = _mode(agent)
    print(
        f"{env.id}: {'league policy' if as_league else 'agent'} (iteration {agent.step}, member {agent.member}, {mode}) "
        f"vs {opponent.name}: "
        f"{report['games']} games, half in each seat, "
        + ("every legal first move in both seats, then " if first_moves is not None else "")
        + f"{opening} random opening plies"
    )
    print(f"  all games     {_record_line(report)}")
    for seat in ("first", "second"):
        print(f"  {seat + ' seat':<13} {_record_line(report['seats'][seat])}")
    if "exact" in report:
        for seat, rows in report["exact"].items():
            lines = sum(r["lines"] for r in rows.values())
            lost = sum(r["losses"] for r in rows.values())
            where = ", ".join(k for k, r in rows.items() if r["losses"]) or "none"
            print(f"  every perfect line, {seat} seat: {lines} games from the empty board and each first move, {lost} lost (openings with a loss: {where})")
    if first_moves is not None:
        lost = [
            f"{move} ({seat} seat: {record['losses']})"
            for move, seats in report["first_moves"].items() for seat, record in seats.items() if record["losses"]
        ]
        print(f"  first moves with a loss: {', '.join(lost) if lost else 'none'}")
    if env.id == "kuhn_poker":
        print(f"  mean chips per game {report['mean_return']:+.3f}")
    if args.svg:
        print(f"SVG of one game (the agent first) written to {args.svg}")
    return 0


def _member_league(agent, path):
    """The loaded member's `LeagueState`, or None for a run without a league."""
    from superlearner.agent import load_train_state

    _, state, _ = load_train_state(path)
    if not hasattr(state.league, "params"):
        return None
    return jax.tree.map(lambda x: x[agent.member], state.league)


def _eval_best_response(agent, args) -> int:
    league = _member_league(agent, args.path)
    report = dict(
        _agent_header(agent), opponent="best-response",
        **kuhn_best_response_report(agent.env, agent.engine.learner.policy, agent.params, league),
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    rows = [
        (f"agent's policy (iteration {agent.step}, member {agent.member})", report["exploitability"]),
        ("agent's greedy (argmax) policy", report["exploitability_greedy"]),
    ]
    if "exploitability_league" in report:
        rows.append((f"league's policy (meta-strategy over {report['league_policies']} snapshots)", report["exploitability_league"]))
    width = max(len(label) for label, _ in rows)
    print("kuhn_poker: exact exploitability (NashConv / 2: 0 at a Nash equilibrium, 0.458 for uniform play)")
    for label, value in rows:
        print(f"  {label:<{width}}  {value:.4f}")
    return 0


def _eval_single(agent, args) -> int:
    from superlearner.evaluate import run_episodes, summarize

    env, greedy = agent.env, agent.greedy
    levels = parse_levels_spec(args.levels) if args.levels is not None else None
    if args.episodes < 1:
        raise UserError(f"--episodes {args.episodes}: must be at least 1")
    if args.svg and agent.recurrent:
        raise UserError("--svg draws an episode of a feed-forward policy; this agent's policy has memory (learner.memory=lstm)")

    act_fn = agent.episode_act_fn(greedy)

    eval_key, svg_key = jax.random.split(jax.random.key(args.seed))
    svg_level = None
    if levels is None:
        returns = run_episodes(env, act_fn, eval_key, args.episodes)
        result = summarize(env, returns)
        report = dict(_agent_header(agent), **{k: v for k, v in result.to_dict().items() if k != "returns"})
        lines = [
            f"mean return {result.mean_return:.2f} (95% CI {result.return_low:.2f}..{result.return_high:.2f}) "
            f"over {result.episodes} episodes"
        ]
    else:
        kind, count = levels
        if kind == "named":
            named = env.named_levels()
            out = evaluate_named_levels(env, act_fn, eval_key, named, args.episodes)
            svg_level = next(iter(named.values()))
            report = dict(_agent_header(agent), level_set="named", **out)
            width = max(len(n) for n in out["levels"])
            mode = "greedy" if greedy else "sampling"
            lines = [f"{env.id}: {len(named)} named levels, {args.episodes} episodes each ({mode})"]
            lines.append(f"  {'level':<{width}}  solve rate  mean return")
            for name, row in out["levels"].items():
                lines.append(f"  {name:<{width}}  {row['solve_rate']:>10.3f}  {row['mean_return']:>11.3f}")
            lines.append(f"  {'mean':<{width}}  {out['mean_solve_rate']:>10.3f}  {out['mean_return']:>11.3f}")
        else:
            level_key, eval_key = jax.random.split(eval_key)
            sampled = sample_levels(env, level_key, count)
            out = evaluate_sampled_levels(env, act_fn, eval_key, sampled)
            svg_level = jax.tree.map(lambda x: x[out["worst_level"]], sampled)
            report = dict(_agent_header(agent), level_set=f"sampled:{count}", seed=args.seed, **out)
            lines = [
                f"{env.id}: {count} sampled levels (seed {args.seed}), each played twice: mean solve rate "
                f"{out['mean_solve_rate']:.3f}, mean return {out['mean_return']:.3f}"
            ]
            for name, row in out["cvar"].items():
                lines.append(
                    f"  CVaR {name:>4}: worst {row['num_levels']} levels by the first play, re-measured by the "
                    f"second: return {row['return']:.3f}, solve rate {row['solve_rate']:.3f}"
                )
    if args.svg:
        players = [("agent", policy_kind(agent.engine.learner.policy, greedy), agent.params)]
        svg, episode = game_svg(env, players, svg_key, params=svg_level)
        _write_text(args.svg, svg, "--svg")
        report["svg"] = {"path": str(args.svg), **episode}
        lines.append(f"SVG of one episode written to {args.svg}")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------------------------
# ratings


def select_checkpoints(steps: list[int], max_checkpoints: int) -> list[int]:
    """At most ``max_checkpoints`` of ``steps``, evenly spaced, always with the first and latest."""
    steps = sorted(steps)
    if len(steps) <= max_checkpoints:
        return steps
    if max_checkpoints == 1:
        return steps[-1:]
    index = np.linspace(0, len(steps) - 1, max_checkpoints).round().astype(int)
    return [steps[i] for i in sorted(set(index.tolist()))]


def cmd_ratings(args) -> int:
    """``superlearner ratings RUN_DIR``: a Bradley-Terry (Elo) table of checkpoints and anchors.

    Every pair of players plays ``--games`` games, half in each seat, with the run's random
    opening plies. Checkpoints play by sampling their policy (as in training), so the games of
    a pair vary even without random openings. Ratings are anchored at ``random`` = 0. Writes
    ``ratings.json`` into the run directory.
    """
    from superlearner.agent import load_agent
    from superlearner.anchors import make_anchor
    from superlearner.checkpoint import CHECKPOINT_DIR, Checkpointer
    from superlearner.ratings import bradley_terry

    run_dir = Path(args.run_dir)
    if not (run_dir / CHECKPOINT_DIR).is_dir():
        raise UserError(f"{run_dir}: not a run directory (it has no {CHECKPOINT_DIR}/ folder)")
    if args.max_checkpoints < 1:
        raise UserError(f"--max-checkpoints {args.max_checkpoints}: must be at least 1")
    games = _even_games(args.games)
    checkpointer = Checkpointer(run_dir, read_only=True)
    try:
        steps = checkpointer.steps()
    finally:
        checkpointer.close()
    if not steps:
        raise UserError(f"{run_dir}: the run has no checkpoint yet")
    chosen = select_checkpoints(steps, args.max_checkpoints)
    simulations = search_simulations(args)
    first = load_agent(run_dir / CHECKPOINT_DIR / str(chosen[-1]), greedy=False, num_simulations=simulations)
    env, config = first.env, first.config
    if env.num_players != 2:
        raise UserError(f"{env.id} is a single-agent env; ratings are for two-player games (use eval)")
    agents = [
        load_agent(run_dir / CHECKPOINT_DIR / str(s), greedy=False, num_simulations=simulations) for s in chosen[:-1]
    ] + [first]
    specs = list(config.arena.anchors) if args.anchors is None else list(args.anchors)
    specs = list(dict.fromkeys(["random"] + [s.strip() for s in specs]))
    anchors = {}
    for spec in specs:
        try:
            anchors[spec] = anchor_kind(make_anchor(env, spec))
        except UserError as error:
            raise UserError(f"--anchors {spec}: {error}") from None
    opening = config.arena.opening_moves
    kind = first.kind_of(greedy=False)

    names = [f"iter_{a.step}" for a in agents] + specs
    # (name, kind label, kind, params): every checkpoint shares the kind "checkpoint".
    players = [(f"iter_{a.step}", "checkpoint", kind, a.params) for a in agents]
    players += [(spec, spec, anchors[spec], None) for spec in specs]
    # One compiled program per pair of kinds (checkpoint-checkpoint, checkpoint-anchor,
    # anchor-anchor); the checkpoints' parameters are its arguments.
    programs: dict[tuple[str, str], Any] = {}
    key = jax.random.key(0)
    results: dict[tuple[str, str], tuple[int, int, int]] = {}
    pairs = []
    for i in range(len(players)):
        for j in range(i + 1, len(players)):
            (name_a, label_a, fn_a, params_a), (name_b, label_b, fn_b, params_b) = players[i], players[j]
            if (label_a, label_b) not in programs:
                programs[(label_a, label_b)] = make_pair_match(env, fn_a, fn_b, games, opening)
            match = programs[(label_a, label_b)]
            returns, seat_a = match(params_a, params_b, jax.random.fold_in(key, len(pairs)))
            record = match_report(returns, seat_a)
            results[(name_a, name_b)] = (record["wins"], record["draws"], record["losses"])
            pairs.append({"a": name_a, "b": name_b, **{k: record[k] for k in ("wins", "draws", "losses")}})
    table = bradley_terry(names, results, anchor="random", anchor_rating=0.0)
    iteration = {f"iter_{a.step}": a.step for a in agents}
    steps_per_iteration = first.engine.env_steps_per_iteration
    rows = []
    for row in table:
        entry = {"name": row.name, "kind": "checkpoint" if row.name in iteration else "anchor"}
        if row.name in iteration:
            entry["iteration"] = iteration[row.name]
            entry["env_steps"] = iteration[row.name] * steps_per_iteration
        entry.update(
            rating=row.rating, low=row.low, high=row.high, stderr=row.stderr, games=row.games,
            score=row.score / max(row.games, 1.0),
        )
        rows.append(entry)
    out = {
        "env": env.id,
        "anchor": "random",
        "anchor_rating": 0.0,
        "games_per_pair": games,
        "simulations": first.num_simulations,
        "opening_moves": opening,
        "players": rows,
        "results": pairs,
    }
    path = run_dir / "ratings.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(out, indent=2))
    temporary.replace(path)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{env.id}: Bradley-Terry ratings (Elo scale, random = 0) of {len(agents)} checkpoints and "
        f"{len(specs)} anchors, {games} games per pair, {opening} random opening plies"
        + (f", checkpoints searching {first.num_simulations} simulations per move" if first.num_simulations else "")
    )
    width = max(len(n) for n in names)
    print(f"  {'#':>2}  {'player':<{width}}  {'rating':>7}  {'95% CI':>17}  {'games':>6}  {'score':>5}")
    for rank, entry in enumerate(rows, 1):
        ci = f"[{entry['low']:.0f}, {entry['high']:.0f}]"
        print(
            f"  {rank:>2}  {entry['name']:<{width}}  {entry['rating']:>7.0f}  {ci:>17}  "
            f"{entry['games']:>6.0f}  {entry['score']:>5.3f}"
        )
    print(f"written to {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# play


def _ask_move(env, legal: list[int], read: Callable[[str], str], write: Callable[[str], None]) -> int:
    """Reads moves until one is legal; EOFError propagates when input ends."""
    legal_text = ", ".join(env.action_to_text(a) for a in legal)
    while True:
        text = read("your move> ")
        try:
            action = env.text_to_action(text)
        except ValueError as error:
            write(f"{text.strip()!r} is not a move ({error}); legal: {legal_text}")
            continue
        if action not in legal:
            write(f"{env.action_to_text(action)} is not a legal move now; legal: {legal_text}")
            continue
        return action


def play_game(
    env,
    agent_act: Callable[[jax.Array, Any], Any],
    person: int,
    key: jax.Array,
    read: Callable[[str], str] | None = None,
    write: Callable[[str], None] | None = None,
) -> dict:
    """One game of a person (reading moves with ``read``) against ``agent_act(key, state)``.

    The position is drawn (``env.render_text``) whenever the person is to move and when the game
    ends, never while the agent is to move: in a game of hidden information (Kuhn poker) the
    person sees only their own card until a showdown. Moves that do not parse or are illegal
    are reported and asked again. ``key`` is consumed.

    Returns:
      ``{"moves": [text], "movers": ["person" | "agent"], "rewards": [per player],
      "outcome": "win" | "loss" | "draw" | "abandoned"}``; abandoned when ``read`` raised
      EOFError.

    ``read`` and ``write`` default to the built-in ``input`` and ``print``.
    """
    read = input if read is None else read
    write = print if write is None else write
    reset_key, key = jax.random.split(key)
    step = jax.jit(env.step)
    state = jax.jit(env.reset)(reset_key)
    moves: list[str] = []
    movers: list[str] = []
    rewards = np.zeros(env.num_players)
    try:
        while not bool(state.terminated | state.truncated):
            if int(state.current_player) == person:
                write("")
                write(env.render_text(state))
                legal = [int(a) for a in np.flatnonzero(np.asarray(state.legal_action_mask))]
                write("legal moves: " + ", ".join(env.action_to_text(a) for a in legal))
                action = _ask_move(env, legal, read, write)
                movers.append("person")
            else:
                act_key, key = jax.random.split(key)
                action = int(agent_act(act_key, state))
                movers.append("agent")
                write(f"agent plays {env.action_to_text(action)}")
            moves.append(env.action_to_text(action))
            step_key, key = jax.random.split(key)
            state = step(state, jnp.int32(action), step_key)
            rewards += np.asarray(state.rewards, np.float64)
    except EOFError:
        return {"moves": moves, "movers": movers, "rewards": rewards.tolist(), "outcome": "abandoned"}
    write("")
    write(env.render_text(state))
    mine = rewards[person]
    outcome = "win" if mine > 0 else "loss" if mine < 0 else "draw"
    return {"moves": moves, "movers": movers, "rewards": rewards.tolist(), "outcome": outcome}


def cmd_play(args) -> int:
    """``superlearner play PATH``: a person against the agent in the terminal (see `play_game`)."""
    from superlearner.agent import load_agent

    agent = load_agent(args.path, greedy=True, num_simulations=search_simulations(args))
    env = agent.env
    if env.num_players != 2:
        raise UserError(f"{env.id} is a single-agent env; play is for two-player games")
    person = 1 if args.second else 0
    if args.record:
        _check_writable(args.record, "--record")
    print(
        f"{env.id}: you are player {person} (you move {('first', 'second')[person]}) "
        f"against the agent of iteration {agent.step}"
        + (f", searching {agent.num_simulations} simulations per move" if agent.num_simulations else "")
    )
    game = play_game(env, agent.act, person, jax.random.key(args.seed))
    mine = float(game["rewards"][person])
    if game["outcome"] == "abandoned":
        line = "\ninput ended; the game is abandoned"
    else:
        words = {"win": "you win", "loss": "you lose", "draw": "draw"}[game["outcome"]]
        line = f"result: {words} ({mine:+g})"
    if args.record:
        record = {
            "env": env.id,
            "env_version": env.version,
            "checkpoint": str(Path(args.path).resolve()),
            "iteration": agent.step,
            "member": agent.member,
            "seats": {"person": person, "agent": 1 - person},
            "seed": args.seed,
            "moves": game["moves"],
            "movers": game["movers"],
            "result": {"outcome": game["outcome"], "person_reward": mine, "rewards": game["rewards"]},
        }
        _write_text(args.record, json.dumps(record, indent=2), "--record")
        print(f"record saved to {args.record}")
    print(line)
    return 0
