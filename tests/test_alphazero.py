"""Gumbel AlphaZero: masking at every depth of the search, value signs, the replay buffer,
outcome targets, exact reproducibility, a population vmap, and a tiny tic-tac-toe run."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from superlearner.selfplay.anchors import make_anchor
from superlearner.selfplay.arena import from_anchor, make_match_fn, summarize_returns
from superlearner.errors import UserError
from superlearner.learners.alphazero import (
    AlphaZeroHparams,
    AlphaZeroSettings,
    PolicyValueNet,
    Positions,
    make_alphazero,
    replay_init,
    replay_insert,
    replay_resolve,
    replay_sample,
    value_targets,
)
from superlearner.core.registry import make
from superlearner.core.wrappers import step_auto_reset

# One small configuration shared by the tests that run whole iterations, so the iteration is
# compiled once per test session.
TINY = AlphaZeroSettings(
    num_envs=32, unroll_length=9, num_simulations=16, max_num_considered_actions=9,
    replay_capacity=8192, batch_size=128, num_updates=8, min_replay_size=128, channels=16, num_blocks=1,
)
TINY_HPARAMS = dict(learning_rate=3e-3)


@functools.lru_cache(maxsize=None)
def tiny_tic_tac_toe():
    """The TINY learner on tic-tac-toe and its jitted iteration."""
    az = make_alphazero(make("tic_tac_toe"), TINY)
    return az, jax.jit(az.iteration)


@functools.lru_cache(maxsize=None)
def tic_tac_toe_players():
    """Jitted search (32 simulations, no noise), search act and raw act of the TINY learner."""
    az, _ = tiny_tic_tac_toe()
    search = jax.jit(lambda params, states, key: az.search(params, states, key, 32, 0.0))
    act = jax.jit(lambda params, states, key: az.act(params, states, key, 32, greedy=True))
    return search, act, jax.jit(az.act_raw)


def play(env, moves):
    """The state after playing ``moves`` from the start (one unbatched state)."""
    reset_key, *step_keys = jax.random.split(jax.random.key(0), len(moves) + 1)
    state = env.reset(reset_key)
    for move, key in zip(moves, step_keys):
        state = env.step(state, jnp.int32(move), key)
    assert not bool(state.terminated)
    return state


def batch_of(state, size):
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (size,) + x.shape), state)


# ------------------------------------------------------------------------------------------------
# Settings and errors.


def test_bad_settings_and_envs_raise_user_errors():
    with pytest.raises(UserError, match="num_envs"):
        AlphaZeroSettings(num_envs=0)
    with pytest.raises(UserError, match="num_simulations"):
        AlphaZeroSettings(num_simulations="8")
    with pytest.raises(UserError, match="max_depth"):
        AlphaZeroSettings(max_depth=0)
    with pytest.raises(UserError, match="min_replay_size"):
        AlphaZeroSettings(replay_capacity=100, min_replay_size=200)
    with pytest.raises(UserError, match="perfect information"):
        make_alphazero(make("kuhn_poker"), TINY)  # hidden cards: a search through the true state would cheat
    # A one-player env is planned through its own rules (the curriculum's mazes, for one).
    assert make_alphazero(make("maze"), TINY).env.num_players == 1
    with pytest.raises(UserError, match="learning_rat"):
        AlphaZeroHparams.from_values(learning_rat=1e-3)
    hparams = AlphaZeroHparams.from_values(gumbel_scale=0.5)
    assert hparams.gumbel_scale.dtype == jnp.float32 and float(hparams.gumbel_scale) == 0.5


# ------------------------------------------------------------------------------------------------
# The network.


@pytest.mark.parametrize(
    "observation_shape, num_actions",
    [((3, 3, 2), 9), ((6, 7, 2), 7), ((8, 8, 2), 65), ((5,), 3)],
)
def test_network_shapes_and_untrained_outputs(observation_shape, num_actions):
    net = PolicyValueNet(observation_shape, num_actions, 8, 2, rngs=nnx.Rngs(0))
    observation = jax.random.bernoulli(jax.random.key(1), 0.4, (2, 3) + observation_shape).astype(jnp.float32)
    logits, value = net(observation)
    assert logits.shape == (2, 3, num_actions) and value.shape == (2, 3)
    # Zero output layers: a uniform prior and a zero value before training.
    np.testing.assert_array_equal(logits, 0.0)
    np.testing.assert_array_equal(value, 0.0)
    # After a perturbation the value stays inside (-1, 1) and the outputs depend on the input.
    graphdef, params = nnx.split(net)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(treedef, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    logits, value = jax.jit(lambda p, o: nnx.merge(graphdef, p)(o))(params, observation)
    assert np.all(np.abs(value) <= 1.0) and np.std(np.asarray(value)) > 0
    assert np.std(np.asarray(logits[..., 0])) > 0


# ------------------------------------------------------------------------------------------------
# Search.

# Connect four positions without a line: columns 0-4 full (player 0 to move); columns 0-4 full
# and column 5 one disc short (player 1 to move); columns 0-5 full (player 0 to move).
FIVE_COLUMNS_FULL = [2, 0, 1, 2, 1, 1, 1, 4, 0, 2, 2, 1, 0, 3, 4, 1, 4, 3, 2, 4, 0, 0, 4, 4, 3, 0, 2, 3, 3, 3]
FIVE_AND_A_HALF_FULL = [4, 4, 5, 5, 3, 1, 0, 2, 2, 1, 4, 5, 3, 3, 1, 3, 1, 3, 0, 0, 5, 4, 3, 2, 1, 2, 4, 2,
                        5, 4, 2, 0, 0, 1, 0]
SIX_COLUMNS_FULL = [2, 0, 2, 5, 5, 2, 4, 5, 4, 3, 1, 0, 2, 0, 2, 5, 1, 3, 0, 5, 5, 4, 0, 0, 2, 4, 1, 4,
                    4, 1, 3, 1, 3, 3, 1, 3]


def node_depths(parents):
    """int[B, N] depth of every node of mctx trees (parents int[B, N], -1 at the root/unused)."""
    depth = np.zeros(parents.shape, np.int64)
    for _ in range(parents.shape[1]):
        parent_depth = np.take_along_axis(depth, np.maximum(parents, 0), axis=1)
        depth = np.where(parents >= 0, parent_depth + 1, 0)
    return depth


def test_search_never_picks_illegal_actions_at_any_depth():
    env = make("connect_four")
    settings = AlphaZeroSettings(num_envs=1, channels=8, num_blocks=1, min_replay_size=1, replay_capacity=8)
    az = make_alphazero(env, settings)
    params = az.init(jax.random.key(0)).params
    # An adversarial prior: high logits on columns 0-5, low on column 6, so the network prefers
    # the full columns at the root and column 5 after it fills up inside the tree.
    model = nnx.merge(az.graphdef, params)
    model.policy_out.bias[...] = jnp.array([6.0, 6.0, 6.0, 6.0, 6.0, 6.0, -6.0])
    _, params = nnx.split(model)
    search = jax.jit(az.search, static_argnums=3)
    batch = 32
    narrowed_inside = False
    for moves, legal in ((FIVE_COLUMNS_FULL, {5, 6}), (FIVE_AND_A_HALF_FULL, {5, 6}), (SIX_COLUMNS_FULL, {6})):
        states = batch_of(play(env, moves), batch)
        assert set(np.flatnonzero(np.asarray(states.legal_action_mask[0]))) == legal
        for key, gumbel_scale in ((jax.random.key(1), 1.0), (jax.random.key(2), 0.0)):
            output = search(params, states, key, 48, gumbel_scale)
            assert set(np.asarray(output.action).tolist()) <= legal
            tree = output.search_tree
            nodes = tree.embeddings
            expanded = np.asarray(tree.node_visits) > 0
            live = expanded & ~np.asarray(nodes.terminated | nodes.truncated)
            has_child = np.asarray(tree.children_index) >= 0  # [B, N, A]
            legal_here = np.asarray(nodes.legal_action_mask)  # [B, N, A]
            # Every child that exists below a live node was reached by a legal move.
            assert not np.any(has_child & ~legal_here & live[..., None])
            # The policy target puts no weight on illegal root actions.
            weights = np.asarray(output.action_weights)
            assert np.all(weights[:, sorted(set(range(7)) - legal)] == 0.0)
            # The trees are deep, so the check covered interior nodes well below the root.
            depths = node_depths(np.asarray(tree.parents))
            assert depths[expanded].max() >= 4
            open_columns = legal_here.sum(-1)
            narrowed_inside |= bool(np.any(live & (open_columns < len(legal)) & (depths >= 1)))
    # Some interior nodes had fewer legal moves than their root (column 5 filled up in the tree).
    assert narrowed_inside


# Tic-tac-toe positions with a win in one for the player to move (no threat by the opponent).
X_WINS_AT_2 = [0, 3, 1, 8]  # X: 0, 1; O: 3, 8; X to move
O_WINS_AT_6 = [0, 2, 5, 4, 7]  # X: 0, 5, 7; O: 2, 4; O to move


@pytest.mark.parametrize("moves, mover, winning_move", [(X_WINS_AT_2, 0, 2), (O_WINS_AT_6, 1, 6)])
def test_search_takes_a_win_in_one_and_values_it_for_the_mover(moves, mover, winning_move):
    az, _ = tiny_tic_tac_toe()
    search, _, _ = tic_tac_toe_players()
    params = az.init(jax.random.key(0)).params  # untrained: uniform prior, zero value
    state = play(az.env, moves)
    assert int(state.current_player) == mover
    states = batch_of(state, 16)
    output = search(params, states, jax.random.key(3))
    np.testing.assert_array_equal(output.action, winning_move)
    tree = output.search_tree
    root = tree.ROOT_INDEX
    # The winning move's value is exactly +1 for the mover: reward +1, discount 0 after the end.
    np.testing.assert_allclose(tree.qvalues(jnp.full((16,), root))[:, winning_move], 1.0)
    np.testing.assert_array_equal(tree.children_discounts[:, root, winning_move], 0.0)
    # The root value (the mean of the backed-up returns) is positive from the mover's view.
    assert np.all(np.asarray(tree.node_values[:, root]) > 0.2)
    # Evaluation's act plays the same move; the network alone has no preference yet.
    _, act, act_raw = tic_tac_toe_players()
    np.testing.assert_array_equal(act(params, states, jax.random.key(4)), winning_move)
    assert len(set(np.asarray(act_raw(params, states, jax.random.key(5))).tolist())) == 1


# ------------------------------------------------------------------------------------------------
# Replay buffer and value targets.


def numbered_positions(ids, **overrides):
    """Positions whose ``value_target`` holds an id, to follow where entries land."""
    ids = jnp.asarray(ids, jnp.float32)
    size = ids.shape[0]
    fields = dict(
        observation=jnp.stack([ids, -ids], axis=-1),
        legal_action_mask=jnp.ones((size, 3), bool),
        policy_target=jnp.full((size, 3), 1.0 / 3.0),
        value_target=ids,
        search_value=jnp.zeros((size,)),
        player=jnp.zeros((size,), jnp.int32),
        slot=jnp.zeros((size,), jnp.int32),
        return_before=jnp.zeros((size,)),
        pending=jnp.zeros((size,), bool),
        valid=jnp.ones((size,), bool),
    )
    fields.update(overrides)
    return Positions(**fields)


def test_replay_ring_wraps_around_and_overwrites_the_oldest():
    example = jax.tree.map(lambda x: x[0], numbered_positions([0]))
    for insert in (replay_insert, jax.jit(replay_insert)):
        buffer = replay_init(example, 5)
        assert int(buffer.size) == 0 and not np.any(buffer.positions.valid)
        buffer = insert(buffer, numbered_positions([0, 1, 2]))
        assert (int(buffer.insert_index), int(buffer.size)) == (3, 3)
        buffer = insert(buffer, numbered_positions([3, 4, 5]))
        # Id 5 overwrote id 0, the oldest.
        assert (int(buffer.insert_index), int(buffer.size)) == (1, 5)
        np.testing.assert_array_equal(buffer.positions.value_target, [5, 1, 2, 3, 4])
        np.testing.assert_array_equal(buffer.positions.observation[:, 1], [-5, -1, -2, -3, -4])
        # A batch larger than the ring: only its newest 5 entries land, where one-by-one inserts
        # would have left them, and the next insert overwrites the oldest (id 8 at index 3).
        buffer = insert(buffer, numbered_positions(range(6, 13)))
        assert (int(buffer.insert_index), int(buffer.size)) == (3, 5)
        np.testing.assert_array_equal(buffer.positions.value_target, [10, 11, 12, 8, 9])
        buffer = insert(buffer, numbered_positions([13]))
        np.testing.assert_array_equal(buffer.positions.value_target, [10, 11, 12, 13, 9])
    # vmap over two buffers at once (e.g. a population).
    buffers = jax.vmap(lambda _: replay_init(example, 4))(jnp.arange(2))
    batches = jax.vmap(numbered_positions)(jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    buffers = jax.vmap(replay_insert)(jax.vmap(replay_insert)(buffers, batches), batches)
    np.testing.assert_array_equal(buffers.positions.value_target, [[2, 3, 3, 1], [5, 6, 6, 4]])
    np.testing.assert_array_equal(buffers.size, [4, 4])


def test_replay_sample_draws_only_valid_entries():
    example = jax.tree.map(lambda x: x[0], numbered_positions([0]))
    buffer = replay_init(example, 8)
    key_a, key_b = jax.random.split(jax.random.key(0))
    _, count = replay_sample(buffer, key_a, (4,))
    assert int(count) == 0
    valid = jnp.array([True, False, True, False, False, False, False, False])
    buffer = replay_insert(buffer, numbered_positions(range(8), valid=valid))
    sample, count = jax.jit(replay_sample, static_argnums=2)(buffer, key_b, (50, 20))
    assert int(count) == 2 and sample.value_target.shape == (50, 20)
    assert set(np.unique(sample.value_target).tolist()) == {0.0, 2.0}


def test_pending_entries_get_their_outcome_when_their_game_ends():
    # Slot 0: a game in progress with moves by players 0, 1, 0 (one earlier game's entry is
    # already valid); slot 1: a game still going; slot 2: a game that ends by truncation.
    entries = numbered_positions(
        [0, 0, 0, 0, 0, 0, 0],
        value_target=jnp.array([0.7, 0, 0, 0, 0, 0, 0]),
        player=jnp.array([1, 0, 1, 0, 1, 0, 1]),
        slot=jnp.array([0, 0, 0, 0, 1, 1, 2]),
        return_before=jnp.array([0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0]),
        pending=jnp.array([False, True, True, True, True, True, True]),
        valid=jnp.array([True, False, False, False, False, False, False]),
    )
    buffer = replay_insert(replay_init(jax.tree.map(lambda x: x[0], entries), 8), entries)
    finished = jnp.array([True, False, True])
    final_return = jnp.array([[1.5, -1.5], [0.0, 0.0], [0.0, 0.0]])
    truncated = jnp.array([False, False, True])
    for resolve in (replay_resolve, jax.jit(replay_resolve)):
        positions = resolve(buffer, finished, final_return, truncated).positions
        # Player 0 won slot 0's game with return 1.5; the last entry's mover had 0.5 already.
        np.testing.assert_allclose(positions.value_target[:4], [0.7, 1.5, -1.5, 1.0])
        np.testing.assert_array_equal(positions.valid[:7], [True, True, True, True, False, False, False])
        np.testing.assert_array_equal(positions.pending[:7], [False, False, False, False, True, True, False])


def test_value_targets_of_a_hand_played_game_have_the_movers_sign():
    """X wins in five moves (X: 0, 1, 2; O: 3, 4), then a new game starts and is not over."""
    env = make("tic_tac_toe")
    moves = [0, 3, 1, 4, 2, 4, 0]
    reset_key, *step_keys = jax.random.split(jax.random.key(0), len(moves) + 1)
    state = env.reset(reset_key)
    rewards, players, done, truncated = [], [], [], []
    for move, key in zip(moves, step_keys):
        players.append(int(state.current_player))
        state, final = step_auto_reset(env, state, jnp.int32(move), key)
        rewards.append(final.rewards)
        done.append(bool(final.terminated | final.truncated))
        truncated.append(bool(final.truncated))
    args = (jnp.stack(rewards), jnp.array(players), jnp.array(done), jnp.array(truncated))
    np.testing.assert_array_equal(players, [0, 1, 0, 1, 0, 0, 1])
    for fn in (value_targets, jax.jit(value_targets)):
        target, known, terminated = fn(*args)
        np.testing.assert_array_equal(target[:5], [1, -1, 1, -1, 1])
        np.testing.assert_array_equal(known, [True] * 5 + [False] * 2)
        np.testing.assert_array_equal(terminated[:5], True)
    # A draw, a truncated game and rewards before the end (returns to go) on synthetic steps.
    rewards = jnp.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.5, -0.5], [0.0, 0.0], [1.0, -1.0]])
    players = jnp.array([0, 1, 0, 1, 0, 1])
    done = jnp.array([False, True, True, False, False, True])
    truncated = jnp.array([False, False, True, False, False, False])
    target, known, terminated = value_targets(rewards, players, done, truncated)
    np.testing.assert_allclose(target, [0, 0, 0, -1.5, 1, -1])
    np.testing.assert_array_equal(known, True)
    np.testing.assert_array_equal(terminated, [True, True, False, True, True, True])
    # vmap over slots, as the learner batches it.
    batched = jax.vmap(value_targets, in_axes=1, out_axes=1)(
        jnp.stack([rewards, rewards], 1), jnp.stack([players, players], 1),
        jnp.stack([done, done], 1), jnp.stack([truncated, truncated], 1),
    )
    np.testing.assert_allclose(batched[0][:, 1], target)


# ------------------------------------------------------------------------------------------------
# Whole iterations.


def test_buffer_invariants_across_iterations():
    """Positions of unfinished games are pending exactly while their game is in progress."""
    az, iteration = tiny_tic_tac_toe()
    hparams = AlphaZeroHparams.from_values(**TINY_HPARAMS)
    state = az.init(jax.random.key(0))
    total = 0
    for i in range(3):
        state, metrics = iteration(state, hparams, jax.random.key(10 + i))
        total += TINY.num_envs * TINY.unroll_length
        p = state.buffer.positions
        in_progress = int(state.games.episode_length.sum())
        assert int(p.pending.sum()) == in_progress > 0
        # No truncation in tic-tac-toe: every entry written is pending or sampleable.
        assert int(state.buffer.size) == total == int(p.valid.sum()) + in_progress
        assert float(metrics["buffer_sampleable"]) == int(p.valid.sum())
        valid = np.asarray(p.valid)
        assert set(np.unique(np.asarray(p.value_target)[valid]).tolist()) <= {-1.0, 0.0, 1.0}
        policy = np.asarray(p.policy_target)[valid]
        np.testing.assert_allclose(policy.sum(-1), 1.0, atol=1e-5)
        assert np.all(policy[~np.asarray(p.legal_action_mask)[valid]] == 0.0)
        # A game of tic-tac-toe lasts 5 to 9 moves.
        length = float(metrics["game_length"])
        assert 5.0 <= length <= 9.0 and float(metrics["games_finished"]) > 0
    assert int(state.num_updates) == 3 * TINY.num_updates
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_same_key_gives_an_identical_state():
    """What exact resume needs: the state is a function of the starting state and the keys."""
    az, iteration = tiny_tic_tac_toe()
    hparams = AlphaZeroHparams.from_values(**TINY_HPARAMS)

    def run(iteration_key):
        state = az.init(jax.random.key(5))
        for key in jax.random.split(iteration_key, 2):
            state, _ = iteration(state, hparams, key)
        return state

    # Key-reuse checking is not switched on here: mctx passes one key to both branches of a
    # lax.cond, which the checker reports under vmap although only one branch runs.
    first, second = run(jax.random.key(6)), run(jax.random.key(6))
    other = run(jax.random.key(7))
    leaves_a, leaves_b = jax.tree.leaves(first), jax.tree.leaves(second)
    assert len(leaves_a) == len(leaves_b) > 10
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.buffer.positions.policy_target, other.buffer.positions.policy_target)


def test_cosine_decay_of_the_step_size_over_the_run():
    decay = 2 * TINY.num_updates  # zero after two applied iterations
    az = make_alphazero(make("tic_tac_toe"), dataclasses.replace(TINY, decay_updates=decay))
    iteration = jax.jit(az.iteration)
    hparams = AlphaZeroHparams.from_values(**TINY_HPARAMS)
    state = az.init(jax.random.key(0))
    factors = []
    for key in jax.random.split(jax.random.key(1), 5):
        before = int(state.num_updates)
        new_state, metrics = iteration(state, hparams, key)
        progress = min(before / decay, 1.0)
        expected = TINY_HPARAMS["learning_rate"] * 0.5 * (1 + np.cos(np.pi * progress))
        np.testing.assert_allclose(float(metrics["learning_rate"]), expected, rtol=1e-5, atol=1e-12)
        if progress >= 1.0 and float(metrics["sgd_applied"]):
            # A zero step size leaves the network as it was (weight decay scales with it too).
            for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new_state.params)):
                np.testing.assert_array_equal(a, b)
        factors.append(round(expected / TINY_HPARAMS["learning_rate"], 6))
        state = new_state
    assert factors[-1] == 0.0 and 0.5 in factors and factors == sorted(factors, reverse=True)


def test_random_openings_vary_only_the_first_moves():
    """``opening_moves=N``: some of each game's first N moves are random legal moves; later moves
    are the search's (without Gumbel noise the search is deterministic, so games that reach the
    same position go on alike)."""
    hparams = AlphaZeroHparams.from_values(**TINY_HPARAMS, gumbel_scale=0.0)
    num_envs, steps = 64, 3

    def boards(opening_moves):
        """Observations [move, game, cells] of the first ``steps`` positions of every game."""
        settings = dataclasses.replace(
            TINY, num_envs=num_envs, unroll_length=steps, num_updates=0, opening_moves=opening_moves
        )
        az = make_alphazero(make("tic_tac_toe"), settings)
        state, _ = jax.jit(az.iteration)(az.init(jax.random.key(0)), hparams, jax.random.key(1))
        obs = np.asarray(state.buffer.positions.observation[: steps * num_envs], np.float32)
        obs = obs.reshape(steps, num_envs, -1)
        # Every move was legal: one more stone per move, on an empty cell.
        np.testing.assert_array_equal((obs != 0).sum(-1), np.arange(steps)[:, None] * np.ones(num_envs))
        return obs

    def distinct(rows):
        return len({row.tobytes() for row in rows})

    def later_moves_follow_the_position(obs, move):
        """Games in the same position before ``move`` are in the same position after it."""
        after = {}
        for before, following in zip(obs[move], obs[move + 1]):
            after.setdefault(before.tobytes(), set()).add(following.tobytes())
        return all(len(v) == 1 for v in after.values())

    plain = boards(0)
    assert distinct(plain[1]) == distinct(plain[2]) == 1
    one = boards(1)
    assert distinct(one[1]) >= 3  # about half the games open at random (9 moves to draw from)
    assert later_moves_follow_the_position(one, 1)
    two = boards(2)
    assert not later_moves_follow_the_position(two, 1)


@pytest.mark.slow
def test_iteration_vmaps_over_a_population():
    """The engine vmaps the learner over a population (compiling the vmapped search is slow)."""
    az, iteration = tiny_tic_tac_toe()
    hparams = AlphaZeroHparams.from_values(**TINY_HPARAMS)
    size = 2
    states = jax.vmap(az.init)(jnp.stack([jax.random.key(0)] * size))
    population_hparams = jax.tree.map(lambda x: jnp.stack([x, x]), hparams)
    population_hparams = population_hparams.replace(learning_rate=jnp.array([3e-3, 0.0]))
    keys = jnp.stack([jax.random.key(1)] * size)
    states, metrics = jax.jit(jax.vmap(az.iteration))(states, population_hparams, keys)
    assert metrics["loss_policy"].shape == (size,)
    # Both members played the same games (same key) and stored the same positions; only the one
    # with a non-zero learning rate moved its parameters.
    np.testing.assert_array_equal(states.buffer.size[0], states.buffer.size[1])
    np.testing.assert_allclose(states.buffer.positions.policy_target[0], states.buffer.positions.policy_target[1], atol=1e-5)
    start = az.init(jax.random.key(0)).params
    moved = [
        max(float(jnp.abs(a[m] - b).max()) for a, b in zip(jax.tree.leaves(states.params), jax.tree.leaves(start)))
        for m in range(size)
    ]
    assert moved[0] > 1e-4 and moved[1] < 1e-6
    # The unbatched iteration gives member 0's state.
    single, _ = iteration(az.init(jax.random.key(0)), hparams, jax.random.key(1))
    np.testing.assert_array_equal(single.buffer.positions.value_target, states.buffer.positions.value_target[0])


@pytest.mark.slow
def test_tiny_tic_tac_toe_run_beats_the_random_player():
    """80 iterations (23k self-play positions) of the TINY learner."""
    env = make("tic_tac_toe")
    az, iteration = tiny_tic_tac_toe()
    hparams = AlphaZeroHparams.from_values(**TINY_HPARAMS)
    num_games = 200  # half in each seat

    def make_match(opponent_spec, num_simulations):
        opponent = from_anchor(make_anchor(env, opponent_spec))

        @jax.jit
        def match(params, key):
            if num_simulations:
                player = lambda key, states: az.act(params, states, key, num_simulations)  # noqa: E731
            else:
                player = lambda key, states: az.act_raw(params, states, key)  # noqa: E731
            return make_match_fn(env, player, opponent, num_games)(key)

        return lambda params: summarize_returns(*match(params, jax.random.key(1)))

    search_vs_random = make_match("random", 8)
    raw_vs_random = make_match("random", 0)
    raw_vs_perfect = make_match("perfect", 0)

    state = az.init(jax.random.key(0))
    untrained = raw_vs_perfect(state.params)
    for key in jax.random.split(jax.random.key(100), 80):
        state, metrics = iteration(state, hparams, key)
    # With a short search the learner beats random play clearly, in both seats.
    result = search_vs_random(state.params)
    assert result.score > 0.85, result
    assert result.wins_first > 0.85 * num_games / 2 and result.wins_second > 0.6 * num_games / 2, result
    # The network alone has learned too: it beats random play and mostly draws against perfect
    # play, which beats the untrained network every game.
    assert raw_vs_random(state.params).score > 0.75
    assert untrained.score < 0.1 and raw_vs_perfect(state.params).score > 0.3
    assert float(metrics["loss_value"]) < 0.3
