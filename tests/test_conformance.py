"""Every registered environment passes the conformance checker, and the checker names a wrong
declaration (heuristic, exact solver, ...)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.core.testing import ConformanceError, check_declarations, check_env, rollout
from superlearner.envs.kuhn_poker import KuhnPoker
from superlearner.envs.tic_tac_toe import TicTacToe


@pytest.mark.parametrize("env_id", sl.list_envs())
def test_builtin_env_conforms(env_id):
    check_env(sl.make(env_id))


# ---------------------------------------------------------------------------------------------
# The declarations: check_env fails on a wrong one, naming it.


def _random_play(env, games: int = 4, steps: int = 12):
    states, _ = jax.jit(jax.vmap(lambda k: rollout(env, k, steps)))(jax.random.split(jax.random.key(0), games))
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), states)


class _VectorHeuristic(TicTacToe):
    def heuristic(self, state):
        return state.observation.reshape(-1)  # not a scalar


class _NanHeuristic(TicTacToe):
    def heuristic(self, state):
        return jnp.float32(jnp.nan)


class _WrongPriority(TicTacToe):
    def move_priority(self, state):
        return jnp.zeros((3,), jnp.float32)


class _NotABool(TicTacToe):
    perfect_information = "yes"


class _ZeroWidth(TicTacToe):
    minimax_width = 0


class _IllegalPerfectPlayer(TicTacToe):
    def perfect_player(self, params=None):
        return lambda key, state: jnp.int32(4)  # the centre, taken after the first move


class _ExploitabilityWithoutInfoStates(TicTacToe):
    def exploitability(self, policy, weights=None):
        return 0.0


class _MissingInfoState(KuhnPoker):
    def info_states(self):
        views = super().info_states()
        return type(views)(*(np.asarray(table)[1:] for table in views))  # J at the root is missing


@pytest.mark.parametrize(
    "env_class, message",
    [
        (_VectorHeuristic, "heuristic.*float32 scalar"),
        (_NanHeuristic, "heuristic.*not finite"),
        (_WrongPriority, r"move_priority.*float\[9\]"),
        (_NotABool, "perfect_information must be a bool"),
        (_ZeroWidth, "minimax_width"),
        (_IllegalPerfectPlayer, "perfect_player plays an illegal move"),
        (_ExploitabilityWithoutInfoStates, "without info_states"),
        (_MissingInfoState, "none of info_states"),
    ],
)
def test_wrong_declarations_are_named(env_class, message):
    env = env_class()
    with pytest.raises(ConformanceError, match=message):
        check_declarations(env, _random_play(env))


def test_the_builtin_declarations_pass_and_check_env_checks_them():
    for env in (TicTacToe(), KuhnPoker()):
        check_declarations(env, _random_play(env))
    with pytest.raises(ConformanceError, match="perfect_player plays an illegal move"):
        check_env(_IllegalPerfectPlayer(), num_envs=4, num_steps=12)


def test_an_env_that_declares_nothing_gets_the_defaults():
    cartpole = sl.make("cartpole")
    assert cartpole.perfect_information is True and cartpole.minimax_width is None
    assert cartpole.perfect_player is None and cartpole.exploitability is None
    assert cartpole.solved_action_values is None and cartpole.info_states is None
    state = cartpole.reset(jax.random.key(0))
    assert float(cartpole.heuristic(state)) == 0.0
    np.testing.assert_array_equal(cartpole.move_priority(state), np.zeros(cartpole.num_actions))
