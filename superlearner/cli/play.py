"""``superlearner play``: a person against a trained agent in the terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.errors import UserError
from superlearner.cli.evaluate import check_writable, search_simulations
from superlearner.cli.svg import write_text


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
    from superlearner.run.agent import load_agent

    agent = load_agent(args.path, greedy=True, num_simulations=search_simulations(args))
    env = agent.env
    if env.num_players != 2:
        raise UserError(f"{env.id} is a single-agent env; play is for two-player games")
    person = 1 if args.second else 0
    if args.record:
        check_writable(args.record, "--record")
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
        write_text(args.record, json.dumps(record, indent=2), "--record")
        print(f"record saved to {args.record}")
    print(line)
    return 0
