"""``superlearner eval``: a run against an opponent, on levels, or as an episode average; mistakes a
user can make raise `UserError` (one line, exit status 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax

from superlearner.errors import UserError
from superlearner.cli.levels import has_levels, evaluate_named_levels, evaluate_sampled_levels, parse_levels_spec, sample_levels
from superlearner.cli.players import even_games, opening_moves_of, openings_of, record_line, best_response_report, exact_lines_against_perfect, first_move_report, league_kind, league_params, make_opponent, make_pair_match, match_report, policy_kind
from superlearner.cli.svg import write_text, game_svg


def cmd_eval(args) -> int:
    """``superlearner eval PATH --opponent SPEC | --levels SPEC | --svg PATH``."""
    from superlearner.run.agent import load_agent

    if args.opponent is not None and args.levels is not None:
        raise UserError("--opponent and --levels measure different things (two-player games, levelled envs); give one")
    if args.levels is not None:
        parse_levels_spec(args.levels)
    if args.opponent is not None:
        even_games(args.games)
        if args.svg and args.opponent.strip() == "best-response":
            raise UserError("--svg: best-response is computed exactly, no game is played; use another --opponent for an SVG")
    if args.svg:
        check_writable(args.svg, "--svg")
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
    if env.num_players != 1 or not has_levels(env):
        what = "a single-agent env without levels" if env.num_players == 1 else f"a {env.num_players}-player game"
        raise UserError(
            f"--levels {levels}: {env.id} is {what}; --levels is for single-agent envs with a level space (e.g. maze)"
        )
    if kind == "named" and not hasattr(env, "named_levels"):
        raise UserError(f"--levels named: {env.id} has no named held-out levels; use sampled:N")


def check_writable(path: str, option: str) -> None:
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
        if env.exploitability is None:
            from superlearner.core.registry import envs_declaring
            from superlearner.selfplay.anchors import anchor_specs

            solved = ", ".join(envs_declaring("exploitability")) or "no known env"
            raise UserError(
                f"--opponent best-response: {env.id} declares no exact exploitability; exact best "
                f"responses are computed for {solved} only; "
                f"accepted for {env.id}: {', '.join(anchor_specs(env))}, checkpoint:PATH"
            )
        return _eval_best_response(agent, args)
    games = even_games(args.games)
    opening = opening_moves_of(args, agent.config)
    openings = openings_of(args, agent.config)
    first_moves = None
    if openings == "all-first-moves":
        from superlearner.selfplay.arena import all_first_moves

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
    if env.solved_action_values is not None and spec == "perfect" and greedy and not as_league:
        report["exact"] = exact_lines_against_perfect(agent)
    if args.svg:
        svg, game = game_svg(
            env, [("agent", kind, agent.params), (opponent.name, opponent.kind, opponent.params)], svg_key, opening
        )
        write_text(args.svg, svg, "--svg")
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
    print(f"  all games     {record_line(report)}")
    for seat in ("first", "second"):
        print(f"  {seat + ' seat':<13} {record_line(report['seats'][seat])}")
    if "exact" in report:
        for seat, rows in report["exact"].items():
            lines = sum(r["lines"] for r in rows.values())
            lost = sum(r["losses"] for r in rows.values())
            where = ", ".join(k for k, r in rows.items() if r["losses"]) or "none"
            print(f"  every perfect line, {seat} seat: {lines} games from the start and each first move, {lost} lost (openings with a loss: {where})")
    if first_moves is not None:
        lost = [
            f"{move} ({seat} seat: {record['losses']})"
            for move, seats in report["first_moves"].items() for seat, record in seats.items() if record["losses"]
        ]
        print(f"  first moves with a loss: {', '.join(lost) if lost else 'none'}")
    print(f"  mean return per game {report['mean_return']:+.3f}")
    if args.svg:
        print(f"SVG of one game (the agent first) written to {args.svg}")
    return 0


def _member_league(agent, path):
    """The loaded member's `LeagueState`, or None for a run without a league."""
    from superlearner.run.agent import load_train_state

    _, state, _ = load_train_state(path)
    if not hasattr(state.league, "params"):
        return None
    return jax.tree.map(lambda x: x[agent.member], state.league)


def _eval_best_response(agent, args) -> int:
    league = _member_league(agent, args.path)
    report = dict(
        _agent_header(agent), opponent="best-response",
        **best_response_report(agent.env, agent.engine.learner.policy, agent.params, league),
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
    env = agent.env
    views = env.info_states()
    uniform = views.legal_action_masks / views.legal_action_masks.sum(-1, keepdims=True)
    print(
        f"{env.id}: exact exploitability (NashConv / 2: 0 at a Nash equilibrium, "
        f"{env.exploitability(uniform):.3f} for uniform play)"
    )
    for label, value in rows:
        print(f"  {label:<{width}}  {value:.4f}")
    return 0


def _eval_single(agent, args) -> int:
    from superlearner.core.evaluate import run_episodes, summarize

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
        write_text(args.svg, svg, "--svg")
        report["svg"] = {"path": str(args.svg), **episode}
        lines.append(f"SVG of one episode written to {args.svg}")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(lines))
    return 0
