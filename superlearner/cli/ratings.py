"""``superlearner ratings``: a run's checkpoints and the anchors in one Bradley-Terry pool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from superlearner.errors import UserError
from superlearner.cli.evaluate import search_simulations
from superlearner.cli.players import even_games, anchor_kind, make_pair_match, match_report


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
    from superlearner.run.agent import load_agent
    from superlearner.selfplay.anchors import make_anchor
    from superlearner.run.checkpoint import CHECKPOINT_DIR, Checkpointer
    from superlearner.selfplay.ratings import bradley_terry

    run_dir = Path(args.run_dir)
    if not (run_dir / CHECKPOINT_DIR).is_dir():
        raise UserError(f"{run_dir}: not a run directory (it has no {CHECKPOINT_DIR}/ folder)")
    if args.max_checkpoints < 1:
        raise UserError(f"--max-checkpoints {args.max_checkpoints}: must be at least 1")
    games = even_games(args.games)
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
