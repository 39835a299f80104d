"""CartPole: balance a pole on a cart by pushing the cart left or right.

Dynamics, rewards and termination are those of gymnasium's ``CartPole-v1`` (the cart-pole of
Barto, Sutton and Anderson, "Neuronlike adaptive elements that can solve difficult learning
control problems", 1983, with the equations of Florian, "Correct equations for the dynamics of
the cart-pole system", 2007): explicit Euler steps of ``tau`` seconds, reward +1 on every step
including the one that ends the episode, termination when the cart leaves ``|x| <= x_threshold``
or the pole leaves ``|theta| <= theta_threshold``, truncation after 500 steps. The start state is
uniform in ``[-reset_bound, reset_bound]^4``.

Action 0 pushes the cart left, 1 pushes it right; both are always legal. Single agent.
Observation: float32[4] = (x, x_dot, theta, theta_dot); theta is in radians, positive when the
pole leans right. Arithmetic is float32 (gymnasium's is float64), so trajectories agree to
rounding.

The constants are ``params`` (`CartPoleParams`), so a curriculum can vary gravity, masses,
lengths or thresholds per level and vmap over them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.core.env import Env, State

PUSH_LEFT = 0
PUSH_RIGHT = 1


@struct.dataclass
class CartPoleParams:
    """The physical constants and limits of one cart-pole task; every field is float32[].

    Attributes:
      gravity: gravitational acceleration, m/s^2.
      masscart: mass of the cart, kg.
      masspole: mass of the pole, kg.
      length: half the pole's length, m.
      force_mag: magnitude of the push, N.
      tau: seconds per step.
      theta_threshold: the episode ends when ``|theta|`` exceeds this, radians.
      x_threshold: the episode ends when ``|x|`` exceeds this, m.
      reset_bound: each start coordinate is uniform in ``[-reset_bound, reset_bound]``.
    """

    gravity: jax.Array
    masscart: jax.Array
    masspole: jax.Array
    length: jax.Array
    force_mag: jax.Array
    tau: jax.Array
    theta_threshold: jax.Array
    x_threshold: jax.Array
    reset_bound: jax.Array


def make_default_params() -> CartPoleParams:
    """The constants of gymnasium's CartPole-v1."""
    f32 = np.float32
    return CartPoleParams(
        gravity=jnp.asarray(f32(9.8)),
        masscart=jnp.asarray(f32(1.0)),
        masspole=jnp.asarray(f32(0.1)),
        length=jnp.asarray(f32(0.5)),
        force_mag=jnp.asarray(f32(10.0)),
        tau=jnp.asarray(f32(0.02)),
        theta_threshold=jnp.asarray(f32(12 * 2 * math.pi / 360)),
        x_threshold=jnp.asarray(f32(2.4)),
        reset_bound=jnp.asarray(f32(0.05)),
    )


@struct.dataclass
class CartPoleState(State):
    """The cart's position ``x`` and velocity ``x_dot``, the pole's angle ``theta`` and angular
    velocity ``theta_dot``; each float32[]."""

    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array


class CartPole(Env):
    """CartPole-v1: keep the pole up and the cart on the track for 500 steps."""

    id = "cartpole"
    version = "1"
    description = "CartPole-v1 (gymnasium dynamics), 1 player, action 0 = push left, 1 = push right"

    def __init__(self) -> None:
        self.num_players = 1
        self.num_actions = 2
        self.observation_shape = (4,)
        self.max_episode_steps = 500
        # gymnasium's success level for CartPole-v1.
        self.reward_threshold = 475.0

    @property
    def default_params(self) -> CartPoleParams:
        return make_default_params()

    def _reset(self, key, params: CartPoleParams) -> CartPoleState:
        start = jax.random.uniform(
            key, (4,), jnp.float32, minval=-params.reset_bound, maxval=params.reset_bound
        )
        return CartPoleState(
            **self._initial_fields(jnp.ones((2,), jnp.bool_)),
            x=start[0],
            x_dot=start[1],
            theta=start[2],
            theta_dot=start[3],
        )

    def _step(self, state: CartPoleState, action, key, params: CartPoleParams) -> CartPoleState:
        del key
        p = params
        force = jnp.where(action == PUSH_RIGHT, p.force_mag, -p.force_mag)
        total_mass = p.masspole + p.masscart
        polemass_length = p.masspole * p.length
        cos_theta = jnp.cos(state.theta)
        sin_theta = jnp.sin(state.theta)
        temp = (force + polemass_length * state.theta_dot**2 * sin_theta) / total_mass
        theta_acc = (p.gravity * sin_theta - cos_theta * temp) / (
            p.length * (4.0 / 3.0 - p.masspole * cos_theta**2 / total_mass)
        )
        x_acc = temp - polemass_length * theta_acc * cos_theta / total_mass

        # Explicit Euler: positions advance with the old velocities.
        x = state.x + p.tau * state.x_dot
        x_dot = state.x_dot + p.tau * x_acc
        theta = state.theta + p.tau * state.theta_dot
        theta_dot = state.theta_dot + p.tau * theta_acc

        terminated = (jnp.abs(x) > p.x_threshold) | (jnp.abs(theta) > p.theta_threshold)
        return state.replace(
            x=x,
            x_dot=x_dot,
            theta=theta,
            theta_dot=theta_dot,
            rewards=jnp.ones((1,), jnp.float32),
            terminated=terminated,
        )

    def observe(self, state: CartPoleState, player) -> jax.Array:
        del player
        return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(jnp.float32)

    def render_text(self, state: CartPoleState) -> str:
        x, x_dot, theta, theta_dot = (float(v) for v in (state.x, state.x_dot, state.theta, state.theta_dot))
        width = 49
        limit = float(make_default_params().x_threshold)
        col = int(round((min(max(x, -limit), limit) + limit) / (2 * limit) * (width - 1)))
        degrees = math.degrees(theta)
        pole = "|" if abs(degrees) < 2 else ("/" if degrees > 0 else "\\")
        lean = 0 if abs(degrees) < 6 else (1 if degrees > 0 else -1)
        status = "terminated" if bool(state.terminated) else "truncated" if bool(state.truncated) else "running"
        # Columns are counted inside the track's end stops; the cart "[#]" is centred on col.
        lines = [
            f"step {int(state.step_count)} ({status})",
            f"x={x:+.3f} m  x_dot={x_dot:+.3f} m/s  theta={theta:+.4f} rad ({degrees:+.1f} deg)  "
            f"theta_dot={theta_dot:+.3f} rad/s",
            " " * (col + 1 + lean) + pole,
            " " * (col + 1) + pole,
            " " * col + "[#]",
            "|" + "=" * width + "|",
        ]
        return "\n".join(lines)

    def render_svg(self, state: CartPoleState) -> str:
        # Renders take no params, so the track and pole are drawn at the default proportions.
        width, height = 600, 240
        limit = float(make_default_params().x_threshold)
        scale = width / (2 * limit)
        track_y = 170
        cart_w, cart_h = 50, 30
        pole_len = scale * 2 * float(make_default_params().length)
        cx = width / 2 + float(state.x) * scale
        theta = float(state.theta)
        pivot_y = track_y - cart_h
        tip_x = cx + pole_len * math.sin(theta)
        tip_y = pivot_y - pole_len * math.cos(theta)
        colour = "#c0392b" if bool(state.terminated) else "#ca9865"
        return "".join(
            [
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                f'viewBox="0 0 {width} {height}">',
                f'<rect width="{width}" height="{height}" fill="white"/>',
                f'<line x1="0" y1="{track_y}" x2="{width}" y2="{track_y}" stroke="black" stroke-width="1"/>',
                f'<rect x="{cx - cart_w / 2:.1f}" y="{track_y - cart_h}" width="{cart_w}" '
                f'height="{cart_h}" fill="#333333"/>',
                f'<line x1="{cx:.1f}" y1="{pivot_y}" x2="{tip_x:.1f}" y2="{tip_y:.1f}" '
                f'stroke="{colour}" stroke-width="10" stroke-linecap="round"/>',
                f'<circle cx="{cx:.1f}" cy="{pivot_y}" r="5" fill="#8184cb"/>',
                f'<text x="8" y="{height - 10}" font-family="monospace" font-size="13">'
                f'step {int(state.step_count)}  x={float(state.x):+.2f}  '
                f'theta={math.degrees(theta):+.1f} deg</text>',
                "</svg>",
            ]
        )

    def action_to_text(self, action: int) -> str:
        return ("left", "right")[int(action)]

    def text_to_action(self, text: str) -> int:
        word = text.strip().lower()
        if word in ("0", "l", "left"):
            return PUSH_LEFT
        if word in ("1", "r", "right"):
            return PUSH_RIGHT
        raise ValueError(f"unknown move {text!r}; write left/l/0 or right/r/1")
