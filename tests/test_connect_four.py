"""Connect four: the rules on hand-made games, checked against a plain NumPy referee."""

import functools
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.errors import UserError


@functools.lru_cache(maxsize=None)
def _game(rows=6, columns=7):
    env = sl.make("connect_four", rows=rows, columns=columns)
    return env, jax.jit(env.reset), jax.jit(env.step)


def play(moves, rows=6, columns=7):
    """The states after each move of ``moves`` (the start state first)."""
    env, reset, step = _game(rows, columns)
    reset_key, *step_keys = jax.random.split(jax.random.key(0), len(moves) + 1)
    states = [reset(reset_key)]
    for column, key in zip(moves, step_keys):
        states.append(step(states[-1], jnp.int32(column), key))
    return env, states


def reference_winner(grid):
    """The owner of a four in a row in ``grid`` (int[rows, columns], -1 empty), or -1."""
    rows, columns = grid.shape
    for r in range(rows):
        for c in range(columns):
            owner = grid[r, c]
            if owner < 0:
                continue
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                cells = [(r + k * dr, c + k * dc) for k in range(4)]
                inside = all(0 <= y < rows and 0 <= x < columns for y, x in cells)
                if inside and all(grid[y, x] == owner for y, x in cells):
                    return int(owner)
    return -1


def assert_live(states):
    for state in states:
        assert not bool(state.terminated)
        assert np.all(np.asarray(state.rewards) == 0)


@pytest.mark.parametrize(
    "moves, winner",
    [
        # Horizontal: player 0 fills the bottom row from column 0 to 3.
        ([0, 0, 1, 1, 2, 2, 3], 0),
        # Vertical: player 1 stacks four in column 1.
        ([0, 1, 0, 1, 2, 1, 6, 1], 1),
        # Rising diagonal (bottom left to top right) for player 0: (c0,h0) (c1,h1) (c2,h2) (c3,h3).
        ([0, 1, 1, 2, 3, 2, 2, 3, 6, 3, 3], 0),
        # Falling diagonal for player 1: (c3,h0) (c2,h1) (c1,h2) (c0,h3).
        ([6, 3, 2, 2, 1, 0, 1, 1, 0, 6, 0, 0], 1),
    ],
)
def test_four_in_a_row_wins(moves, winner):
    env, states = play(moves)
    assert_live(states[:-1])
    final = states[-1]
    assert bool(final.terminated)
    expected = np.where(np.arange(2) == winner, 1.0, -1.0)
    np.testing.assert_array_equal(np.asarray(final.rewards), expected)
    assert reference_winner(env.discs(final)) == winner
    assert len(moves) % 2 == (1 if winner == 0 else 0)


def test_right_edge_horizontal_for_player_one():
    # Player 1 completes columns 3..6 of the second row from the bottom, on the board's edge.
    moves = [3, 3, 4, 5, 6, 4, 0, 5, 0, 6]
    env, states = play(moves)
    grid = env.discs(states[-2])
    assert list(grid[-2, 3:]) == [1, 1, 1, -1] and list(grid[-1, 3:]) == [0, 0, 1, 0]
    assert_live(states[:-1])
    final = states[-1]
    assert bool(final.terminated)
    np.testing.assert_array_equal(np.asarray(final.rewards), [-1.0, 1.0])


def test_no_line_across_a_column_edge():
    # On 4 rows, player 0 holds the top two cells of column 0 and the bottom two of column 1;
    # in the column-major bit order those four are neighbours but for the spare bit between.
    moves = [1, 0, 1, 0, 0, 2, 0]
    env, states = play(moves, rows=4, columns=5)
    grid = env.discs(states[-1])
    assert list(grid[:, 0]) == [0, 0, 1, 1] and list(grid[2:, 1]) == [0, 0]
    assert_live(states)


def test_full_board_is_a_draw():
    # Columns in two-high bands of alternating colour; no four in any direction.
    moves = [0, 1, 0, 0, 2, 0, 0, 1, 0, 3, 1, 3, 1, 1, 2, 1, 3, 2, 3, 2, 2,
             3, 2, 3, 4, 5, 4, 4, 6, 4, 4, 5, 6, 6, 4, 6, 5, 6, 5, 5, 6, 5]
    env, states = play(moves)
    assert_live(states[:-1])
    final = states[-1]
    assert bool(final.terminated)
    np.testing.assert_array_equal(np.asarray(final.rewards), [0.0, 0.0])
    grid = env.discs(final)
    assert (grid >= 0).all() and reference_winner(grid) == -1


def test_small_board_draw():
    moves = [0, 1, 0, 1, 2, 3, 2, 3, 1, 0, 1, 0, 3, 2, 3, 2]
    env, states = play(moves, rows=4, columns=4)
    assert_live(states[:-1])
    assert bool(states[-1].terminated)
    np.testing.assert_array_equal(np.asarray(states[-1].rewards), [0.0, 0.0])


def test_full_column_becomes_illegal():
    env, states = play([2] * 5)
    assert bool(states[-1].legal_action_mask[2])
    _, states = play([2] * 6)
    state = states[-1]
    assert not bool(state.terminated)
    np.testing.assert_array_equal(np.asarray(state.legal_action_mask), [1, 1, 0, 1, 1, 1, 1])
    # Dropping into the full column is illegal: the mover (player 0) loses.
    after = _game()[2](state, jnp.int32(2), jax.random.key(1))
    assert bool(after.terminated)
    np.testing.assert_array_equal(np.asarray(after.rewards), [-1.0, 1.0])


def test_players_alternate_and_discs_fall():
    env, states = play([3, 3, 4])
    assert [int(s.current_player) for s in states] == [0, 1, 0, 1]
    grid = env.discs(states[-1])
    assert grid[5, 3] == 0 and grid[4, 3] == 1 and grid[5, 4] == 0
    assert (grid >= 0).sum() == 3


def test_observation_is_from_the_movers_view():
    env, states = play([3])
    state = states[-1]  # player 1 to move; player 0's disc at the bottom of column 3
    obs = np.asarray(state.observation)
    assert obs.shape == (6, 7, 2) and obs.dtype == np.float32
    assert obs[..., 0].sum() == 0
    assert obs[5, 3, 1] == 1 and obs[..., 1].sum() == 1
    for player in (0, 1):
        view = np.asarray(env.observe(state, jnp.int32(player)))
        own = 0 if player == 0 else 1
        assert view[5, 3, own] == 1 and view[5, 3, 1 - own] == 0
    view_0 = np.asarray(env.observe(state, jnp.int32(0)))
    view_1 = np.asarray(env.observe(state, jnp.int32(1)))
    np.testing.assert_array_equal(view_0, view_1[..., ::-1])
    _, states = play([3, 0])
    obs = np.asarray(states[-1].observation)  # player 0 to move
    assert obs[5, 3, 0] == 1 and obs[5, 0, 1] == 1


@pytest.mark.parametrize("rows, columns", [(6, 7), (4, 4), (8, 9)])
def test_random_games_agree_with_reference(rows, columns):
    """Random legal play, compared move by move with a NumPy referee (8x9 spans three words)."""
    env, reset, step = _game(rows, columns)
    rng = np.random.default_rng(rows * 100 + columns)
    for game in range(6):
        state = reset(jax.random.key(game))
        grid = -np.ones((rows, columns), np.int64)
        for turn in range(rows * columns):
            legal = np.flatnonzero(np.asarray(state.legal_action_mask))
            np.testing.assert_array_equal(legal, np.flatnonzero(grid[0] < 0))
            column = int(rng.choice(legal))
            row = np.flatnonzero(grid[:, column] < 0)[-1]
            grid[row, column] = turn % 2
            state = step(state, jnp.int32(column), jax.random.key(turn))
            np.testing.assert_array_equal(env.discs(state), grid)
            winner = reference_winner(grid)
            full = (grid >= 0).all()
            assert bool(state.terminated) == (winner >= 0 or full)
            if winner >= 0:
                np.testing.assert_array_equal(
                    np.asarray(state.rewards), np.where(np.arange(2) == winner, 1.0, -1.0)
                )
            if winner >= 0 or full:
                break


def test_options_are_validated():
    env = sl.make("connect_four", rows=5, columns=9)
    assert env.num_actions == 9 and env.observation_shape == (5, 9, 2)
    bad = [{"rows": 3}, {"rows": 13}, {"columns": 3}, {"columns": 13}]
    for options in bad + [{"rows": "6"}, {"columns": 7.0}]:
        with pytest.raises(UserError, match="connect_four"):
            sl.make("connect_four", **options)


def test_rendering():
    env, states = play([3, 3, 4])
    text = env.render_text(states[-1])
    lines = text.splitlines()
    assert lines[-1].split() == [str(c) for c in range(7)]
    assert lines[-2].split() == [".", ".", ".", "X", "X", ".", "."]
    assert lines[-3].split() == [".", ".", ".", "O", ".", ".", "."]
    svg = ET.fromstring(env.render_svg(states[-1]))
    circles = [e for e in svg.iter() if e.tag.endswith("circle")]
    assert len(circles) == 42
    assert sum(c.get("fill") != "white" for c in circles) == 3
    assert env.text_to_action("6") == 6 and env.action_to_text(2) == "2"
    with pytest.raises(ValueError):
        env.text_to_action("7")
