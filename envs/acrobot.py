"""Acrobot: swing the end of a two-link pendulum above a line by torquing the joint between them.

Dynamics, rewards and termination are those of gymnasium's ``Acrobot-v1`` (Sutton, "Generalization
in reinforcement learning: successful examples using sparse coarse coding", 1996; Sutton and Barto,
"Reinforcement Learning: An Introduction", 1998, the "book" dynamics): the first link hangs from a
fixed pivot, the torque acts at the joint between the links, one step integrates the equations of
motion over ``dt`` seconds with a single fourth-order Runge-Kutta step, the angles are wrapped to
``[-pi, pi)`` and the angular velocities clipped to ``max_vel_1`` and ``max_vel_2``. Reward -1 on
every step but the one that reaches the goal (0); the episode terminates when the free end is
higher than one link length above the pivot (``-cos(theta1) - cos(theta1 + theta2) > 1``) and is
truncated after 500 steps. Start: the four state variables uniform in ``[-reset_bound,
reset_bound]``.

Actions 0, 1, 2 apply a torque of ``-torque``, 0 and ``+torque``; all are always legal. Single
agent. Observation: float32[6] = (cos theta1, sin theta1, cos theta2, sin theta2, theta1_dot,
theta2_dot); theta1 is the first link's angle from straight down, theta2 the second link's angle
relative to the first. Arithmetic is float32 (gymnasium's is float64), so single steps agree to
rounding; the system is chaotic, so long trajectories do not.

The constants are ``params`` (`AcrobotParams`), so a curriculum or a held-out test can vary the
masses, lengths or gravity per level and vmap over them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.core.env import Env, State

TORQUE_NEGATIVE, TORQUE_NONE, TORQUE_POSITIVE = 0, 1, 2


@struct.dataclass
class AcrobotParams:
    """The physical constants and limits of one acrobot; every field is float32[].

    Attributes:
      link_length_1: length of the first link, m (the goal line is this far above the pivot).
      link_mass_1, link_mass_2: masses of the links, kg.
      link_com_1, link_com_2: distance from each link's pivot to its centre of mass, m.
      link_moi: moment of inertia of either link about its centre of mass, kg m^2.
      gravity: gravitational acceleration, m/s^2.
      torque: magnitude of the torque of actions 0 and 2, N m.
      dt: seconds per step.
      max_vel_1, max_vel_2: the angular velocities are clipped to these, rad/s.
      reset_bound: each start coordinate is uniform in ``[-reset_bound, reset_bound]``.
    """

    link_length_1: jax.Array
    link_mass_1: jax.Array
    link_mass_2: jax.Array
    link_com_1: jax.Array
    link_com_2: jax.Array
    link_moi: jax.Array
    gravity: jax.Array
    torque: jax.Array
    dt: jax.Array
    max_vel_1: jax.Array
    max_vel_2: jax.Array
    reset_bound: jax.Array


def make_default_params() -> AcrobotParams:
    """The constants of gymnasium's Acrobot-v1."""
    f32 = np.float32
    return AcrobotParams(
        link_length_1=jnp.asarray(f32(1.0)),
        link_mass_1=jnp.asarray(f32(1.0)),
        link_mass_2=jnp.asarray(f32(1.0)),
        link_com_1=jnp.asarray(f32(0.5)),
        link_com_2=jnp.asarray(f32(0.5)),
        link_moi=jnp.asarray(f32(1.0)),
        gravity=jnp.asarray(f32(9.8)),
        torque=jnp.asarray(f32(1.0)),
        dt=jnp.asarray(f32(0.2)),
        max_vel_1=jnp.asarray(f32(4 * math.pi)),
        max_vel_2=jnp.asarray(f32(9 * math.pi)),
        reset_bound=jnp.asarray(f32(0.1)),
    )


@struct.dataclass
class AcrobotState(State):
    """The link angles ``theta1``, ``theta2`` (radians) and their angular velocities; each float32[]."""

    theta1: jax.Array
    theta2: jax.Array
    theta1_dot: jax.Array
    theta2_dot: jax.Array


def derivatives(params: AcrobotParams, s: jax.Array, torque: jax.Array) -> jax.Array:
    """d/dt of ``s = (theta1, theta2, theta1_dot, theta2_dot)`` under ``torque`` at the joint
    (the book's equations of motion, as gymnasium's ``book_or_nips = "book"``)."""
    p = params
    theta1, theta2, dtheta1, dtheta2 = s[0], s[1], s[2], s[3]
    m1, m2, l1, lc1, lc2, inertia, g = (
        p.link_mass_1, p.link_mass_2, p.link_length_1, p.link_com_1, p.link_com_2, p.link_moi, p.gravity,
    )
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2)) + 2 * inertia
    d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + inertia
    phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - math.pi / 2)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - math.pi / 2)
        + phi2
    )
    ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2) - phi2) / (
        m2 * lc2**2 + inertia - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])


def _wrap(angle: jax.Array) -> jax.Array:
    return jnp.mod(angle + math.pi, 2 * math.pi) - math.pi


class Acrobot(Env):
    """Acrobot-v1: swing the tip above the line in as few steps as possible."""

    id = "acrobot"
    version = "1"
    description = "Acrobot-v1 (gymnasium dynamics), 1 player, action 0/1/2 = torque -1/0/+1 at the joint"

    def __init__(self) -> None:
        self.num_players = 1
        self.num_actions = 3
        self.observation_shape = (6,)
        self.max_episode_steps = 500
        # gymnasium's success level for Acrobot-v1.
        self.reward_threshold = -100.0

    @property
    def default_params(self) -> AcrobotParams:
        return make_default_params()

    def _reset(self, key, params: AcrobotParams) -> AcrobotState:
        start = jax.random.uniform(key, (4,), jnp.float32, minval=-params.reset_bound, maxval=params.reset_bound)
        return AcrobotState(
            **self._initial_fields(jnp.ones((3,), jnp.bool_)),
            theta1=start[0],
            theta2=start[1],
            theta1_dot=start[2],
            theta2_dot=start[3],
        )

    def _step(self, state: AcrobotState, action, key, params: AcrobotParams) -> AcrobotState:
        del key
        p = params
        torque = (jnp.asarray(action, jnp.float32) - 1.0) * p.torque
        s = jnp.stack([state.theta1, state.theta2, state.theta1_dot, state.theta2_dot])
        k1 = derivatives(p, s, torque)
        k2 = derivatives(p, s + p.dt / 2 * k1, torque)
        k3 = derivatives(p, s + p.dt / 2 * k2, torque)
        k4 = derivatives(p, s + p.dt * k3, torque)
        s = s + p.dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        theta1, theta2 = _wrap(s[0]), _wrap(s[1])
        theta1_dot = jnp.clip(s[2], -p.max_vel_1, p.max_vel_1)
        theta2_dot = jnp.clip(s[3], -p.max_vel_2, p.max_vel_2)
        terminated = -jnp.cos(theta1) - jnp.cos(theta1 + theta2) > 1.0
        return state.replace(
            theta1=theta1,
            theta2=theta2,
            theta1_dot=theta1_dot,
            theta2_dot=theta2_dot,
            rewards=jnp.where(terminated, 0.0, -1.0).astype(jnp.float32)[None],
            terminated=terminated,
        )

    def observe(self, state: AcrobotState, player) -> jax.Array:
        del player
        return jnp.stack([
            jnp.cos(state.theta1), jnp.sin(state.theta1), jnp.cos(state.theta2), jnp.sin(state.theta2),
            state.theta1_dot, state.theta2_dot,
        ]).astype(jnp.float32)

    def _joints(self, state: AcrobotState) -> tuple[tuple[float, float], tuple[float, float]]:
        """The joint's and the tip's (x, y), the pivot at the origin and y up, default lengths."""
        theta1, theta2 = float(state.theta1), float(state.theta2)
        joint = (math.sin(theta1), -math.cos(theta1))
        tip = (joint[0] + math.sin(theta1 + theta2), joint[1] - math.cos(theta1 + theta2))
        return joint, tip

    def render_text(self, state: AcrobotState) -> str:
        _, tip = self._joints(state)
        status = "terminated" if bool(state.terminated) else "truncated" if bool(state.truncated) else "running"
        return "\n".join([
            f"step {int(state.step_count)} ({status})",
            f"theta1={float(state.theta1):+.3f} rad  theta2={float(state.theta2):+.3f} rad  "
            f"theta1_dot={float(state.theta1_dot):+.3f} rad/s  theta2_dot={float(state.theta2_dot):+.3f} rad/s",
            f"tip height {tip[1]:+.3f} m (goal: above +1.000 m)",
        ])

    def render_svg(self, state: AcrobotState) -> str:
        size, scale = 300, 65.0
        cx, cy = size / 2, size / 2
        joint, tip = self._joints(state)
        jx, jy = cx + scale * joint[0], cy - scale * joint[1]
        tx, ty = cx + scale * tip[0], cy - scale * tip[1]
        colour = "#27ae60" if bool(state.terminated) else "#2c3e50"
        return "".join([
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">',
            f'<rect width="{size}" height="{size}" fill="white"/>',
            f'<line x1="0" y1="{cy - scale:.1f}" x2="{size}" y2="{cy - scale:.1f}" stroke="#999999" '
            'stroke-dasharray="6 4"/>',
            f'<line x1="{cx}" y1="{cy}" x2="{jx:.1f}" y2="{jy:.1f}" stroke="{colour}" stroke-width="8" '
            'stroke-linecap="round"/>',
            f'<line x1="{jx:.1f}" y1="{jy:.1f}" x2="{tx:.1f}" y2="{ty:.1f}" stroke="{colour}" stroke-width="8" '
            'stroke-linecap="round"/>',
            f'<circle cx="{cx}" cy="{cy}" r="5" fill="#8184cb"/>',
            f'<circle cx="{jx:.1f}" cy="{jy:.1f}" r="4" fill="#ca9865"/>',
            f'<text x="8" y="{size - 10}" font-family="monospace" font-size="13">step {int(state.step_count)}  '
            f'tip {tip[1]:+.2f} m</text>',
            "</svg>",
        ])

    def action_to_text(self, action: int) -> str:
        return ("torque -1", "no torque", "torque +1")[int(action)]

    def text_to_action(self, text: str) -> int:
        word = text.strip().lower()
        for action, names in enumerate((("0", "-", "neg"), ("1", "none"), ("2", "+", "pos"))):
            if word in names:
                return action
        raise ValueError(f"unknown move {text!r}; write 0/-/neg (torque -1), 1/none (no torque) or 2/+/pos (torque +1)")
