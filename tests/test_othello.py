"""Othello: the rules on hand-made positions, checked against a plain Python referee."""

import functools
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.errors import UserError

PASS = 64
DIRECTIONS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


@functools.lru_cache(maxsize=None)
def _game():
    env = sl.make("othello")
    return env, jax.jit(env.reset), jax.jit(env.step)


def step(state, action):
    return _game()[2](state, jnp.int32(action), jax.random.key(0))


def board(picture: str) -> np.ndarray:
    """int[8, 8] from eight rows of ``.`` (empty), ``X`` (black, player 0), ``O`` (white)."""
    rows = [line.split() for line in picture.strip().splitlines()]
    assert len(rows) == 8 and all(len(r) == 8 for r in rows)
    return np.array([[{".": -1, "X": 0, "O": 1}[c] for c in r] for r in rows])


def squares(env, state):
    legal = np.flatnonzero(np.asarray(state.legal_action_mask))
    return sorted(env.action_to_text(a) for a in legal)


def reference_flips(grid, player, r, c):
    """The squares ``player`` flips by playing (r, c), walking the eight directions."""
    if grid[r, c] != -1:
        return []
    flips = []
    for dr, dc in DIRECTIONS:
        run, y, x = [], r + dr, c + dc
        while 0 <= y < 8 and 0 <= x < 8 and grid[y, x] == 1 - player:
            run.append((y, x))
            y, x = y + dr, x + dc
        if run and 0 <= y < 8 and 0 <= x < 8 and grid[y, x] == player:
            flips += run
    return flips


def reference_moves(grid, player):
    return [8 * r + c for r in range(8) for c in range(8) if reference_flips(grid, player, r, c)]


def test_start_position():
    env, reset, _ = _game()
    state = reset(jax.random.key(0))
    assert int(state.current_player) == 0
    assert squares(env, state) == ["c4", "d3", "e6", "f5"]
    assert list(np.flatnonzero(np.asarray(state.legal_action_mask))) == [19, 26, 37, 44]
    grid = env.discs(state)
    assert grid[3, 3] == 1 and grid[4, 4] == 1  # d4, e5 white
    assert grid[4, 3] == 0 and grid[3, 4] == 0  # d5, e4 black
    assert (grid >= 0).sum() == 4


def test_one_move_flips_several_lines():
    env = _game()[0]
    grid = board("""
        . . . . . . . .
        . . . . . . . .
        . X . X . X . .
        . . O O O . . .
        . X O . O X . .
        . . . O O . . .
        . . . O . . . .
        . . . . . . . .
    """)
    state = env.position(grid, current_player=0)
    d5 = env.text_to_action("d5")
    assert bool(state.legal_action_mask[d5])
    after = step(state, d5)
    got = env.discs(after)
    expected = grid.copy()
    expected[4, 3] = 0
    # West (c5), east (e5), north (d4), north-west (c4) and north-east (e4) end at a black
    # disc; south (d6, d7, then the empty d8) and south-east (e6, then the empty f7) do not.
    for name in ("c5", "e5", "d4", "c4", "e4"):
        a = env.text_to_action(name)
        expected[a // 8, a % 8] = 0
    np.testing.assert_array_equal(got, expected)
    assert sorted(map(tuple, np.argwhere(got != grid))) == sorted(
        [(4, 3)] + [divmod(env.text_to_action(n), 8) for n in ("c5", "e5", "d4", "c4", "e4")]
    )
    assert int(after.current_player) == 1 and not bool(after.terminated)


@pytest.mark.parametrize(
    "picture",
    [
        # h3, a4 and b4 are consecutive squares (23, 24, 25): black h3 would flank white a4
        # towards b4 only if a row ran on into the next.
        """
        . . . . . . . .
        . . . . . . . .
        . . . . . . . X
        O . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        """,
        # a2, h2 and g3 are squares 8, 15 and 22, seven apart like a south-west step.
        """
        . . . . . . . .
        X . . . . . . O
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        """,
        # h1, a3 and b4 are squares 7, 16 and 25, nine apart like a south-east step.
        """
        . . . . . . . X
        . . . . . . . .
        O . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        """,
    ],
    ids=["east", "south-west", "south-east"],
)
def test_lines_do_not_wrap_around_the_edge(picture):
    env = _game()[0]
    state = env.position(board(picture), current_player=0)
    assert squares(env, state) == ["pass"]


def test_forced_pass_and_the_game_goes_on():
    env = _game()[0]
    # Black's only disc b1 sits between white a1 and the empty c1: black cannot flank a1.
    grid = board("""
        O X . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
        . . . . . . . .
    """)
    state = env.position(grid, current_player=0)
    assert squares(env, state) == ["pass"]
    passed = step(state, PASS)
    assert not bool(passed.terminated) and np.all(np.asarray(passed.rewards) == 0)
    assert int(passed.current_player) == 1
    np.testing.assert_array_equal(env.discs(passed), grid)
    assert squares(env, passed) == ["c1"]
    # A move other than the pass is illegal while the pass is forced, and the other way round.
    lost = step(state, env.text_to_action("c1"))
    assert bool(lost.terminated) and list(np.asarray(lost.rewards)) == [-1.0, 1.0]
    lost = step(passed, PASS)
    assert bool(lost.terminated) and list(np.asarray(lost.rewards)) == [1.0, -1.0]
    # White plays c1, flipping b1: black has no discs left and the game ends, white winning.
    final = step(passed, env.text_to_action("c1"))
    assert bool(final.terminated)
    np.testing.assert_array_equal(np.asarray(final.rewards), [-1.0, 1.0])
    assert list(env.discs(final)[0, :3]) == [1, 1, 1]


@pytest.mark.parametrize(
    "to_move, black, white, rewards",
    [
        (0, ["a1", "b1"], ["h8"], [1.0, -1.0]),
        (1, ["a1", "b1"], ["h8"], [1.0, -1.0]),
        (0, ["a1"], ["h8", "h7"], [-1.0, 1.0]),
        (1, ["a1"], ["h8"], [0.0, 0.0]),
    ],
)
def test_game_ends_when_both_must_pass(to_move, black, white, rewards):
    env = _game()[0]
    grid = -np.ones((8, 8), np.int64)
    for owner, names in ((0, black), (1, white)):
        for name in names:
            a = env.text_to_action(name)
            grid[a // 8, a % 8] = owner
    state = env.position(grid, current_player=to_move)
    assert squares(env, state) == ["pass"]
    first = step(state, PASS)
    assert not bool(first.terminated) and int(first.current_player) == 1 - to_move
    assert squares(env, first) == ["pass"]
    second = step(first, PASS)
    assert bool(second.terminated)
    np.testing.assert_array_equal(np.asarray(second.rewards), rewards)


def test_game_ends_when_the_board_is_full():
    env = _game()[0]
    # White everywhere but black a1 and the empty h8; black's h8 flips the long diagonal.
    grid = np.ones((8, 8), np.int64)
    grid[0, 0] = 0
    grid[7, 7] = -1
    state = env.position(grid, current_player=0)
    assert squares(env, state) == ["h8"]
    final = step(state, env.text_to_action("h8"))
    assert bool(final.terminated)
    got = env.discs(final)
    assert (got == 0).sum() == 8 and all(got[k, k] == 0 for k in range(8))
    np.testing.assert_array_equal(np.asarray(final.rewards), [-1.0, 1.0])


def test_observation_is_from_the_movers_view():
    env, reset, _ = _game()
    state = reset(jax.random.key(0))
    obs = np.asarray(state.observation)
    assert obs.shape == (8, 8, 2) and obs.dtype == np.float32
    # Black to move: own discs e4 and d5, the opponent's d4 and e5.
    assert obs[3, 4, 0] == 1 and obs[4, 3, 0] == 1 and obs[..., 0].sum() == 2
    assert obs[3, 3, 1] == 1 and obs[4, 4, 1] == 1 and obs[..., 1].sum() == 2
    after = step(state, env.text_to_action("d3"))  # flips d4: black d3, d4, d5, e4; white e5
    obs = np.asarray(after.observation)  # white to move
    assert obs[..., 0].sum() == 1 and obs[4, 4, 0] == 1
    assert obs[..., 1].sum() == 4 and obs[2, 3, 1] == 1 and obs[3, 3, 1] == 1
    black_view = np.asarray(env.observe(after, jnp.int32(0)))
    np.testing.assert_array_equal(black_view, obs[..., ::-1])


def test_random_games_agree_with_reference():
    """Random legal play, compared move by move with a plain Python referee."""
    env, reset, _ = _game()
    rng = np.random.default_rng(7)
    state = reset(jax.random.key(0))
    grid = env.discs(state)
    player, passes, games = 0, 0, 0
    for _ in range(400):
        moves = reference_moves(grid, player)
        legal = list(np.flatnonzero(np.asarray(state.legal_action_mask)))
        assert legal == (moves or [PASS])
        action = int(rng.choice(legal))
        if action == PASS:
            passes += 1
        else:
            passes = 0
            r, c = divmod(action, 8)
            for y, x in reference_flips(grid, player, r, c):
                grid[y, x] = player
            grid[r, c] = player
        player = 1 - player
        state = step(state, action)
        np.testing.assert_array_equal(env.discs(state), grid)
        counts = [(grid == 0).sum(), (grid == 1).sum()]
        ended = passes == 2 or (grid >= 0).all() or min(counts) == 0
        assert bool(state.terminated) == ended
        if ended:
            expected = np.sign([counts[0] - counts[1], counts[1] - counts[0]])
            np.testing.assert_array_equal(np.asarray(state.rewards), expected)
            games += 1
            state = reset(jax.random.key(games))
            grid, player, passes = env.discs(state), 0, 0
    assert games >= 4


def test_move_text():
    env = _game()[0]
    assert env.action_to_text(19) == "d3" and env.action_to_text(0) == "a1"
    assert env.action_to_text(63) == "h8" and env.action_to_text(PASS) == "pass"
    for action in range(65):
        assert env.text_to_action(env.action_to_text(action)) == action
    assert env.text_to_action(" D3 ") == 19 and env.text_to_action("PASS") == PASS
    assert env.text_to_action("44") == 44
    for bad in ("i1", "a9", "a0", "65", "d", "", "pas"):
        with pytest.raises(ValueError):
            env.text_to_action(bad)


def test_position_rejects_bad_input():
    env = _game()[0]
    with pytest.raises(UserError):
        env.position(np.zeros((8, 7), np.int64))
    with pytest.raises(UserError):
        env.position(np.full((8, 8), 2))
    with pytest.raises(UserError):
        env.position(-np.ones((8, 8), np.int64), current_player=2)


def test_rendering():
    env, reset, _ = _game()
    state = reset(jax.random.key(0))
    lines = env.render_text(state).splitlines()
    assert lines[0].split() == list("abcdefgh")
    assert lines[3].split() == ["3", ".", ".", ".", "*", ".", ".", ".", "."]
    assert lines[4].split() == ["4", ".", ".", "*", "O", "X", ".", ".", "."]
    svg = ET.fromstring(env.render_svg(state))
    circles = [e for e in svg.iter() if e.tag.endswith("circle")]
    assert sorted(c.get("fill") for c in circles) == ["black", "black", "white", "white"]
