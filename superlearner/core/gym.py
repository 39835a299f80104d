"""Gymnasium, both ways: superlearner envs as `gymnasium.Env`, gymnasium envs as a source.

**A superlearner env as a gymnasium env.** ``to_gymnasium("tic_tac_toe")`` (or, after
``import superlearner``, ``gymnasium.make("superlearner/tic_tac_toe")``) returns a `GymnasiumEnv`:
one unbatched episode stepped from the host through the env's jitted ``reset`` and ``step``. The
observation space is a ``Box`` with the env's observation shape and dtype, the action space is
``Discrete(num_actions)`` and every ``reset`` and ``step`` puts the legal actions of the agent in
``info["action_mask"]`` (int8[num_actions]). A game of several players is seen from one seat;
the other seats are played by a built-in opponent (uniformly random legal moves, or any
``(state) -> action`` callable) inside ``reset`` and ``step``, until it is the agent's turn again
or the episode is over. The reward of a ``step`` is the agent's own reward summed over its move
and the opponents' replies. An illegal action ends the episode and the agent receives -1, as in
every superlearner env. ``reset(seed=s)`` makes the rest of the run reproducible.

This view is for interoperability (other libraries' agents, tools that expect gymnasium) and for
looking at single games. Training at scale uses the pure-JAX envs directly, batched with ``vmap``
inside one jitted program.

**A gymnasium env as a training source.** `GymnasiumSource` runs ``num_envs`` copies of any
gymnasium env with discrete actions (``"CartPole-v1"``, ``"superlearner/tic_tac_toe"``, an env of
one's own) in a ``gymnasium.vector.SyncVectorEnv`` and presents them the way a superlearner
rollout sees a batch: numpy arrays with a leading ``num_envs`` axis, a legal-action mask and
auto-reset on the same step. Its steps are Python calls into the wrapped env, so they cannot be
jitted: the rollout runs on the host, one jitted policy call per step, and only the update is one
jitted call per batch. It is many times slower than the pure-JAX path and meant for envs that
exist only in gymnasium. A training loop uses it like this::

    source = GymnasiumSource("CartPole-v1", num_envs=8)
    obs, mask = source.reset(seed=0)
    for _ in range(num_updates):
        batch = []
        for _ in range(rollout_length):
            policy_key, key = jax.random.split(key)
            actions, extras = policy_fn(learner_state, obs, mask, policy_key)  # jitted
            next_obs, reward, terminated, truncated, next_mask, info = source.step(
                np.asarray(actions)
            )
            # info["final_observation"] is the last observation of an episode that ended
            # (bootstrap from it at truncation); next_obs already starts the next episode.
            batch.append((obs, mask, actions, reward, terminated, truncated, extras,
                          info["final_observation"]))
            obs, mask = next_obs, next_mask
        learner_state, metrics = update_fn(learner_state, stack(batch), hparams, update_key)
    source.close()
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from superlearner.core.env import Env, Params, State, check_params
from superlearner.errors import UserError

GYMNASIUM_NAMESPACE = "superlearner"

OpponentFn = Callable[[State], Any]
"""An opponent: ``(state) -> action`` for the unbatched State of the player to move."""


# --------------------------------------------------------------------------------------------
# Registration with gymnasium.


def register_gymnasium_id(env_id: str) -> None:
    """Makes ``gymnasium.make("superlearner/<env_id>", **kwargs)`` work.

    The keyword arguments of ``gymnasium.make`` are those of `to_gymnasium`: ``opponent``,
    ``seat``, ``seed``, ``params``, ``render_mode`` and the env's own options.
    """
    full_id = f"{GYMNASIUM_NAMESPACE}/{env_id}"
    if full_id in gymnasium.registry:
        return
    gymnasium.register(
        id=full_id,
        entry_point="superlearner.core.gym:make_gymnasium_env",
        kwargs={"env_id": env_id},
    )


def register_all() -> None:
    """Registers every id of `superlearner.list_envs` with gymnasium, and every id registered later."""
    from superlearner.core.registry import add_register_hook, list_envs

    for env_id in list_envs():
        register_gymnasium_id(env_id)
    add_register_hook(register_gymnasium_id)


def make_gymnasium_env(env_id: str, **options: Any) -> "GymnasiumEnv":
    """The entry point of the ``superlearner/<env_id>`` gymnasium ids; see `to_gymnasium`."""
    return to_gymnasium(env_id, **options)


# --------------------------------------------------------------------------------------------
# A superlearner env as a gymnasium env.


def to_gymnasium(
    env_or_id: Env | str,
    *,
    opponent: str | OpponentFn = "random",
    seat: int = 0,
    seed: int | None = None,
    params: Params | None = None,
    render_mode: str | None = None,
    **make_options: Any,
) -> "GymnasiumEnv":
    """A `gymnasium.Env` view of a superlearner env (see the module docstring).

    Args:
      env_or_id: an `Env`, or an env id passed to `superlearner.make` with ``make_options``.
      opponent: who plays the other seats of a multi-player game: ``"random"`` (uniform over
        legal actions, drawn from its own stream seeded by ``reset``'s seed) or a callable
        ``(state) -> action`` given the unbatched `State` of the player to move.
      seat: the player the agent is (0 moves first).
      seed: seeds the first ``reset`` that is given no seed.
      params: the level every episode is played on (the env's default level when None);
        ``reset(options={"params": level})`` changes it.
      render_mode: None or ``"ansi"`` (``render()`` returns ``env.render_text(state)``).
      **make_options: the env's static options, when ``env_or_id`` is an id.

    Raises:
      UserError: an unknown id or option, a seat the game does not have, an opponent that is
        neither ``"random"`` nor callable, params of the wrong structure, or an unknown render
        mode.
    """
    if isinstance(env_or_id, str):
        from superlearner.core.registry import make

        env = make(env_or_id, **make_options)
    elif isinstance(env_or_id, Env):
        if make_options:
            raise UserError(
                f"to_gymnasium: options {sorted(make_options)} apply only when an env id is "
                f"given, not an env object (build the env with those options instead)"
            )
        env = env_or_id
    else:
        raise UserError(
            f"to_gymnasium: expected a superlearner Env or an env id string, "
            f"got {type(env_or_id).__name__}"
        )
    return GymnasiumEnv(
        env, opponent=opponent, seat=seat, seed=seed, params=params, render_mode=render_mode
    )


class _View(NamedTuple):
    """What the host reads after each jitted call: the agent's side of the state."""

    observation: jax.Array  # observation_shape, the agent's view
    legal_action_mask: jax.Array  # bool[num_actions], of the player to move
    current_player: jax.Array  # int32[]
    reward: jax.Array  # float32[], the agent's reward for the last step
    terminated: jax.Array  # bool[]
    truncated: jax.Array  # bool[]


class GymnasiumEnv(gymnasium.Env):
    """One superlearner env, unbatched, behind the gymnasium API; build it with `to_gymnasium`.

    Attributes:
      env: the wrapped superlearner `Env`.
      seat: the player the agent is.
      state: the current unbatched `State` (after the opponents' replies).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        env: Env,
        *,
        opponent: str | OpponentFn = "random",
        seat: int = 0,
        seed: int | None = None,
        params: Params | None = None,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(seat, bool) or not isinstance(seat, (int, np.integer)) or not 0 <= seat < env.num_players:
            raise UserError(
                f"{env.id}: seat={seat!r} is not a player of this game, "
                f"accepted 0..{env.num_players - 1}"
            )
        if not (opponent == "random" if isinstance(opponent, str) else callable(opponent)):
            raise UserError(
                f"{env.id}: opponent={opponent!r} is not accepted, "
                f"expected 'random' or a callable (state) -> action"
            )
        # Only the modes this env can draw are offered, so gymnasium's checks ask for no other.
        has_text = type(env).render_text is not Env.render_text
        self.metadata = {**type(self).metadata, "render_modes": ["ansi"] if has_text else []}
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            accepted = ", ".join(repr(m) for m in [None, *self.metadata["render_modes"]])
            raise UserError(
                f"{env.id}: render_mode={render_mode!r} is not supported, accepted: {accepted}"
            )
        if params is not None:
            check_params(env, params)

        self.env = env
        self.seat = int(seat)
        self.render_mode = render_mode
        self._opponent = opponent
        self._params = env.default_params if params is None else params
        self.observation_space = _observation_space(env)
        self.action_space = spaces.Discrete(env.num_actions)
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)

        # Jitted once per instance; every later call reuses the compiled programs.
        self._reset_fn = jax.jit(self._reset_and_view)
        self._step_fn = jax.jit(self._step_and_view)
        self.state: State | None = None
        self._key: jax.Array | None = None
        self._opponent_rng: np.random.Generator | None = None

    # ----------------------------------------------------------------------------------------
    # The gymnasium API.

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Starts an episode; the opponents move first when the agent's seat is not 0.

        ``options`` may hold ``"params"``: the level of this and later episodes.
        Returns ``(observation, info)`` with ``info["action_mask"]`` (int8[num_actions]).
        """
        super().reset(seed=seed)
        if options and "params" in options:
            check_params(self.env, options["params"])
            self._params = options["params"]
        # The env's key stream and the opponent's stream both come from ``np_random``, so a
        # seeded reset fixes everything that follows it.
        env_seed, opponent_seed = self.np_random.integers(0, 2**63 - 1, size=2)
        self._key = jax.random.key(int(env_seed))
        self._opponent_rng = np.random.default_rng(int(opponent_seed))
        self._key, reset_key = jax.random.split(self._key)
        state, view = self._reset_fn(reset_key, self._params)
        state, view, _ = self._play_opponents(state, jax.device_get(view), 0.0)
        self.state = state
        return _copy_observation(view, self.observation_space), self._info(view)

    def step(self, action):
        """Plays the agent's ``action``, then the opponents' replies.

        Returns ``(observation, reward, terminated, truncated, info)``; ``reward`` is the agent's
        own reward summed over its move and the replies.
        """
        if self.state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        state, view = self._advance(self.state, _as_action(action))
        state, view, reward = self._play_opponents(state, view, float(view.reward))
        self.state = state
        return (
            _copy_observation(view, self.observation_space),
            reward,
            bool(view.terminated),
            bool(view.truncated),
            self._info(view),
        )

    def render(self) -> str | None:
        """The text picture of the current state in ``"ansi"`` mode; None without a mode."""
        if self.render_mode is None:
            return None
        if self.state is None:
            raise gymnasium.error.ResetNeeded("call reset() before render()")
        return self.env.render_text(self.state)

    # ----------------------------------------------------------------------------------------
    # Inside.

    def _reset_and_view(self, key: jax.Array, params: Params) -> tuple[State, _View]:
        state = self.env.reset(key, params)
        return state, self._view(state)

    def _step_and_view(
        self, state: State, action: jax.Array, key: jax.Array, params: Params
    ) -> tuple[State, _View]:
        state = self.env.step(state, action, key, params)
        return state, self._view(state)

    def _view(self, state: State) -> _View:
        return _View(
            observation=self.env.observe(state, jnp.int32(self.seat)),
            legal_action_mask=state.legal_action_mask,
            current_player=state.current_player,
            reward=state.rewards[self.seat],
            terminated=state.terminated,
            truncated=state.truncated,
        )

    def _advance(self, state: State, action: np.int32) -> tuple[State, _View]:
        self._key, step_key = jax.random.split(self._key)
        state, view = self._step_fn(state, action, step_key, self._params)
        return state, jax.device_get(view)

    def _play_opponents(self, state: State, view: _View, reward: float) -> tuple[State, _View, float]:
        # Every game ends (by its rules or by truncation), so this loop ends.
        while not (view.terminated or view.truncated) and int(view.current_player) != self.seat:
            if callable(self._opponent):
                action = _as_action(self._opponent(state))
            else:
                legal = np.flatnonzero(view.legal_action_mask)
                action = np.int32(self._opponent_rng.choice(legal))
            state, view = self._advance(state, action)
            reward += float(view.reward)
        return state, view, reward

    @staticmethod
    def _info(view: _View) -> dict[str, Any]:
        return {"action_mask": np.asarray(view.legal_action_mask, dtype=np.int8)}


def _observation_space(env: Env) -> spaces.Box:
    dtype = np.dtype(env.observation_dtype)
    shape = tuple(env.observation_shape)
    # An env may state the range of its observations; without it the range is unbounded.
    bounds = getattr(env, "observation_bounds", None)
    if bounds is not None:
        low, high = bounds
    elif dtype == np.bool_:
        low, high = False, True
    elif np.issubdtype(dtype, np.integer):
        low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    else:
        low, high = -np.inf, np.inf
    return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)


def _copy_observation(view: _View, space: spaces.Box) -> np.ndarray:
    # A new array on every call: users keep what they are given.
    return np.array(view.observation, dtype=space.dtype, copy=True)


def _as_action(action: Any) -> np.int32:
    value = np.asarray(action)
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise UserError(
            f"an action must be one integer, got {action!r} "
            f"(shape {value.shape}, dtype {value.dtype})"
        )
    # Out-of-range values stay out of range (and so illegal) instead of wrapping around.
    return np.int32(np.clip(value, -1, np.iinfo(np.int32).max))


# --------------------------------------------------------------------------------------------
# A gymnasium env as a host-side training source.


class GymnasiumSource:
    """``num_envs`` copies of a gymnasium env, batched as numpy arrays, with auto-reset.

    Built on ``gymnasium.vector.SyncVectorEnv`` in same-step auto-reset mode: when an episode
    ends, the observation returned by that step already belongs to the next episode and the last
    observation of the one that ended is in ``info["final_observation"]``. Host-side and not
    jittable, so much slower than the pure-JAX envs; see the module docstring for the training
    loop it fits.

    Args:
      env_fns_or_id: a gymnasium id (``"CartPole-v1"``) made ``num_envs`` times with
        ``make_kwargs``, or a sequence of callables that each return a gymnasium env.
      num_envs: the batch size (1 by default for an id; the length of ``env_fns`` otherwise).
      **make_kwargs: keyword arguments of ``gymnasium.make``, when an id is given.

    Attributes:
      num_envs, num_actions, observation_shape, observation_dtype: static facts of the batch.
      single_observation_space, single_action_space: the wrapped env's spaces.

    Raises:
      UserError: an unknown gymnasium id, a ``num_envs`` that disagrees with ``env_fns``, or an
        action space that is not ``Discrete``.
    """

    def __init__(
        self,
        env_fns_or_id: str | Sequence[Callable[[], gymnasium.Env]],
        num_envs: int | None = None,
        **make_kwargs: Any,
    ) -> None:
        if isinstance(env_fns_or_id, str):
            if num_envs is None:
                num_envs = 1
            if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
                raise UserError(f"GymnasiumSource: num_envs={num_envs!r}, expected a positive int")
            env_fns = [functools.partial(gymnasium.make, env_fns_or_id, **make_kwargs)] * num_envs
        else:
            env_fns = list(env_fns_or_id)
            if make_kwargs:
                raise UserError(
                    f"GymnasiumSource: make options {sorted(make_kwargs)} apply only to an id, "
                    f"not to env_fns"
                )
            if not env_fns or not all(callable(fn) for fn in env_fns):
                raise UserError("GymnasiumSource: env_fns must be a non-empty list of callables")
            if num_envs is not None and num_envs != len(env_fns):
                raise UserError(
                    f"GymnasiumSource: num_envs={num_envs} but {len(env_fns)} env_fns were given"
                )
        try:
            self._vector = gymnasium.vector.SyncVectorEnv(
                env_fns, autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP
            )
        except gymnasium.error.Error as error:
            raise UserError(f"GymnasiumSource: {error}") from None

        self.single_observation_space = self._vector.single_observation_space
        self.single_action_space = self._vector.single_action_space
        if not isinstance(self.single_action_space, spaces.Discrete):
            self._vector.close()
            raise UserError(
                f"GymnasiumSource: the action space is {self.single_action_space}, "
                f"only Discrete action spaces are supported"
            )
        self.num_envs = self._vector.num_envs
        self.num_actions = int(self.single_action_space.n)
        self.observation_shape = tuple(self.single_observation_space.shape)
        self.observation_dtype = self.single_observation_space.dtype
        self._episode_return = np.zeros((self.num_envs,), np.float32)
        self._episode_length = np.zeros((self.num_envs,), np.int32)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Starts every env; copy ``i`` is seeded with ``seed + i``.

        Returns:
          obs: ``[num_envs, *observation_shape]``.
          mask: bool[num_envs, num_actions], the legal actions (all true unless the env
            reports ``info["action_mask"]``).
        """
        obs, info = self._vector.reset(seed=seed)
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        return np.asarray(obs), self._mask(info)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every env with ``actions`` (int[num_envs]); finished episodes restart at once.

        Returns:
          obs: ``[num_envs, *observation_shape]``, the next episode's first observation where
            one ended.
          reward: float32[num_envs].
          terminated, truncated: bool[num_envs], how this step's episode ended (if it did).
          mask: bool[num_envs, num_actions], the legal actions for ``obs``.
          info: ``final_observation`` (``obs`` with the last observation of each episode that
            ended in its place), ``episode_return`` (float32[num_envs]) and ``episode_length``
            (int32[num_envs]) of the episodes that ended (zero elsewhere), and ``env_info``,
            the vector env's own info dict.
        """
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise UserError(
                f"GymnasiumSource.step: actions must be integers of shape ({self.num_envs},), "
                f"got shape {actions.shape} and dtype {actions.dtype}"
            )
        obs, reward, terminated, truncated, info = self._vector.step(actions)
        obs = np.asarray(obs)
        reward = np.asarray(reward, np.float32)
        terminated = np.asarray(terminated, np.bool_)
        truncated = np.asarray(truncated, np.bool_)
        done = terminated | truncated

        final_observation = obs.copy()
        if done.any():
            for i in np.flatnonzero(done):
                final_observation[i] = info["final_obs"][i]
        self._episode_return += reward
        self._episode_length += 1
        episode_return = np.where(done, self._episode_return, 0.0).astype(np.float32)
        episode_length = np.where(done, self._episode_length, 0).astype(np.int32)
        self._episode_return[done] = 0.0
        self._episode_length[done] = 0
        extras = {
            "final_observation": final_observation,
            "episode_return": episode_return,
            "episode_length": episode_length,
            "env_info": info,
        }
        return obs, reward, terminated, truncated, self._mask(info), extras

    def close(self) -> None:
        """Closes the wrapped envs."""
        self._vector.close()

    def __enter__(self) -> "GymnasiumSource":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _mask(self, info: dict[str, Any]) -> np.ndarray:
        mask = np.ones((self.num_envs, self.num_actions), np.bool_)
        if "action_mask" in info:
            reported = np.asarray(info["_action_mask"], np.bool_)
            mask[reported] = np.asarray(info["action_mask"])[reported].astype(np.bool_)
        return mask
