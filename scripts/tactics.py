"""Where a two-player agent loses: its one-move tactics against an anchor.

    python scripts/tactics.py RUN_OR_CHECKPOINT [--opponent minimax:2] [--games 200]
                              [--opening-moves 2] [--seed 0] [--json]

Plays the agent's raw policy (greedy) against the anchor, half the games in each seat, each game
opened by ``--opening-moves`` uniformly random plies as `superlearner eval` does, and checks every
move of the agent with the game's own rules:

* missed win: a move that wins at once was legal and the agent played another;
* avoidable blunder: no move wins at once, the agent's move lets the opponent win at once, and
  some legal move would not have;
* lost in one: every legal move lets the opponent win at once.

It also reports how much probability the policy puts on the winning moves where one exists, and
on the safe moves where some move is unsafe. An agent that loses mostly by avoidable blunders is
short of one-move tactics, not of deeper play.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.run.agent import load_agent
from superlearner.selfplay.anchors import make_anchor
from superlearner.selfplay.arena import from_anchor, random_player, summarize_returns
from superlearner.errors import UserError


def one_move_tactics(env):
    """``tactics(states) -> (wins[B, A], unsafe[B, A])``: whether each action wins at once, and
    whether after it the opponent has a reply that wins at once."""

    def of_state(state):
        mover = state.current_player

        def after(action):
            child = env.step(state, action, jax.random.key(0))
            wins = child.rewards[mover] > 0

            def reply_wins(reply):
                grandchild = env.step(child, reply, jax.random.key(0))
                return child.legal_action_mask[reply] & (grandchild.rewards[1 - mover] > 0)

            unsafe = ~child.terminated & jnp.any(jax.vmap(reply_wins)(jnp.arange(env.num_actions)))
            return wins, unsafe

        return jax.vmap(after)(jnp.arange(env.num_actions))

    return jax.jit(jax.vmap(of_state))


def audit(path: str, opponent: str, games: int, opening_moves: int, seed: int) -> dict:
    agent = load_agent(path)
    env = agent.engine.env
    if env.num_players != 2 or not getattr(env, "zero_sum", False):
        raise UserError(f"{path}: {env.id} is not a two-player zero-sum game; the audit needs one")
    anchor = jax.jit(from_anchor(make_anchor(env, opponent)))
    policy = jax.jit(agent.engine.learner.policy)
    tactics = one_move_tactics(env)
    step = jax.jit(jax.vmap(env.step))
    key = jax.random.key(seed)
    key, reset_key = jax.random.split(key)
    states = jax.vmap(env.reset)(jax.random.split(reset_key, games))
    seat = (np.arange(games) >= games // 2).astype(np.int32)
    returns = np.zeros(games)
    counts = dict(decisions=0, missed_win=0, avoidable_blunder=0, lost_in_one=0)
    p_win, p_safe = [], []
    for move in range(10_000):
        done = np.asarray(states.terminated | states.truncated)
        if done.all():
            break
        key, open_key, anchor_key, step_key = jax.random.split(key, 4)
        mask = np.asarray(states.legal_action_mask)
        if move < opening_moves:
            action = np.asarray(random_player(open_key, states))
        else:
            logits = policy(agent.params, states.observation, states.legal_action_mask)[0]  # masked
            probs = np.asarray(jax.nn.softmax(logits))
            mine = (np.asarray(states.current_player) == seat) & ~done
            action = np.where(mine, np.asarray(logits).argmax(-1), np.asarray(anchor(anchor_key, states)))
            wins, unsafe = (np.asarray(x) & mask for x in tactics(states))
            safe = mask & ~unsafe
            for g in np.flatnonzero(mine):
                counts["decisions"] += 1
                if wins[g].any():
                    p_win.append(probs[g][wins[g]].sum())
                    counts["missed_win"] += int(not wins[g, action[g]])
                elif unsafe[g].any():
                    if safe[g].any():
                        p_safe.append(probs[g][safe[g]].sum())
                        counts["avoidable_blunder"] += int(unsafe[g, action[g]])
                    else:
                        counts["lost_in_one"] += 1
        states = step(states, jnp.asarray(action, jnp.int32), jax.random.split(step_key, games))
        returns += np.asarray(states.rewards)[np.arange(games), seat] * ~done
    result = summarize_returns(returns, seat)
    return dict(
        path=path, opponent=opponent, games=games, score=result.score,
        wins=result.wins, draws=result.draws, losses=result.losses,
        **counts,
        positions_with_a_win=len(p_win), p_winning_moves=float(np.mean(p_win)) if p_win else None,
        positions_with_an_unsafe_move=len(p_safe), p_safe_moves=float(np.mean(p_safe)) if p_safe else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a run directory or one checkpoint folder")
    parser.add_argument("--opponent", default="minimax:2", help="anchor spec, e.g. random or minimax:2 (default minimax:2)")
    parser.add_argument("--games", type=int, default=200, help="games, half in each seat (default 200)")
    parser.add_argument("--opening-moves", type=int, default=2, help="random plies that open each game (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.games < 2 or args.games % 2:
        parser.error(f"--games {args.games}: give an even number, 2 or more (half the games in each seat)")
    if args.opening_moves < 0:
        parser.error(f"--opening-moves {args.opening_moves}: give 0 or more")
    try:
        result = audit(args.path, args.opponent, args.games, args.opening_moves, args.seed)
    except UserError as error:
        parser.exit(2, f"error: {error}\n")
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['path']} against {result['opponent']}: score {result['score']:.3f} "
          f"(+{result['wins']} ={result['draws']} -{result['losses']} of {result['games']})")
    print(f"  agent moves {result['decisions']}: missed wins {result['missed_win']} "
          f"(of {result['positions_with_a_win']} positions with a winning move), avoidable blunders "
          f"{result['avoidable_blunder']} (of {result['positions_with_an_unsafe_move']} positions with an unsafe move), "
          f"lost in one {result['lost_in_one']}")
    if result["p_winning_moves"] is not None:
        print(f"  policy probability on winning moves where one exists: {result['p_winning_moves']:.3f}")
    if result["p_safe_moves"] is not None:
        print(f"  policy probability on safe moves where some move is unsafe: {result['p_safe_moves']:.3f}")


if __name__ == "__main__":
    main()
