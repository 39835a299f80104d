"""`check_env`: the conformance checker every environment, built-in or not, must pass."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from superlearner.core.env import Env, State, apply_symmetry
from superlearner.core.wrappers import step_auto_reset


class ConformanceError(AssertionError):
    """An environment broke the contract; the message says which rule and where."""


def _fail(env: Env, rule: str) -> None:
    raise ConformanceError(f"{env.id}: {rule}")


def random_legal_action(key: jax.Array, state: State) -> jax.Array:
    """int32[]: a uniformly random legal action of one unbatched state."""
    logits = jnp.where(state.legal_action_mask, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits).astype(jnp.int32)


def rollout(env: Env, key: jax.Array, num_steps: int, params=None):
    """Random legal play without auto-reset; returns the stacked states (leading axis = time).

    Finished episodes stay finished (absorbing), which the checker relies on.
    """
    reset_key, play_key = jax.random.split(key)
    state = env.reset(reset_key, params)

    def body(state, step_key):
        action_key, env_key = jax.random.split(step_key)
        action = random_legal_action(action_key, state)
        next_state = env.step(state, action, env_key, params)
        return next_state, (state, action)

    _, (states, actions) = jax.lax.scan(body, state, jax.random.split(play_key, num_steps))
    return states, actions


def check_env(env: Env, *, num_envs: int = 16, num_steps: int | None = None, seed: int = 0) -> None:
    """Checks ``env`` against the contract; raises ConformanceError naming the broken rule.

    Checks: static facts; reset/step under jit and vmap; dtypes and shapes of every State field;
    non-empty legal masks in live states; rewards only on steps, zero after the end; finished
    states are absorbing; the same key gives the same trajectory; jit equals eager; ``observe``
    works for every player and matches ``observation`` for the player to move; illegal actions
    end the game with the mover losing; auto-reset starts fresh episodes; declared symmetries
    (`check_symmetries`) commute with the rules; the other declarations (`check_declarations`:
    perfect information, the minimax heuristic and move ordering, exact solvers) have the types
    and shapes the rest of the system reads, on the states of random play.
    """
    if not env.id or not isinstance(env.id, str):
        _fail(env, "id must be a non-empty string")
    for name in ("num_players", "num_actions"):
        value = getattr(env, name)
        if not isinstance(value, int) or value < 1:
            _fail(env, f"{name} must be a positive int, got {value!r}")
    if num_steps is None:
        num_steps = min(env.max_episode_steps or 200, 200) + 20

    key = jax.random.key(seed)
    keys = jax.random.split(key, num_envs)

    # Reset and step, batched, under jit.
    batched = jax.jit(jax.vmap(lambda k: rollout(env, k, num_steps)))
    states, actions = batched(keys)
    _check_fields(env, states, leading=(num_envs, num_steps))

    live = ~(states.terminated | states.truncated)
    mask_any = np.asarray(states.legal_action_mask.any(-1))
    if not mask_any[np.asarray(live)].all():
        _fail(env, "a live state has an empty legal_action_mask")
    chosen_legal = np.take_along_axis(
        np.asarray(states.legal_action_mask), np.asarray(actions)[..., None], axis=-1
    )[..., 0]
    if not chosen_legal[np.asarray(live)].all():
        _fail(env, "the checker sampled an illegal action (legal mask and sampling disagree)")

    # Rewards of the initial state are zero; after the end, states are absorbing.
    if np.any(np.asarray(states.rewards[:, 0]) != 0):
        _fail(env, "reset returned non-zero rewards")
    done = np.asarray(states.terminated | states.truncated)
    was_done = np.concatenate([np.zeros_like(done[:, :1]), done[:, :-1]], axis=1)
    if np.any(np.asarray(states.rewards)[was_done] != 0):
        _fail(env, "a step from a finished state gave non-zero rewards")
    if np.any(done[:, :-1] & ~done[:, 1:]):
        _fail(env, "a finished state became live again without reset (not absorbing)")
    if env.zero_sum:
        totals = np.asarray(states.rewards).sum(-1)
        if np.any(np.abs(totals) > 1e-5):
            _fail(env, "zero_sum is set but some step's rewards do not sum to zero")
    for field in ("current_player",):
        first = np.asarray(getattr(states, field))
        if np.any(first[:, 0] != 0):
            _fail(env, "player 0 must move first")

    # Observation consistency.
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), states)
    observed = jax.jit(jax.vmap(lambda s: env.observe(s, s.current_player)))(flat)
    if not np.allclose(np.asarray(observed), np.asarray(flat.observation)):
        _fail(env, "state.observation differs from observe(state, state.current_player)")
    for player in range(env.num_players):
        view = jax.jit(jax.vmap(lambda s: env.observe(s, jnp.int32(player))))(flat)
        if tuple(view.shape[1:]) != tuple(env.observation_shape):
            _fail(env, f"observe(state, {player}) has shape {view.shape[1:]}, expected {env.observation_shape}")

    # Determinism and jit == eager.
    again, _ = batched(keys)
    if not _trees_equal(states, again):
        _fail(env, "the same key gave a different trajectory")
    short = min(num_steps, 12)
    eager_states, _ = rollout(env, keys[0], short)
    jit_states, _ = jax.jit(lambda k: rollout(env, k, short))(keys[0])
    if not _trees_equal(eager_states, jit_states, atol=1e-5):
        _fail(env, "jit and eager gave different trajectories")

    # Illegal actions: the mover loses and the episode ends.
    state = env.reset(keys[0])
    illegal = np.flatnonzero(~np.asarray(state.legal_action_mask))
    candidates = list(illegal) + [env.num_actions]  # out of range is illegal too
    for bad in candidates[:2]:
        after = jax.jit(env.step)(state, jnp.int32(bad), keys[1])
        if not bool(after.terminated):
            _fail(env, f"illegal action {bad} did not end the episode")
        mover = int(state.current_player)
        if float(after.rewards[mover]) != -1.0:
            _fail(env, f"illegal action {bad}: the mover's reward is {float(after.rewards[mover])}, expected -1")

    # Auto-reset starts a fresh episode after the end.
    def autoreset_play(key):
        reset_key, key = jax.random.split(key)
        state = env.reset(reset_key)

        def body(state, step_key):
            action_key, env_key = jax.random.split(step_key)
            next_state, final = step_auto_reset(env, state, random_legal_action(action_key, state), env_key)
            return next_state, (final, next_state)

        _, out = jax.lax.scan(body, state, jax.random.split(key, num_steps))
        return out

    finals, nexts = jax.jit(jax.vmap(autoreset_play))(keys)
    ended = np.asarray(finals.terminated | finals.truncated)
    if np.any(np.asarray(nexts.step_count)[ended] != 0):
        _fail(env, "auto-reset did not start a fresh episode after the end")
    if np.any(np.asarray(nexts.terminated | nexts.truncated)):
        _fail(env, "auto-reset returned a finished state")

    if env.symmetries is not None:
        check_symmetries(env, num_games=num_envs, num_steps=num_steps, seed=seed)
    check_declarations(env, flat, seed=seed)


def check_declarations(env: Env, states: State, *, seed: int = 0) -> None:
    """Checks what ``env`` declares to the rest of the system (`superlearner.core.env.Env`), on
    ``states`` (a batch of unbatched states with a leading axis, e.g. from random play).

    * ``perfect_information`` is a bool and ``minimax_width`` None or a positive int;
    * ``heuristic`` jits and gives a finite float32 scalar, and ``move_priority`` a float
      ``[num_actions]`` with finite entries on the legal actions, for every live state;
    * a declared ``perfect_player`` (built with default params) plays only legal moves;
    * declared ``solved_action_values`` are float ``[num_actions]`` and finite on the legal actions;
    * a declared ``exploitability`` comes with ``info_states`` whose tables have the env's shapes
      and cover every live state's observation, gives a finite value >= 0 for the uniform policy,
      and the same value for that policy mixed with itself.
    """
    if not isinstance(env.perfect_information, (bool, np.bool_)):
        _fail(env, f"perfect_information must be a bool, got {env.perfect_information!r}")
    width = env.minimax_width
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        _fail(env, f"minimax_width must be None or a positive int, got {width!r}")

    live = ~np.asarray(states.terminated | states.truncated)
    if not live.any():
        return
    live_states = jax.tree.map(lambda x: x[np.flatnonzero(live)], states)
    legal = np.asarray(live_states.legal_action_mask)

    value = jax.eval_shape(env.heuristic, jax.tree.map(lambda x: x[0], live_states))
    if value.shape != () or value.dtype != jnp.float32:
        _fail(env, f"heuristic(state) must be a float32 scalar, got {value.dtype}{list(value.shape)}")
    values = np.asarray(jax.jit(jax.vmap(env.heuristic))(live_states))
    if not np.all(np.isfinite(values)):
        _fail(env, "heuristic(state) is not finite for some state of random play")
    priority = jax.jit(jax.vmap(env.move_priority))(live_states)
    if tuple(priority.shape[1:]) != (env.num_actions,) or not jnp.issubdtype(priority.dtype, jnp.floating):
        _fail(env, f"move_priority(state) must be float[{env.num_actions}], got {priority.dtype}{list(priority.shape[1:])}")
    if not np.all(np.isfinite(np.asarray(priority))[legal]):
        _fail(env, "move_priority(state) is not finite on a legal action of some state of random play")

    keys = jax.random.split(jax.random.key(seed + 2), legal.shape[0])
    if env.perfect_player is not None:
        act = env.perfect_player(None)
        actions = np.asarray(jax.jit(jax.vmap(act))(keys, live_states))
        if actions.shape != (legal.shape[0],) or not np.all(legal[np.arange(legal.shape[0]), actions]):
            _fail(env, "perfect_player plays an illegal move (or not one int per state)")
    if env.solved_action_values is not None:
        solved = jax.jit(jax.vmap(lambda s, k: env.solved_action_values(s, k)))(live_states, keys)
        if tuple(solved.shape[1:]) != (env.num_actions,) or not jnp.issubdtype(solved.dtype, jnp.floating):
            _fail(env, f"solved_action_values must be float[{env.num_actions}], got {solved.dtype}{list(solved.shape[1:])}")
        if not np.all(np.isfinite(np.asarray(solved))[legal]):
            _fail(env, "solved_action_values are not finite on a legal action of some state of random play")
    if env.exploitability is not None:
        _check_exploitability(env, np.asarray(live_states.observation))


def _check_exploitability(env: Env, observations: np.ndarray) -> None:
    if env.info_states is None:
        _fail(env, "exploitability is declared without info_states (the table it reads a policy on)")
    views = env.info_states()
    table = np.asarray(views.observations)
    masks = np.asarray(views.legal_action_masks)
    count = table.shape[0] if table.ndim else 0
    if count < 1 or table.shape[1:] != tuple(env.observation_shape):
        _fail(env, f"info_states().observations has shape {table.shape}, expected [I, *{tuple(env.observation_shape)}]")
    if masks.shape != (count, env.num_actions) or masks.dtype != np.bool_ or not masks.any(-1).all():
        _fail(env, f"info_states().legal_action_masks must be bool[{count}, {env.num_actions}] with a legal action in each row")
    players = np.asarray(views.players)
    if players.shape != (count,) or np.any((players < 0) | (players >= env.num_players)):
        _fail(env, f"info_states().players must be int[{count}] in 0..{env.num_players - 1}")
    flat = table.reshape(count, -1)
    seen = observations.reshape(observations.shape[0], -1)
    covered = (seen[:, None, :] == flat[None, :, :]).all(-1).any(-1)
    if not covered.all():
        _fail(env, "a live state's observation is none of info_states().observations")
    uniform = masks / masks.sum(-1, keepdims=True)
    value = float(env.exploitability(uniform))
    if not np.isfinite(value) or value < -1e-6:
        _fail(env, f"exploitability of the uniform policy is {value}, expected a finite value >= 0")
    mixed = float(env.exploitability(np.stack([uniform, uniform]), np.array([0.5, 0.5])))
    if abs(mixed - value) > 1e-6:
        _fail(env, f"exploitability of the uniform policy mixed with itself is {mixed}, not {value}")


def check_symmetries(env: Env, *, num_games: int = 16, num_steps: int = 64, seed: int = 0) -> int:
    """Checks ``env.symmetries``; returns how many symmetries were checked against the rules.

    Each must be a permutation of the cells and of the actions, the first the identity. Every
    symmetry that leaves the start position as it is must commute with the rules: playing the
    transformed moves of a random game gives, at every step, the transformed observation and
    legal-action mask and the same rewards and ends. (A symmetry that moves the start position,
    such as othello's mirror, can only be checked from positions built by hand.)
    """
    sym = env.symmetries
    cells, actions = np.asarray(sym.cells), np.asarray(sym.actions)
    height, width = env.observation_shape[:2]
    if cells.ndim != 2 or cells.shape[1] != height * width or actions.shape != (cells.shape[0], env.num_actions):
        _fail(env, f"symmetries have shapes {cells.shape} and {actions.shape}, expected [S, {height * width}] and [S, {env.num_actions}]")
    for name, table in (("cells", cells), ("actions", actions)):
        if np.any(np.sort(table, axis=1) != np.arange(table.shape[1])):
            _fail(env, f"symmetries.{name} has a row that is not a permutation")
        if np.any(table[0] != np.arange(table.shape[1])):
            _fail(env, f"symmetries.{name}[0] is not the identity")

    keys = jax.random.split(jax.random.key(seed + 1), num_games)
    start = env.reset(keys[0])

    def transformed(index, state):
        index = jnp.full(state.current_player.shape, index, jnp.int32)
        return apply_symmetry(sym, index, state.observation, state.legal_action_mask)

    fixing = [
        s for s in range(sym.size)
        if _trees_equal(transformed(s, jax.tree.map(lambda x: x[None], start)),
                        (start.observation[None], start.legal_action_mask[None]))
    ]
    states, moves = jax.jit(jax.vmap(lambda k: rollout(env, k, num_steps)))(keys)
    for s in fixing:
        # Original action a is played as b with actions[s, b] == a.
        inverse = np.argsort(actions[s]).astype(np.int32)

        def replay(key, played):
            reset_key, play_key = jax.random.split(key)
            state = env.reset(reset_key)

            def body(state, step):
                action, step_key = step
                action_key, env_key = jax.random.split(step_key)
                del action_key
                next_state = env.step(state, jnp.asarray(inverse)[action], env_key)
                return next_state, state

            return jax.lax.scan(body, state, (played, jax.random.split(play_key, num_steps)))[1]

        mirrored = jax.jit(jax.vmap(replay))(keys, moves)
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
        want_obs, want_mask = transformed(s, jax.tree.map(flat, states))
        if not _trees_equal((flat(mirrored.observation), flat(mirrored.legal_action_mask)), (want_obs, want_mask)):
            _fail(env, f"symmetry {s}: the transformed moves do not give the transformed positions")
        if not _trees_equal((mirrored.rewards, mirrored.terminated), (states.rewards, states.terminated)):
            _fail(env, f"symmetry {s}: the transformed game has other rewards or ends")
    return len(fixing)


def _check_fields(env: Env, states: State, leading: tuple[int, ...]) -> None:
    specs = {
        "current_player": ((), jnp.int32),
        "legal_action_mask": ((env.num_actions,), jnp.bool_),
        "rewards": ((env.num_players,), jnp.float32),
        "terminated": ((), jnp.bool_),
        "truncated": ((), jnp.bool_),
        "observation": (tuple(env.observation_shape), env.observation_dtype),
        "step_count": ((), jnp.int32),
    }
    for name, (shape, dtype) in specs.items():
        value = getattr(states, name)
        if tuple(value.shape) != leading + shape:
            _fail(env, f"State.{name} has shape {value.shape[len(leading):]}, expected {shape}")
        if value.dtype != jnp.dtype(dtype):
            _fail(env, f"State.{name} has dtype {value.dtype}, expected {jnp.dtype(dtype)}")
    for leaf in jax.tree.leaves(states):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            _fail(env, "State holds a PRNG key; keys must be passed to step, never stored")


def _trees_equal(a, b, atol: float = 0.0) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return all(
        np.allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0) if atol else np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b)
    )
