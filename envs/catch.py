"""Catch: move a paddle along the bottom row to catch a ball that falls from the top.

The rules are bsuite's ``catch`` (Osband et al., "Behaviour Suite for Reinforcement Learning",
ICLR 2020): a board of ``rows`` x ``columns`` cells; the ball starts in the top row in a uniformly
random column and falls one row per step; the paddle starts in the middle of the bottom row
(column ``columns // 2``). Actions 0, 1, 2 move the paddle one column left, not at all, or right,
clipped at the walls; every action is always legal. On each step the paddle moves first, then the
ball falls. When the ball reaches the bottom row the episode terminates with reward +1 if the
paddle is under it and -1 otherwise; every other step gives 0. An episode is ``rows - 1`` steps.

Single agent. Observation: float32[rows, columns], 1 where the ball and the paddle are, 0
elsewhere. The board size is a static option of ``make`` (it sets the observation's shape).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.core.env import Env, State, check_option

LEFT, STAY, RIGHT = 0, 1, 2


@struct.dataclass
class CatchState(State):
    """The ball's ``ball_row``, ``ball_column`` and the paddle's ``paddle_column``; each int32[]."""

    ball_row: jax.Array
    ball_column: jax.Array
    paddle_column: jax.Array


class Catch(Env):
    """bsuite's catch: one reward of +1 or -1 at the end of every ``rows - 1``-step episode."""

    id = "catch"
    version = "1"
    description = "bsuite catch, 1 player, action 0/1/2 = paddle left/stay/right, +1 for a catch, -1 for a miss"

    def __init__(self, rows: int = 10, columns: int = 5) -> None:
        self.rows = check_option("catch", "rows", rows, int, 2, 64)
        self.columns = check_option("catch", "columns", columns, int, 1, 64)
        self.num_players = 1
        self.num_actions = 3
        self.observation_shape = (self.rows, self.columns)
        self.max_episode_steps = None  # every episode ends by the rules after rows - 1 steps
        # A catch: the only positive return.
        self.reward_threshold = 1.0

    def _reset(self, key, params) -> CatchState:
        del params
        return CatchState(
            **self._initial_fields(jnp.ones((3,), jnp.bool_)),
            ball_row=jnp.int32(0),
            ball_column=jax.random.randint(key, (), 0, self.columns, jnp.int32),
            paddle_column=jnp.int32(self.columns // 2),
        )

    def _step(self, state: CatchState, action, key, params) -> CatchState:
        del key, params
        paddle = jnp.clip(state.paddle_column + action - 1, 0, self.columns - 1).astype(jnp.int32)
        ball_row = state.ball_row + 1
        terminated = ball_row >= self.rows - 1
        caught = paddle == state.ball_column
        reward = jnp.where(terminated, jnp.where(caught, 1.0, -1.0), 0.0).astype(jnp.float32)
        return state.replace(
            ball_row=ball_row.astype(jnp.int32),
            paddle_column=paddle,
            rewards=reward[None],
            terminated=terminated,
        )

    def observe(self, state: CatchState, player) -> jax.Array:
        del player
        rows = jnp.arange(self.rows)[:, None]
        columns = jnp.arange(self.columns)[None, :]
        ball = (rows == state.ball_row) & (columns == state.ball_column)
        paddle = (rows == self.rows - 1) & (columns == state.paddle_column)
        return (ball | paddle).astype(jnp.float32)

    def render_text(self, state: CatchState) -> str:
        lines = []
        for row in range(self.rows):
            cells = []
            for column in range(self.columns):
                ball = row == int(state.ball_row) and column == int(state.ball_column)
                paddle = row == self.rows - 1 and column == int(state.paddle_column)
                cells.append("*" if ball and paddle else "o" if ball else "=" if paddle else ".")
            lines.append(" ".join(cells))
        status = "running"
        if bool(state.terminated):
            status = "caught" if float(state.rewards[0]) > 0 else "missed"
        return "\n".join([f"step {int(state.step_count)} ({status})", *lines])

    def render_svg(self, state: CatchState) -> str:
        cell = 30
        width, height = cell * self.columns, cell * self.rows
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
            f'<rect width="{width}" height="{height}" fill="white" stroke="#999999"/>',
            f'<rect x="{int(state.paddle_column) * cell + 2}" y="{(self.rows - 1) * cell + cell // 3}" '
            f'width="{cell - 4}" height="{cell // 3}" fill="#2c3e50"/>',
            f'<circle cx="{int(state.ball_column) * cell + cell / 2}" cy="{int(state.ball_row) * cell + cell / 2}" '
            f'r="{cell / 3:.1f}" fill="#c0392b"/>',
            "</svg>",
        ]
        return "".join(parts)

    def action_to_text(self, action: int) -> str:
        return ("left", "stay", "right")[int(action)]

    def text_to_action(self, text: str) -> int:
        word = text.strip().lower()
        for action, names in enumerate((("0", "l", "left"), ("1", "s", "stay"), ("2", "r", "right"))):
            if word in names:
                return action
        raise ValueError(f"unknown move {text!r}; write 0/l/left, 1/s/stay or 2/r/right")
