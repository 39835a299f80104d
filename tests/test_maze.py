"""Maze: movement and reward rules, the egocentric view, solvability, and the level space."""

import json
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.envs import maze as maze_lib
from superlearner.envs.maze import Maze, MazeLevel, MazeLevelSpace

LEFT, RIGHT, FORWARD = 0, 1, 2
EAST, SOUTH, WEST, NORTH = 0, 1, 2, 3


@pytest.fixture(scope="module")
def env():
    return Maze()


@pytest.fixture(scope="module")
def small_env():
    return Maze(height=5, width=5, max_episode_steps=20)


@pytest.fixture(scope="module")
def step_fn(small_env):
    return jax.jit(small_env.step)


# A 5x5 level: the start faces east along the top row, a wall two cells ahead, the goal below.
#   row 0: > . # . .
#   row 1: . . # . .
#   row 2: . . . . G
SMALL = """
    >.#..
    ..#..
    ....G
    .....
    .....
"""


def play(env, step_fn, level, actions):
    state = env.reset(jax.random.key(0), level)
    states = [state]
    for i, action in enumerate(actions):
        state = step_fn(state, jnp.int32(action), jax.random.key(i + 1))
        states.append(state)
    return states


def tree_index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def to_numpy(tree):
    return jax.device_get(tree)


def batched(fn, *args, **kwargs):
    """``jit(vmap(fn))``: one compiled call instead of many eager dispatches."""
    return jax.jit(jax.vmap(fn, *args, **kwargs))


# Compiled once for the whole module (a fresh jit(vmap(f)) would compile again).
SPACE = MazeLevelSpace()
SAMPLE = batched(SPACE.sample_level, in_axes=(0, None))  # (keys, max_walls)
MUTATE = batched(SPACE.mutate_level, in_axes=(0, 0, 0, None))  # (keys, levels, num_edits, weights)
VALID = batched(maze_lib.is_valid)
VALID_SOLVABLE = batched(lambda level: maze_lib.is_valid(level, require_solvable=True))
HASH = batched(maze_lib.level_hash)
SPL = batched(maze_lib.shortest_path_length)
DIST = batched(maze_lib.distance_map)


def sample(seed, num, max_walls=SPACE.max_walls):
    return SAMPLE(jax.random.split(jax.random.key(seed), num), jnp.int32(max_walls))


def mutate(seed, levels, num_edits, weights=SPACE.edit_weights):
    num = levels.walls.shape[0]
    num_edits = jnp.broadcast_to(jnp.asarray(num_edits, jnp.int32), (num,))
    keys = jax.random.split(jax.random.key(seed), num)
    return MUTATE(keys, levels, num_edits, jnp.asarray(weights, jnp.float32))


def tree_stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


# ------------------------------------------------------------------------------------------------
# Rules.


def test_registry_and_static_facts():
    env = sl.make("maze")
    assert isinstance(env, Maze)
    assert env.num_players == 1 and env.num_actions == 3
    assert env.observation_shape == (5, 5, 7) and env.max_episode_steps == 250
    assert isinstance(env.level_space, MazeLevelSpace)
    assert (env.level_space.height, env.level_space.width) == (13, 13)


@pytest.mark.parametrize(
    "options",
    [
        dict(view_size=4),
        dict(view_size=1),
        dict(height=2),
        dict(width=True),
        dict(max_episode_steps=0),
        dict(max_walls=500),
    ],
)
def test_bad_options_raise_user_error(options):
    with pytest.raises(sl.UserError):
        sl.make("maze", **options)


def test_turning(small_env, step_fn):
    level = small_env.level_from_text(SMALL)
    rights = play(small_env, step_fn, level, [RIGHT] * 4)
    assert [int(s.heading) for s in rights] == [EAST, SOUTH, WEST, NORTH, EAST]
    lefts = play(small_env, step_fn, level, [LEFT] * 4)
    assert [int(s.heading) for s in lefts] == [EAST, NORTH, WEST, SOUTH, EAST]
    for state in rights + lefts:  # turning never moves
        assert state.position.tolist() == [0, 0]
        assert float(state.rewards[0]) == 0.0 and not bool(state.terminated)


def test_walls_and_edges_block(small_env, step_fn):
    level = small_env.level_from_text(SMALL)
    # Forward to (0,1); the wall at (0,2) blocks the next forward.
    states = play(small_env, step_fn, level, [FORWARD, FORWARD, FORWARD])
    assert [s.position.tolist() for s in states] == [[0, 0], [0, 1], [0, 1], [0, 1]]
    # Facing north at the top edge, or west at the left edge: the grid's edge blocks too.
    states = play(small_env, step_fn, level, [LEFT, FORWARD, LEFT, FORWARD])
    assert [s.position.tolist() for s in states] == [[0, 0]] * 5
    assert all(bool(s.legal_action_mask.all()) for s in states)


def test_goal_terminates_with_minigrid_reward(small_env, step_fn):
    level = small_env.level_from_text(SMALL)
    # Turn south, two forwards to (2,0), turn east, four forwards to the goal at (2,4): 8 steps.
    actions = [RIGHT, FORWARD, FORWARD, LEFT, FORWARD, FORWARD, FORWARD, FORWARD]
    states = play(small_env, step_fn, level, actions)
    assert states[-1].position.tolist() == [2, 4]
    assert bool(states[-1].terminated) and not bool(states[-1].truncated)
    assert not any(bool(s.terminated) for s in states[:-1])
    expected = 1.0 - 0.9 * len(actions) / small_env.max_episode_steps
    assert float(states[-1].rewards[0]) == pytest.approx(expected)
    assert all(float(s.rewards[0]) == 0.0 for s in states[:-1])
    after = step_fn(states[-1], jnp.int32(FORWARD), jax.random.key(99))  # absorbing
    assert float(after.rewards[0]) == 0.0 and after.position.tolist() == [2, 4]


def test_truncation_at_max_steps(small_env, step_fn):
    level = small_env.level_from_text(SMALL)
    states = play(small_env, step_fn, level, [LEFT] * small_env.max_episode_steps)
    assert not any(bool(s.truncated) for s in states[:-1])
    assert bool(states[-1].truncated) and not bool(states[-1].terminated)
    assert int(states[-1].step_count) == small_env.max_episode_steps


def test_reaching_goal_on_the_last_step_terminates():
    env = Maze(height=5, width=5, max_episode_steps=2)
    level = env.level_from_text(SMALL).replace(goal=jnp.array([0, 1], jnp.int32), start_heading=jnp.int32(SOUTH))
    states = play(env, jax.jit(env.step), level, [LEFT, FORWARD])
    assert bool(states[-1].terminated) and not bool(states[-1].truncated)
    assert float(states[-1].rewards[0]) == pytest.approx(1.0 - 0.9 * 2 / 2)


# ------------------------------------------------------------------------------------------------
# The egocentric view.


def view_level(env, heading):
    """Agent at (6,6) of an empty 13x13 grid; a wall two cells north, the goal two cells east."""
    walls = jnp.zeros((13, 13), jnp.bool_).at[4, 6].set(True)
    return MazeLevel(walls=walls, start=jnp.array([6, 6], jnp.int32), goal=jnp.array([6, 8], jnp.int32),
                     start_heading=jnp.int32(heading))


@pytest.mark.parametrize(
    "heading, wall_at, goal_at",
    [
        (NORTH, (2, 2), (4, 4)),  # wall straight ahead two rows up; goal two to the right
        (EAST, (4, 0), (2, 2)),  # wall two to the left; goal ahead
        (SOUTH, None, (4, 0)),  # wall behind (unseen); goal two to the left
        (WEST, (4, 4), None),  # wall two to the right; goal behind (unseen)
    ],
)
def test_view_for_each_heading(env, heading, wall_at, goal_at):
    obs = np.asarray(env.reset(jax.random.key(0), view_level(env, heading)).observation)
    assert obs.shape == (5, 5, 7) and obs.dtype == np.float32
    expected_walls = np.zeros((5, 5))
    if wall_at is not None:
        expected_walls[wall_at] = 1
    expected_goal = np.zeros((5, 5))
    if goal_at is not None:
        expected_goal[goal_at] = 1
    np.testing.assert_array_equal(obs[..., 0], expected_walls)
    np.testing.assert_array_equal(obs[..., 1], expected_goal)
    np.testing.assert_array_equal(obs[..., 2], 0)  # all inside the grid
    np.testing.assert_array_equal(obs[..., 3:], np.broadcast_to(np.eye(4)[heading], (5, 5, 4)))


def test_view_outside_the_grid_is_wall(env):
    # In the top-left corner facing north: the two columns on the left and all rows ahead are out.
    level = view_level(env, NORTH).replace(start=jnp.array([0, 0], jnp.int32))
    obs = np.asarray(env.reset(jax.random.key(0), level).observation)
    outside = np.ones((5, 5))
    outside[4, 2:] = 0  # the agent's own row, columns 0..2 of the grid
    np.testing.assert_array_equal(obs[..., 2], outside)
    np.testing.assert_array_equal(obs[..., 0], outside)  # no grid walls in view, only the edge


def reference_view(walls, goal, position, heading, view_size):
    """MiniGrid's way: rotate the padded world so the heading points up, then cut the square."""
    pad = view_size
    height, width = walls.shape
    grid = np.full((height + 2 * pad, width + 2 * pad, 3), 0.0)
    grid[..., 0] = 1.0
    grid[..., 2] = 1.0
    grid[pad:-pad, pad:-pad, 0] = walls
    grid[pad:-pad, pad:-pad, 2] = 0.0
    grid[goal[0] + pad, goal[1] + pad, 1] = 1.0
    marker = np.zeros(grid.shape[:2])
    marker[position[0] + pad, position[1] + pad] = 1
    turns = (heading + 1) % 4  # counter-clockwise quarter turns that bring the heading to north
    grid, marker = np.rot90(grid, turns, axes=(0, 1)), np.rot90(marker, turns)
    r, c = np.argwhere(marker)[0]
    return grid[r - view_size + 1 : r + 1, c - view_size // 2 : c + view_size // 2 + 1]


def test_view_matches_rotated_window_on_random_states():
    env = Maze(height=9, width=7, view_size=7)
    keys = jax.random.split(jax.random.key(3), 48)
    states = to_numpy(batched(lambda k: env.reset(k, env.level_space.sample_level(k, 30)))(keys))
    for i in range(len(keys)):
        state = tree_index(states, i)
        expected = reference_view(state.walls, state.goal, state.position, int(state.heading), 7)
        np.testing.assert_array_equal(state.observation[..., :3], expected)


# ------------------------------------------------------------------------------------------------
# Solvability.

DETOUR = """
    >.#..
    ..#..
    ..#.G
    .....
"""
WALLED_OFF = """
    >....
    ...##
    ...#G
"""


def test_solvable_and_shortest_path_lengths():
    spl = jax.jit(maze_lib.shortest_path_length)
    solvable = jax.jit(maze_lib.is_solvable)
    detour = maze_lib.level_from_text(DETOUR)
    assert int(spl(detour)) == 8 and bool(solvable(detour))  # down 3, right 4, up 1
    walled = maze_lib.level_from_text(WALLED_OFF)
    assert int(spl(walled)) == -1 and not bool(solvable(walled))
    assert bool(solvable(walled.replace(walls=walled.walls.at[1, 4].set(False))))
    empty = MazeLevelSpace().empty_level()
    assert int(spl(empty)) == 24 and int(maze_lib.shortest_path_length(empty)) == 24  # jit and eager
    dist = np.asarray(maze_lib.distance_map(detour))
    assert dist[2, 4] == 0 and dist[0, 2] == -1 and dist[3, 0] == 5


def test_distance_map_is_consistent_under_vmap(env):
    levels = sample(5, 64)
    dist = np.asarray(DIST(levels))
    spl = np.asarray(SPL(levels))
    walls, starts = np.asarray(levels.walls), np.asarray(levels.start)
    for i in range(64):
        d = dist[i]
        start = tuple(starts[i])
        assert spl[i] == d[start]
        # Bellman: every reached cell but the goal has a neighbour one step closer.
        for r, c in np.argwhere(d > 0):
            near = [d[r + dr, c + dc] for dr, dc in maze_lib.HEADING_VECTORS
                    if 0 <= r + dr < 13 and 0 <= c + dc < 13]
            assert d[r, c] - 1 in near
        assert np.all(d[walls[i]] == -1)


def greedy_action(state):
    """Follows the distance map: forward when the cell ahead is closer, else turn towards one."""
    level = MazeLevel(walls=state.walls, start=state.position, goal=state.goal, start_heading=state.heading)
    dist = maze_lib.distance_map(level)
    here = dist[state.position[0], state.position[1]]
    vectors = jnp.asarray(maze_lib.HEADING_VECTORS)
    cells = state.position + vectors
    inside = jnp.all((cells >= 0) & (cells < jnp.array(state.walls.shape)), axis=-1)
    closer = inside & (dist[jnp.clip(cells[:, 0], 0, 12), jnp.clip(cells[:, 1], 0, 12)] == here - 1)
    best = jnp.argmax(closer)
    return jnp.where(best == state.heading, FORWARD, jnp.where(best == (state.heading + 3) % 4, LEFT, RIGHT))


def test_named_levels_valid_solvable_and_solved_by_shortest_paths(env):
    named = env.named_levels()
    assert 8 <= len(named) <= 12
    levels = tree_stack(list(named.values()))
    assert bool(VALID_SOLVABLE(levels).all())
    hashes = np.asarray(HASH(levels))
    assert len(set(hashes.tolist())) == len(named)
    spl = np.asarray(SPL(levels))

    def run(level):
        def body(state, _):
            action = greedy_action(state)
            next_state = env.step(state, action, jax.random.key(0))
            return next_state, (action == FORWARD) & ~(state.terminated | state.truncated)

        final, forwards = jax.lax.scan(body, env.reset(jax.random.key(0), level), None, env.max_episode_steps)
        return final, forwards.sum()

    finals, forwards = jax.jit(jax.vmap(run))(levels)
    assert bool(finals.terminated.all())
    np.testing.assert_array_equal(np.asarray(forwards), spl)  # every forward move is on a shortest path


def test_named_levels_need_room(env):
    with pytest.raises(sl.UserError, match="height>=13"):
        Maze(height=9, width=9).named_levels()
    bigger = Maze(height=15, width=14).named_levels()["Spiral"]
    assert bigger.walls.shape == (15, 14) and bool(bigger.walls[0].all()) and bool(bigger.walls[-1].all())
    assert bool(maze_lib.is_solvable(bigger))


# ------------------------------------------------------------------------------------------------
# The level space.


def test_sampled_levels_are_valid():
    levels = sample(7, 512)
    assert bool(VALID(levels).all())
    num_walls = np.asarray(levels.walls.sum((1, 2)))
    assert num_walls.max() <= SPACE.max_walls == 25 and num_walls.min() < 5 and num_walls.max() > 20
    assert set(np.asarray(levels.start_heading).tolist()) == {0, 1, 2, 3}
    hashes = np.asarray(HASH(levels))
    assert len(set(hashes.tolist())) == 512
    # The wall bound is traced: the same compiled function serves every bound.
    assert int(sample(7, 512, max_walls=0).walls.sum()) == 0
    dense = sample(7, 512, max_walls=150)
    assert int(dense.walls.sum((1, 2)).max()) > 100 and bool(VALID(dense).all())
    # jit and eager agree.
    eager = SPACE.sample_level(jax.random.split(jax.random.key(7), 512)[3])
    np.testing.assert_array_equal(np.asarray(eager.walls), np.asarray(levels.walls[3]))
    assert eager.start.tolist() == levels.start[3].tolist() and eager.goal.tolist() == levels.goal[3].tolist()


def test_sample_solvable_level(env):
    keys = jax.random.split(jax.random.key(8), 128)
    levels = batched(lambda k: env.level_space.sample_solvable_level(k, 120))(keys)
    assert bool(VALID_SOLVABLE(levels).all())
    assert int(levels.walls.sum()) > 0


@pytest.mark.parametrize("kind", [maze_lib.EDIT_FLIP_WALL, maze_lib.EDIT_MOVE_GOAL, maze_lib.EDIT_MOVE_START])
def test_mutate_edits_every_level_of_a_batch(kind):
    weights = tuple(1.0 if k == kind else 0.0 for k in range(3))
    levels = sample(11, 64)
    mutated = mutate(12, levels, 1, weights)
    changed_walls = np.asarray((mutated.walls != levels.walls).sum((1, 2)))
    goal_moved = np.asarray((mutated.goal != levels.goal).any(-1))
    start_moved = np.asarray((mutated.start != levels.start).any(-1))
    if kind == maze_lib.EDIT_FLIP_WALL:
        assert (changed_walls == 1).all() and not goal_moved.any() and not start_moved.any()
    elif kind == maze_lib.EDIT_MOVE_GOAL:
        assert goal_moved.all() and (changed_walls == 0).all() and not start_moved.any()
    else:
        assert start_moved.all() and (changed_walls == 0).all() and not goal_moved.any()
    assert bool(VALID(mutated).all())
    assert (np.asarray(HASH(levels)) != np.asarray(HASH(mutated))).all()


def test_mutate_many_edits_per_level_stay_valid(env):
    levels = tree_stack([env.default_params] * 64)
    num_edits = jnp.arange(64, dtype=jnp.int32)  # a different number of edits per level
    flipped = mutate(2, levels, num_edits, (1.0, 0.0, 0.0))
    flips = np.asarray(flipped.walls.sum((1, 2)))
    # Flips of distinct cells add walls; a repeated cell cancels in pairs, so parity is exact.
    assert flips[0] == 0 and (flips <= np.arange(64)).all() and (flips % 2 == np.arange(64) % 2).all()
    assert (flips[1:] > 0).all()
    mixed = mutate(4, levels, 40)
    assert bool(VALID(mixed).all()) and bool(VALID(flipped).all())
    # With weights (0.8, 0.1, 0.1), 40 edits move the goal and the start of almost every level.
    assert (np.asarray(mixed.goal) != np.asarray(levels.goal)).any(-1).mean() > 0.8
    assert (np.asarray(mixed.start) != np.asarray(levels.start)).any(-1).mean() > 0.8


def test_level_space_keys_are_used_once(env):
    with jax.debug_key_reuse(True):
        sample_key, mutate_key, solvable_key = jax.random.split(jax.random.key(0), 3)
        level = jax.jit(env.sample_level)(sample_key)
        jax.jit(env.mutate_level)(mutate_key, level, 3)
        jax.jit(env.level_space.sample_solvable_level)(solvable_key)


def test_hash_equal_for_equal_levels_and_changes_with_every_cell(env):
    level = env.named_levels()["FourRooms"]
    same = env.level_from_text(env.level_to_text(level))
    hash_fn = jax.jit(maze_lib.level_hash)
    base = int(hash_fn(level))
    assert int(hash_fn(same)) == base and int(maze_lib.level_hash(level)) == base
    assert hash_fn(level).dtype == jnp.uint32
    cells = [(r, c) for r in range(13) for c in range(13)]
    flipped = tree_stack([level.replace(walls=level.walls.at[r, c].set(~level.walls[r, c])) for r, c in cells])
    hashes = np.asarray(HASH(flipped)).tolist()
    assert base not in hashes and len(set(hashes)) == len(cells)
    others = [
        level.replace(start_heading=(level.start_heading + 1) % 4),
        level.replace(start=level.start + jnp.array([0, 1])),
        level.replace(goal=level.goal - jnp.array([1, 0])),
        level.replace(start=level.goal, goal=level.start),
    ]
    assert len({base} | {int(hash_fn(o)) for o in others}) == 5


def test_text_and_json_round_trip(env):
    levels = to_numpy(sample(13, 16))
    for i in range(16):
        level = tree_index(levels, i)
        text = env.level_to_text(level)
        assert len(text.split("\n")) == 13 and all(len(row) == 13 for row in text.split("\n"))
        for back in (env.level_from_text(text), env.level_space.level_from_json(env.level_space.level_to_json(level))):
            for a, b in zip(jax.tree.leaves(level), jax.tree.leaves(back)):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    data = json.loads(env.level_space.level_to_json(tree_index(levels, 0)))
    assert data["height"] == 13 and data["width"] == 13 and len(data["rows"]) == 13


def test_text_form_details():
    level = maze_lib.level_from_text(DETOUR)
    assert level.walls.shape == (4, 5)
    assert level.start.tolist() == [0, 0] and level.goal.tolist() == [2, 4] and int(level.start_heading) == EAST
    assert maze_lib.level_to_text(level) == "\n".join(row.strip() for row in DETOUR.strip().splitlines())
    padded = MazeLevelSpace(height=7, width=7).level_from_text(DETOUR)
    assert padded.start.tolist() == [1, 1] and padded.goal.tolist() == [3, 5]
    assert bool(padded.walls[0].all()) and bool(padded.walls[:, 0].all()) and bool(padded.walls[:, 6].all())
    assert int(maze_lib.shortest_path_length(padded)) == 8
    for arrow, heading in zip(">v<^", range(4)):
        assert int(maze_lib.level_from_text(f"{arrow}G").start_heading) == heading


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        (">.G\n..", "same length"),
        (">.x\n..G", "unknown character"),
        (">..\n...", "exactly one goal"),
        (">.G\n..G", "exactly one goal"),
        ("..G\n...", "exactly one start"),
        (">^G\n...", "exactly one start"),
        ("." * 14 + "\n>G" + "." * 12, "does not fit"),
    ],
)
def test_bad_text_raises_user_error(text, message):
    with pytest.raises(sl.UserError, match=message):
        MazeLevelSpace().level_from_text(text)


def test_bad_json_raises_user_error():
    space = MazeLevelSpace()
    with pytest.raises(sl.UserError, match="does not parse"):
        space.level_from_json("{rows")
    with pytest.raises(sl.UserError, match="rows"):
        space.level_from_json('{"rows": 3}')


def test_wrong_shape_params_raise_user_error(env):
    level = env.default_params
    with pytest.raises(sl.UserError, match="walls"):
        env.reset(jax.random.key(0), level.replace(walls=jnp.zeros((12, 13), jnp.bool_)))
    with pytest.raises(sl.UserError, match="start"):
        env.reset(jax.random.key(0), level.replace(start=jnp.zeros((3,), jnp.int32)))
    with pytest.raises(sl.UserError, match="walls"):
        env.level_space.mutate_level(jax.random.key(0), level.replace(walls=jnp.zeros((13, 12), jnp.bool_)), 1)
    with pytest.raises(sl.UserError, match="vmap"):
        env.level_hash(tree_stack([level, level]))
    with pytest.raises(sl.UserError, match="one level"):
        env.level_to_text(tree_stack([level, level]))


def test_is_valid_rejects_bad_levels(env):
    level = env.default_params
    valid = jax.jit(maze_lib.is_valid)
    assert bool(valid(level))
    assert not bool(valid(level.replace(goal=level.start)))
    assert not bool(valid(level.replace(walls=level.walls.at[tuple(level.goal)].set(True))))
    assert not bool(valid(level.replace(walls=level.walls.at[tuple(level.start)].set(True))))
    assert not bool(valid(level.replace(start=jnp.array([13, 0], jnp.int32))))
    assert not bool(valid(level.replace(goal=jnp.array([0, -1], jnp.int32))))
    assert not bool(valid(level.replace(start_heading=jnp.int32(4))))
    walled = level.replace(walls=level.walls.at[0, 11].set(True).at[1, 12].set(True))
    assert bool(valid(walled)) and not bool(maze_lib.is_valid(walled, require_solvable=True))


# ------------------------------------------------------------------------------------------------
# Batching, rendering, actions.


def test_vmapped_reset_and_step_over_different_levels(env):
    named = env.named_levels()
    names = ["SmallCorridor", "Spiral", "ZigZag", "TwoRooms"]
    levels = tree_stack([named[n] for n in names])
    keys = jax.random.split(jax.random.key(0), len(names))
    states = jax.jit(jax.vmap(env.reset))(keys, levels)
    np.testing.assert_array_equal(np.asarray(states.position), np.asarray(levels.start))
    actions = jnp.full((len(names),), FORWARD, jnp.int32)
    stepped = jax.jit(jax.vmap(env.step))(states, actions, keys, levels)
    for i, name in enumerate(names):
        one = env.step(env.reset(keys[i], named[name]), jnp.int32(FORWARD), keys[i], named[name])
        for a, b in zip(jax.tree.leaves(tree_index(stepped, i)), jax.tree.leaves(one)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # SmallCorridor starts facing east down an open corridor, Spiral facing north up one, ZigZag
    # faces south into a wall and TwoRooms faces east along its top row.
    moved = np.asarray((stepped.position != states.position).any(-1))
    assert moved.tolist() == [True, True, False, True]


def test_auto_reset_goes_to_the_chosen_level(env):
    corridor = env.named_levels()["SmallCorridor"]
    spiral = env.named_levels()["Spiral"]
    state = env.reset(jax.random.key(0), corridor)
    step = jax.jit(lambda s, k: sl.step_auto_reset(env, s, jnp.int32(FORWARD), k, corridor, spiral))
    for i in range(10):
        state, final = step(state, jax.random.key(i))
    assert bool(final.terminated) and float(final.rewards[0]) > 0.9
    assert state.position.tolist() == spiral.start.tolist() and int(state.step_count) == 0


def test_render_text_and_svg(env):
    level = env.named_levels()["Detour"]
    state = env.reset(jax.random.key(0), level)
    assert env.render_text(state) == env.level_to_text(level)
    state = jax.jit(env.step)(state, jnp.int32(RIGHT), jax.random.key(1))
    text = env.render_text(state)
    assert text.split("\n")[11][6] == ">" and text.count("G") == 1
    for svg in (env.render_svg(state), env.level_space.level_to_svg(level)):
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg") and root.get("width") == str(13 * 24)
        assert len(root.findall("{http://www.w3.org/2000/svg}polygon")) == 1


def test_action_text(env):
    assert [env.action_to_text(a) for a in range(3)] == ["left", "right", "forward"]
    assert [env.text_to_action(t) for t in ("left", "R", " f ", "2")] == [0, 1, 2, 2]
    with pytest.raises(ValueError):
        env.text_to_action("jump")
