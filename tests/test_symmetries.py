"""Board symmetries: the env's declared transformations commute with its rules, and AlphaZero's
augmentation trains on consistent transformed positions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.core.env import Symmetries, apply_symmetry, dihedral_symmetries
from superlearner.core.testing import ConformanceError, check_symmetries


@pytest.mark.parametrize("env_id, total, fixing_start", [("connect_four", 2, 2), ("tic_tac_toe", 8, 8), ("othello", 8, 4)])
def test_declared_symmetries_commute_with_the_rules(env_id, total, fixing_start):
    env = sl.make(env_id)
    assert env.symmetries.size == total
    # Every symmetry that fixes the start position was replayed move by move against the rules.
    assert check_symmetries(env, num_games=8, num_steps=70) == fixing_start


def test_a_symmetry_that_breaks_the_rules_is_caught():
    env = sl.make("connect_four")
    # The board mirrored but the moves not: dropping in column 0 is not the mirror of column 0.
    env.symmetries = Symmetries(cells=env.symmetries.cells, actions=np.stack([np.arange(7)] * 2).astype(np.int32))
    with pytest.raises(ConformanceError, match="symmetry 1"):
        check_symmetries(env, num_games=4, num_steps=20)
    env.symmetries = Symmetries(cells=env.symmetries.cells, actions=np.array([[0, 1, 2, 3, 4, 5, 6], [1, 1, 2, 3, 4, 5, 6]]))
    with pytest.raises(ConformanceError, match="not a permutation"):
        check_symmetries(env, num_games=4, num_steps=20)


def test_dihedral_group_of_a_small_board():
    sym = dihedral_symmetries(3, 10)
    # A quarter turn anticlockwise: the new top row is the old right column.
    np.testing.assert_array_equal(sym.cells[1].reshape(3, 3), [[2, 5, 8], [1, 4, 7], [0, 3, 6]])
    np.testing.assert_array_equal(sym.cells[4].reshape(3, 3), [[2, 1, 0], [5, 4, 3], [8, 7, 6]])
    assert (sym.actions[:, 9] == 9).all()  # the extra action (a pass) never moves
    assert len({tuple(row) for row in sym.cells}) == 8


def test_every_othello_symmetry_maps_a_built_position_to_the_built_transformed_position():
    # Othello's start is fixed by only 4 of the 8 symmetries; positions built by hand check all 8.
    env = sl.make("othello")
    rng = np.random.default_rng(0)
    for _ in range(3):
        discs = rng.choice([-1, -1, 0, 1], size=(8, 8))
        state = env.position(discs, current_player=int(rng.integers(2)))
        for s in range(8):
            index = jnp.full((1,), s, jnp.int32)
            obs, mask = apply_symmetry(env.symmetries, index, state.observation[None], state.legal_action_mask[None])
            moved = discs.reshape(64)[env.symmetries.cells[s]].reshape(8, 8)
            built = env.position(moved, current_player=int(state.current_player))
            np.testing.assert_array_equal(np.asarray(obs[0]), np.asarray(built.observation))
            np.testing.assert_array_equal(np.asarray(mask[0]), np.asarray(built.legal_action_mask))


def test_apply_symmetry_eager_jit_and_vmap_agree():
    env = sl.make("connect_four")
    keys = jax.random.split(jax.random.key(3), 5)
    states = jax.vmap(env.reset)(keys)
    states = jax.vmap(env.step)(states, jnp.array([0, 1, 2, 3, 6]), keys)
    index = jnp.array([0, 1, 1, 0, 1])
    policy = jax.nn.softmax(jax.random.normal(jax.random.key(4), (5, 7)))
    eager = apply_symmetry(env.symmetries, index, states.observation, states.legal_action_mask, policy)
    jitted = jax.jit(lambda i, o, m, p: apply_symmetry(env.symmetries, i, o, m, p))(
        index, states.observation, states.legal_action_mask, policy)
    mapped = jax.vmap(lambda i, o, m, p: jax.tree.map(lambda x: x[0], apply_symmetry(
        env.symmetries, i[None], o[None], m[None], p[None])))(index, states.observation, states.legal_action_mask, policy)
    for a, b, c in zip(eager, jitted, mapped):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    # Mirrored: the disc dropped in column 0 is now in column 6; the policy is read backwards.
    np.testing.assert_array_equal(np.asarray(eager[0][1]), np.asarray(states.observation[1])[:, ::-1])
    np.testing.assert_allclose(np.asarray(eager[2][1]), np.asarray(policy[1])[::-1])
    np.testing.assert_array_equal(np.asarray(eager[0][0]), np.asarray(states.observation[0]))


def test_alphazero_augmentation_moves_each_position_with_its_mask_and_policy():
    from superlearner.learners.alphazero import AlphaZeroSettings, Positions, make_alphazero
    from superlearner.core.testing import rollout

    env = sl.make("connect_four")
    states, _ = jax.vmap(lambda k: rollout(env, k, 12))(jax.random.split(jax.random.key(0), 8))
    states = jax.tree.map(lambda x: x.reshape((2, 48) + x.shape[2:]), states)  # [num_updates, batch]
    policy = jax.nn.softmax(jax.random.normal(jax.random.key(1), (2, 48, 7)))
    batch = Positions(
        observation=states.observation, legal_action_mask=states.legal_action_mask, policy_target=policy,
        value_target=jnp.linspace(-1, 1, 96).reshape(2, 48), search_value=jnp.zeros((2, 48)),
        player=states.current_player, slot=jnp.zeros((2, 48), jnp.int32), return_before=jnp.zeros((2, 48)),
        pending=jnp.zeros((2, 48), bool), valid=jnp.ones((2, 48), bool),
    )
    settings = dict(num_envs=4, unroll_length=2, num_simulations=2, replay_capacity=64, batch_size=48,
                    num_updates=2, min_replay_size=8, channels=4, num_blocks=0)
    az = make_alphazero(env, AlphaZeroSettings(**settings))
    out = jax.jit(az.augment)(batch, jax.random.key(2))
    obs, mask, pol = (np.asarray(x) for x in (out.observation, out.legal_action_mask, out.policy_target))
    obs0, mask0, pol0 = (np.asarray(x) for x in (batch.observation, batch.legal_action_mask, batch.policy_target))
    # The policies are random, so the drawn symmetry of each position reads off its policy; the
    # board and the mask must have moved with it.
    flipped = (pol == pol0[..., ::-1]).all(-1)
    kept = (pol == pol0).all(-1)
    assert (flipped ^ kept).all()
    assert 20 < flipped.sum() < 76  # about half of 96
    np.testing.assert_array_equal(obs[flipped], obs0[flipped][:, :, ::-1])
    np.testing.assert_array_equal(mask[flipped], mask0[flipped][:, ::-1])
    np.testing.assert_array_equal(obs[kept], obs0[kept])
    np.testing.assert_array_equal(mask[kept], mask0[kept])
    np.testing.assert_array_equal(np.asarray(out.value_target), np.asarray(batch.value_target))

    off = make_alphazero(env, AlphaZeroSettings(**settings, symmetry_augmentation=False))
    unchanged = off.augment(batch, jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(unchanged.observation), np.asarray(batch.observation))
