"""A single-agent grid maze with a partial egocentric view, and its level space for curricula.

The agent walks a ``height x width`` grid of free cells and walls towards a goal cell. Cells
outside the grid count as walls. The level (``params``, a `MazeLevel`) is everything a
curriculum samples or mutates: the walls, the start cell, the start heading and the goal cell.
The static options only fix shapes, so a batch of different levels runs in one compiled program.

Headings: 0 = east, 1 = south, 2 = west, 3 = north (MiniGrid's order; turning right adds one).
Positions are ``(row, col)`` with row 0 at the top.

Actions (all always legal):

* 0 = turn left, 1 = turn right, 2 = move forward (blocked by walls and the grid's edge).

Reward: reaching the goal ends the episode with ``1 - 0.9 * t / max_episode_steps``, where ``t``
is the number of steps taken including the last one (MiniGrid's shape); every other step gives 0.
The episode is truncated after ``max_episode_steps`` steps.

Observation: float32[view_size, view_size, 7], the ``view_size x view_size`` square in front of
the agent, rotated with its heading as MiniGrid does: the agent stands at the bottom row, middle
column, looking up the view; view row 0 is the farthest row, view column 0 is on its left. The
agent sees through walls. Channels:

* 0: wall (grid walls and every cell outside the grid),
* 1: goal,
* 2: outside the grid,
* 3..6: the agent's absolute heading one-hot (east, south, west, north), the same in every cell.

Level text form, one row per line: ``#`` wall, ``.`` free, ``G`` goal, and the start cell written
as its heading arrow ``>`` (east), ``v`` (south), ``<`` (west) or ``^`` (north). The JSON form
wraps the text rows. A smaller text is centred in the grid and padded with walls.

Level space (`MazeLevelSpace`, also ``env.level_space``; all array functions jittable and
vmappable): `sample_level`, `sample_solvable_level`, `mutate_level`, `is_valid`, `is_solvable`,
`shortest_path_length`, `distance_map`, `level_hash`, the text/JSON/SVG forms, and
`named_levels`, eleven hand-designed 13x13 held-out mazes (`NAMED_LEVEL_TEXT`).

References: MiniGrid (Chevalier-Boisvert et al., 2023) for the dynamics and the view; the maze of
JaxUED (Coward et al., 2024) and minimax (Jiang et al., 2023) for the level space; ACCEL
(Parker-Holder et al., 2022) for the edits of `MazeLevelSpace.mutate_level`.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.core.env import Env, State, check_option
from superlearner.core.hashing import fmix32 as _fmix32
from superlearner.errors import UserError

Array = jax.Array
PRNGKey = jax.Array

ENV_ID = "maze"
NUM_HEADINGS = 4
NUM_CHANNELS = 7
TURN_LEFT, TURN_RIGHT, FORWARD = 0, 1, 2
ACTION_NAMES = ("left", "right", "forward")
HEADING_ARROWS = (">", "v", "<", "^")
WALL_CHAR, FREE_CHAR, GOAL_CHAR = "#", ".", "G"

# (row, col) step of each heading: east, south, west, north.
HEADING_VECTORS = np.array([[0, 1], [1, 0], [0, -1], [-1, 0]], dtype=np.int32)

# Edit kinds of `MazeLevelSpace.mutate_level`.
EDIT_FLIP_WALL, EDIT_MOVE_GOAL, EDIT_MOVE_START = 0, 1, 2


@struct.dataclass
class MazeLevel:
    """One maze level: the env's ``params``.

    Attributes:
      walls: bool[height, width], true where a cell is a wall.
      start: int32[2], the agent's start cell (row, col).
      goal: int32[2], the goal cell (row, col).
      start_heading: int32[], the agent's start heading (0 east, 1 south, 2 west, 3 north).
    """

    walls: Array
    start: Array
    goal: Array
    start_heading: Array


@struct.dataclass
class MazeState(State):
    """The maze state; the level's walls and goal travel with it so ``observe`` needs no params.

    Attributes:
      position: int32[2], the agent's cell (row, col).
      heading: int32[], the agent's heading (0 east, 1 south, 2 west, 3 north).
      walls: bool[height, width], the level's walls.
      goal: int32[2], the level's goal cell.
    """

    position: Array
    heading: Array
    walls: Array
    goal: Array


# ------------------------------------------------------------------------------------------------
# Pure functions over one level (batch with vmap).


def _cell_mask(cell: Array, height: int, width: int) -> Array:
    """bool[height, width], true at ``cell`` only."""
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    return (rows == cell[0]) & (cols == cell[1])


def distance_map(level: MazeLevel) -> Array:
    """int32[height, width]: moves from each cell to the goal; -1 where the goal is unreachable.

    Moves are the four grid steps between free cells (turns are not counted). Walls get -1. The
    distances are relaxed from the goal until nothing changes (a breadth-first search written as
    a flood fill, at most one sweep per cell of the longest shortest path).
    """
    height, width = level.walls.shape
    unreached = height * width
    passable = ~level.walls | _cell_mask(level.goal, height, width)
    dist0 = jnp.where(_cell_mask(level.goal, height, width), 0, unreached).astype(jnp.int32)

    def sweep(carry):
        dist, _ = carry
        padded = jnp.pad(dist, 1, constant_values=unreached)
        neighbours = jnp.minimum(
            jnp.minimum(padded[:-2, 1:-1], padded[2:, 1:-1]),
            jnp.minimum(padded[1:-1, :-2], padded[1:-1, 2:]),
        )
        relaxed = jnp.where(passable, jnp.minimum(dist, neighbours + 1), unreached)
        return relaxed, jnp.any(relaxed != dist)

    dist, _ = jax.lax.while_loop(lambda carry: carry[1], sweep, (dist0, jnp.bool_(True)))
    return jnp.where(dist >= unreached, -1, dist).astype(jnp.int32)


def shortest_path_length(level: MazeLevel) -> Array:
    """int32[]: the fewest forward moves from start to goal (turns not counted); -1 if unsolvable.

    A difficulty measure for curricula. Assumes the start is inside the grid (see `is_valid`).
    """
    return distance_map(level)[level.start[0], level.start[1]]


def is_solvable(level: MazeLevel) -> Array:
    """bool[]: whether the goal can be reached from the start."""
    return shortest_path_length(level) >= 0


def _in_bounds(cell: Array, height: int, width: int) -> Array:
    return (cell[0] >= 0) & (cell[0] < height) & (cell[1] >= 0) & (cell[1] < width)


def is_valid(level: MazeLevel, require_solvable: bool = False) -> Array:
    """bool[]: start and goal inside the grid, on free cells and distinct; heading in 0..3.

    With ``require_solvable`` (static) the goal must also be reachable from the start.
    """
    height, width = level.walls.shape
    start_in = _in_bounds(level.start, height, width)
    goal_in = _in_bounds(level.goal, height, width)
    start_free = ~level.walls[
        jnp.clip(level.start[0], 0, height - 1), jnp.clip(level.start[1], 0, width - 1)
    ]
    goal_free = ~level.walls[
        jnp.clip(level.goal[0], 0, height - 1), jnp.clip(level.goal[1], 0, width - 1)
    ]
    distinct = jnp.any(level.start != level.goal)
    heading_ok = (level.start_heading >= 0) & (level.start_heading < NUM_HEADINGS)
    valid = start_in & goal_in & start_free & goal_free & distinct & heading_ok
    if require_solvable:
        valid = valid & is_solvable(level)
    return valid


def _rotl32(x: Array, r: int) -> Array:
    return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))




def level_hash(level: MazeLevel) -> Array:
    """uint32[]: a hash of the level's bits (walls, start, goal, heading) for de-duplication.

    MurmurHash3 (32-bit) over the walls packed 32 cells to a word, then one word holding start
    and goal and one holding the heading and the grid shape. Equal levels hash equally; levels
    that differ in any bit almost surely do not (collisions are about 1 in 2**32).
    """
    height, width = level.walls.shape
    bits = level.walls.reshape(-1).astype(jnp.uint32)
    num_words = -(-bits.size // 32)
    bits = jnp.pad(bits, (0, num_words * 32 - bits.size)).reshape(num_words, 32)
    wall_words = jnp.sum(bits << jnp.arange(32, dtype=jnp.uint32), axis=1, dtype=jnp.uint32)
    start = level.start.astype(jnp.uint32) & jnp.uint32(0xFF)
    goal = level.goal.astype(jnp.uint32) & jnp.uint32(0xFF)
    cells_word = start[0] | (start[1] << 8) | (goal[0] << 16) | (goal[1] << 24)
    heading_word = (level.start_heading.astype(jnp.uint32) & jnp.uint32(0xFF)) | jnp.uint32(
        (height << 8) | (width << 20)
    )
    words = jnp.concatenate([wall_words, jnp.stack([cells_word, heading_word])])

    def absorb(h, word):
        k = word * jnp.uint32(0xCC9E2D51)
        k = _rotl32(k, 15) * jnp.uint32(0x1B873593)
        h = _rotl32(h ^ k, 13) * jnp.uint32(5) + jnp.uint32(0xE6546B64)
        return h, None

    h, _ = jax.lax.scan(absorb, jnp.uint32(0x9747B28C), words)
    return _fmix32(h ^ jnp.uint32(words.size * 4))


def _random_cell(key: PRNGKey, allowed: Array) -> tuple[Array, Array]:
    """A uniformly random cell where ``allowed`` (bool[h, w]) holds, and whether one exists."""
    height, width = allowed.shape
    logits = jnp.where(allowed.reshape(-1), 0.0, -jnp.inf)
    index = jax.random.categorical(key, logits)
    cell = jnp.stack([index // width, index % width]).astype(jnp.int32)
    return cell, jnp.any(allowed)


def _apply_edit(key: PRNGKey, level: MazeLevel, edit_logits: Array) -> MazeLevel:
    """One ACCEL edit: flip a wall, move the goal or move the start (kind drawn from logits)."""
    kind_key, flip_key, goal_key, start_key, heading_key = jax.random.split(key, 5)
    height, width = level.walls.shape
    at_start = _cell_mask(level.start, height, width)
    at_goal = _cell_mask(level.goal, height, width)
    free = ~level.walls

    # Flip any cell but the start and the goal, so neither ever holds a wall.
    flip_cell, can_flip = _random_cell(flip_key, ~(at_start | at_goal))
    flipped = level.walls ^ (_cell_mask(flip_cell, height, width) & can_flip)
    # Moves always go to a different free cell, so every edit changes the level when it can.
    goal_cell, can_move_goal = _random_cell(goal_key, free & ~at_start & ~at_goal)
    start_cell, can_move_start = _random_cell(start_key, free & ~at_start & ~at_goal)
    heading = jax.random.randint(heading_key, (), 0, NUM_HEADINGS, dtype=jnp.int32)

    kind = jax.random.categorical(kind_key, edit_logits)
    return MazeLevel(
        walls=jnp.where(kind == EDIT_FLIP_WALL, flipped, level.walls),
        goal=jnp.where((kind == EDIT_MOVE_GOAL) & can_move_goal, goal_cell, level.goal),
        start=jnp.where((kind == EDIT_MOVE_START) & can_move_start, start_cell, level.start),
        start_heading=jnp.where(
            (kind == EDIT_MOVE_START) & can_move_start, heading, level.start_heading
        ),
    )


# ------------------------------------------------------------------------------------------------
# Text, JSON and SVG forms (host side).


def level_to_text(level: MazeLevel) -> str:
    """The text form of one unbatched level (see the module docstring)."""
    walls = np.asarray(level.walls)
    if walls.ndim != 2:
        raise UserError(
            f"{ENV_ID}: level_to_text takes one level, got walls of shape {walls.shape}; "
            "index the batch first (jax.tree.map(lambda x: x[i], levels))"
        )
    return _grid_text(walls, np.asarray(level.goal), np.asarray(level.start), int(level.start_heading))


def _grid_text(walls: np.ndarray, goal: np.ndarray, agent: np.ndarray, heading: int) -> str:
    height, width = walls.shape
    chars = np.where(walls, WALL_CHAR, FREE_CHAR).astype("<U1")
    if 0 <= goal[0] < height and 0 <= goal[1] < width:
        chars[goal[0], goal[1]] = GOAL_CHAR
    if 0 <= agent[0] < height and 0 <= agent[1] < width:
        chars[agent[0], agent[1]] = HEADING_ARROWS[heading % NUM_HEADINGS]
    return "\n".join("".join(row) for row in chars)


def level_from_text(text: str, height: int | None = None, width: int | None = None) -> MazeLevel:
    """Parses the text form; a smaller map is centred in ``height x width`` and padded with walls.

    Blank lines and the whitespace around each line are ignored, so an indented triple-quoted
    string works. Without ``height``/``width`` the level has the text's own size. Raises
    UserError for unknown characters, ragged rows, a missing or repeated start or goal, or a map
    larger than the grid.
    """
    rows = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not rows:
        raise UserError(f"{ENV_ID}: the level text is empty; expected rows of '#', '.', 'G', '>v<^'")
    text_width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != text_width:
            raise UserError(
                f"{ENV_ID}: level text row {i} has {len(row)} cells, row 0 has {text_width}; "
                "all rows must have the same length"
            )
        bad = sorted(set(row) - set(WALL_CHAR + FREE_CHAR + GOAL_CHAR + "".join(HEADING_ARROWS)))
        if bad:
            raise UserError(
                f"{ENV_ID}: level text row {i} has unknown character(s) {''.join(bad)!r}; "
                "accepted: '#' wall, '.' free, 'G' goal, '>' 'v' '<' '^' start with heading"
            )
    text_height = len(rows)
    height = text_height if height is None else height
    width = text_width if width is None else width
    if text_height > height or text_width > width:
        raise UserError(
            f"{ENV_ID}: a {text_height}x{text_width} level text does not fit the "
            f"{height}x{width} grid; make the env with height>={text_height} and width>={text_width}"
        )
    grid = np.array([list(row) for row in rows])
    goals = np.argwhere(grid == GOAL_CHAR)
    starts = np.argwhere(np.isin(grid, HEADING_ARROWS))
    if len(goals) != 1:
        raise UserError(f"{ENV_ID}: the level text must have exactly one goal 'G', found {len(goals)}")
    if len(starts) != 1:
        raise UserError(
            f"{ENV_ID}: the level text must have exactly one start arrow ('>', 'v', '<' or '^'), "
            f"found {len(starts)}"
        )
    top, left = (height - text_height) // 2, (width - text_width) // 2
    walls = np.ones((height, width), dtype=bool)
    walls[top : top + text_height, left : left + text_width] = grid == WALL_CHAR
    offset = np.array([top, left])
    start = starts[0]
    return MazeLevel(
        walls=jnp.asarray(walls),
        start=jnp.asarray(start + offset, jnp.int32),
        goal=jnp.asarray(goals[0] + offset, jnp.int32),
        start_heading=jnp.int32(HEADING_ARROWS.index(grid[start[0], start[1]])),
    )


def level_to_json(level: MazeLevel) -> str:
    """The JSON form of one level: its text rows plus the grid size."""
    walls = np.asarray(level.walls)
    text = level_to_text(level)
    height, width = walls.shape
    return json.dumps({"env": ENV_ID, "height": height, "width": width, "rows": text.split("\n")})


def level_from_json(data: str, height: int | None = None, width: int | None = None) -> MazeLevel:
    """Parses `level_to_json`'s form (or a bare list of rows); sizes as in `level_from_text`."""
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as err:
        raise UserError(f"{ENV_ID}: the level JSON does not parse ({err.msg} at char {err.pos})") from None
    rows = obj.get("rows") if isinstance(obj, dict) else obj
    if not isinstance(rows, list) or not all(isinstance(row, str) for row in rows):
        raise UserError(f"{ENV_ID}: the level JSON must hold \"rows\", a list of strings of the text form")
    return level_from_text("\n".join(rows), height, width)


_SVG_CELL = 24
_SVG_COLOURS = {
    "wall": "#3d3d3d", "free": "#ffffff", "goal": "#2e8b57", "agent": "#c0392b", "view": "#fdf2c4", "grid": "#cccccc"
}


def _arrow_path(row: int, col: int, heading: int) -> str:
    """An SVG triangle in cell (row, col) pointing along ``heading``."""
    cx, cy = (col + 0.5) * _SVG_CELL, (row + 0.5) * _SVG_CELL
    r = 0.38 * _SVG_CELL
    dy, dx = HEADING_VECTORS[heading % NUM_HEADINGS]
    # Tip ahead of the centre, the two back corners beside and behind it.
    tip = (cx + dx * r, cy + dy * r)
    back_left = (cx - dx * r - dy * r * 0.8, cy - dy * r + dx * r * 0.8)
    back_right = (cx - dx * r + dy * r * 0.8, cy - dy * r - dx * r * 0.8)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (tip, back_left, back_right))
    return f'<polygon points="{points}" fill="{_SVG_COLOURS["agent"]}"/>'


def _grid_svg(
    walls: np.ndarray, goal: np.ndarray, agent: np.ndarray, heading: int, view: np.ndarray | None
) -> str:
    """The SVG picture shared by levels and states; ``view`` (bool[h, w]) cells are shaded."""
    height, width = walls.shape
    w, h = width * _SVG_CELL, height * _SVG_CELL
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">',
        f'<rect width="{w}" height="{h}" fill="{_SVG_COLOURS["free"]}"/>',
    ]
    for r in range(height):
        for c in range(width):
            if walls[r, c]:
                fill = _SVG_COLOURS["wall"]
            elif view is not None and view[r, c]:
                fill = _SVG_COLOURS["view"]
            else:
                continue
            parts.append(
                f'<rect x="{c * _SVG_CELL}" y="{r * _SVG_CELL}" width="{_SVG_CELL}" '
                f'height="{_SVG_CELL}" fill="{fill}"/>'
            )
    m = 3
    parts.append(
        f'<rect x="{goal[1] * _SVG_CELL + m}" y="{goal[0] * _SVG_CELL + m}" width="{_SVG_CELL - 2 * m}" '
        f'height="{_SVG_CELL - 2 * m}" fill="{_SVG_COLOURS["goal"]}"/>'
    )
    parts.append(_arrow_path(int(agent[0]), int(agent[1]), heading))
    line = f'stroke="{_SVG_COLOURS["grid"]}" stroke-width="0.5"'
    for k in range(1, width):
        parts.append(f'<line x1="{k * _SVG_CELL}" y1="0" x2="{k * _SVG_CELL}" y2="{h}" {line}/>')
    for k in range(1, height):
        parts.append(f'<line x1="0" y1="{k * _SVG_CELL}" x2="{w}" y2="{k * _SVG_CELL}" {line}/>')
    parts.append(f'<rect width="{w}" height="{h}" fill="none" stroke="black" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def level_to_svg(level: MazeLevel) -> str:
    """An SVG picture of one level: walls, goal, and the start as an arrow."""
    walls = np.asarray(level.walls)
    if walls.ndim != 2:
        raise UserError(f"{ENV_ID}: level_to_svg takes one level, got walls of shape {walls.shape}")
    return _grid_svg(walls, np.asarray(level.goal), np.asarray(level.start), int(level.start_heading), None)


# ------------------------------------------------------------------------------------------------
# Named held-out levels, all 13x13 and solvable.

NAMED_LEVEL_TEXT: dict[str, str] = {
    "SixteenRooms": """
        #############
        #>.#..#..#..#
        #.....#.....#
        #####.####.##
        #..#.....#..#
        #.....#.....#
        #.######.####
        #..#..#.....#
        #..#.....#..#
        ##.#.######.#
        #..#..#..#..#
        #..#.....#.G#
        #############
    """,
    "Labyrinth": """
        #############
        #>..........#
        #########.#.#
        #.........#.#
        #.#########.#
        #.#.......#.#
        #.#.#####.#.#
        #.#.#G..#.#.#
        #.#.###.#.#.#
        #.#.....#.#.#
        #.#######.#.#
        #.........#.#
        #############
    """,
    "StandardMaze": """
        ^.#...#.....#
        .##.#.#.###.#
        ....#...#...#
        .####.###.###
        ......#...#..
        ###.###.#.#.#
        #...#...#...#
        #.###.#####.#
        #.#...#...#.#
        #.#.###.#.#.#
        #.#.....#...#
        #.#######.#.#
        #.........#G.
    """,
    "SmallCorridor": """
        #############
        #############
        #############
        #############
        #############
        ##.#.#.#.#.##
        #>.........G#
        ##.#.#.#.#.##
        #############
        #############
        #############
        #############
        #############
    """,
    "LargeCorridor": """
        #############
        #.#.#.#.#.#.#
        #.#.#.#.#.#.#
        #.#.#.#.#.#.#
        #.#.#.#.#.#.#
        #.#.#.#.#.#.#
        #>..........#
        #.#.#.#.#.#.#
        #.#.#.#.#.#.#
        #.#.#.#.#.#.#
        #.#.#.#.#.#.#
        #.#.#.#.#.#G#
        #############
    """,
    "FourRooms": """
        .....#.......
        .>...#.......
        .............
        .....#.......
        .....#.......
        ##.#####.####
        .....#.......
        .....#.......
        .....#.......
        .............
        .....#.....G.
        .....#.......
        .....#.......
    """,
    "TwoRooms": """
        #############
        #>....#.....#
        #.....#.....#
        #.....#.....#
        #.....#.....#
        #.....#.....#
        #...........#
        #.....#.....#
        #.....#.....#
        #.....#.....#
        #.....#....G#
        #.....#.....#
        #############
    """,
    "ZigZag": """
        v..........#.
        ##########.#.
        ...........#.
        .###########.
        ...........#.
        ##########.#.
        ...........#.
        .###########.
        ...........#.
        ##########.#.
        ...........#.
        .###########.
        ............G
    """,
    "Pillars": """
        .............
        .>#...#...#..
        ..#...#...#..
        .....#...#...
        .#...#...#.#.
        .#.#...#...#.
        ...#...#.....
        .#...#...#.#.
        .#.#.#.#.#.#.
        ...#...#...#.
        .#...#...#...
        .#.#...#...#G
        .............
    """,
    "Detour": """
        .............
        .###########.
        .#.........#.
        .#.#######.#.
        .#.#..G..#.#.
        .#.#.....#.#.
        .#.####.##.#.
        .#.........#.
        .#########.#.
        .#.........#.
        .#.#########.
        ......^......
        #############
    """,
    "Spiral": """
        #############
        #...........#
        #.#########.#
        #.#.......#.#
        #.#.#####.#.#
        #.#.#...#.#.#
        #.#.#.G.#.#.#
        #.#.#.#.#.#.#
        #.#.#.###.#.#
        #.#.#.....#.#
        #.#.#######.#
        #^#.........#
        #############
    """,
}


# ------------------------------------------------------------------------------------------------
# The level space.


@dataclasses.dataclass(frozen=True)
class MazeLevelSpace:
    """The space of maze levels of one grid size: sample, mutate, check, hash, text and JSON.

    Holds static settings only; every array method is pure, jittable and batches with ``vmap``
    (one level per call, vmap at the call site). ``sample`` and ``mutate`` are the names of the
    level-space contract; ``sample_level`` and ``mutate_level`` are the same functions.

    Attributes:
      height: grid rows.
      width: grid columns.
      max_walls: default upper bound of the number of walls `sample_level` places; None means
        about 15% of the cells (25 on 13x13, as JaxUED's domain randomisation).
      edit_weights: relative frequency of the edit kinds of `mutate_level`: flip a wall, move
        the goal, move the start (with a new random heading).
    """

    height: int = 13
    width: int = 13
    max_walls: int | None = None
    edit_weights: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def __post_init__(self) -> None:
        check_option(ENV_ID, "height", self.height, int, 3, 255)
        check_option(ENV_ID, "width", self.width, int, 3, 255)
        if self.max_walls is None:
            object.__setattr__(self, "max_walls", default_max_walls(self.height, self.width))
        check_option(ENV_ID, "max_walls", self.max_walls, int, 0, self.height * self.width - 2)
        weights = tuple(self.edit_weights)
        numbers = all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)
        if len(weights) != 3 or not numbers or min(weights) < 0 or sum(weights) <= 0:
            raise UserError(
                f"{ENV_ID}: edit_weights={self.edit_weights!r} must be three non-negative numbers "
                "(flip wall, move goal, move start) with a positive sum"
            )

    # -- shapes ---------------------------------------------------------------------------------

    def check_level(self, level: MazeLevel) -> None:
        """Raises UserError when ``level`` is not one unbatched level of this grid size."""
        if not isinstance(level, MazeLevel):
            raise UserError(f"{ENV_ID}: expected a MazeLevel, got {type(level).__name__}")
        expected = {"walls": (self.height, self.width), "start": (2,), "goal": (2,), "start_heading": ()}
        for name, shape in expected.items():
            got = tuple(jnp.shape(getattr(level, name)))
            if got != shape:
                raise UserError(
                    f"{ENV_ID}: level.{name} has shape {got}, expected {shape} for a "
                    f"{self.height}x{self.width} maze (vmap over batches of levels)"
                )

    def empty_level(self) -> MazeLevel:
        """No walls, start in the bottom-left corner facing north, goal in the top-right corner."""
        return MazeLevel(
            walls=jnp.zeros((self.height, self.width), jnp.bool_),
            start=jnp.array([self.height - 1, 0], jnp.int32),
            goal=jnp.array([0, self.width - 1], jnp.int32),
            start_heading=jnp.int32(3),
        )

    # -- sampling and editing -------------------------------------------------------------------

    def sample_level(self, key: PRNGKey, max_walls: int | Array | None = None) -> MazeLevel:
        """A random level (domain randomisation): uniform wall count, start, goal and heading.

        Draws the number of walls uniformly in ``0..max_walls`` and places them on distinct
        cells; start and goal are distinct free cells. The level may be unsolvable.

        Args:
          key: consumed.
          max_walls: int or int32[] upper bound of the wall count (a traced value is fine, so a
            curriculum may change it without recompiling); defaults to ``self.max_walls``.
        """
        num_cells = self.height * self.width
        order_key, count_key, heading_key = jax.random.split(key, 3)
        limit = self.max_walls if max_walls is None else max_walls
        limit = jnp.clip(jnp.asarray(limit, jnp.int32), 0, num_cells - 2)
        num_walls = jax.random.randint(count_key, (), 0, limit + 1, dtype=jnp.int32)
        order = jax.random.permutation(order_key, num_cells)
        # The first two cells of a random order are the start and goal, the next num_walls are walls.
        rank = jnp.zeros((num_cells,), jnp.int32).at[order].set(jnp.arange(num_cells, dtype=jnp.int32))
        walls = ((rank >= 2) & (rank < 2 + num_walls)).reshape(self.height, self.width)
        return MazeLevel(
            walls=walls,
            start=jnp.stack([order[0] // self.width, order[0] % self.width]).astype(jnp.int32),
            goal=jnp.stack([order[1] // self.width, order[1] % self.width]).astype(jnp.int32),
            start_heading=jax.random.randint(heading_key, (), 0, NUM_HEADINGS, dtype=jnp.int32),
        )

    def sample_solvable_level(
        self, key: PRNGKey, max_walls: int | Array | None = None, max_tries: int = 32
    ) -> MazeLevel:
        """Like `sample_level`, redrawn until solvable; after ``max_tries`` draws the walls are
        cleared, which always leaves a solvable level. ``key`` is consumed."""
        first_key, key = jax.random.split(key)
        first = self.sample_level(first_key, max_walls)

        def redraw(carry):
            level, key, tries = carry
            level_key, key = jax.random.split(key)
            return self.sample_level(level_key, max_walls), key, tries + 1

        def keep_going(carry):
            level, _, tries = carry
            return ~is_solvable(level) & (tries < max_tries)

        level, _, _ = jax.lax.while_loop(keep_going, redraw, (first, key, jnp.int32(1)))
        return level.replace(walls=jnp.where(is_solvable(level), level.walls, False))

    def mutate_level(
        self, key: PRNGKey, level: MazeLevel, num_edits: int | Array, edit_weights: Array | None = None
    ) -> MazeLevel:
        """ACCEL-style edits: ``num_edits`` times flip a wall, move the goal or move the start.

        The kind of each edit is drawn with the edit weights. A flip never touches the start or
        goal cell; a move goes to a different free cell (the start also gets a random heading).
        So a valid level stays valid; it may become unsolvable.

        Args:
          key: consumed.
          level: one level.
          num_edits: int or int32[] (may differ across a vmapped batch).
          edit_weights: float32[3] relative frequencies of (flip wall, move goal, move start);
            an array, so a curriculum may change them without recompiling. Defaults to
            ``self.edit_weights``.
        """
        self.check_level(level)
        weights = self.edit_weights if edit_weights is None else edit_weights
        edit_logits = jnp.log(jnp.asarray(weights, jnp.float32))

        def body(_, carry):
            level, key = carry
            edit_key, key = jax.random.split(key)
            return _apply_edit(edit_key, level, edit_logits), key

        level, _ = jax.lax.fori_loop(0, jnp.asarray(num_edits, jnp.int32), body, (level, key))
        return level

    # The names of the level-space contract.
    def sample(self, key: PRNGKey) -> MazeLevel:
        """`sample_level` with the default wall bound."""
        return self.sample_level(key)

    def mutate(self, key: PRNGKey, level: MazeLevel, num_edits: int | Array) -> MazeLevel:
        """`mutate_level`."""
        return self.mutate_level(key, level, num_edits)

    # -- measures -------------------------------------------------------------------------------

    def is_valid(self, level: MazeLevel, require_solvable: bool = False) -> Array:
        """bool[]: see the module-level `is_valid`."""
        self.check_level(level)
        return is_valid(level, require_solvable)

    def is_solvable(self, level: MazeLevel) -> Array:
        """bool[]: whether the goal can be reached from the start."""
        self.check_level(level)
        return is_solvable(level)

    def shortest_path_length(self, level: MazeLevel) -> Array:
        """int32[]: fewest forward moves from start to goal; -1 if unsolvable."""
        self.check_level(level)
        return shortest_path_length(level)

    def distance_map(self, level: MazeLevel) -> Array:
        """int32[height, width]: moves from each cell to the goal; -1 where unreachable."""
        self.check_level(level)
        return distance_map(level)

    def level_hash(self, level: MazeLevel) -> Array:
        """uint32[]: a hash of the level's bits, for de-duplication."""
        self.check_level(level)
        return level_hash(level)

    # -- text, JSON, SVG ------------------------------------------------------------------------

    def level_to_text(self, level: MazeLevel) -> str:
        """The text form of one level."""
        return level_to_text(level)

    def level_from_text(self, text: str) -> MazeLevel:
        """Parses the text form into a level of this grid size (smaller maps padded with walls)."""
        return level_from_text(text, self.height, self.width)

    def level_to_json(self, level: MazeLevel) -> str:
        """The JSON form of one level."""
        return level_to_json(level)

    def level_from_json(self, data: str) -> MazeLevel:
        """Parses the JSON form into a level of this grid size."""
        return level_from_json(data, self.height, self.width)

    def level_to_svg(self, level: MazeLevel) -> str:
        """An SVG picture of one level."""
        return level_to_svg(level)

    def named_levels(self) -> dict[str, MazeLevel]:
        """The hand-designed held-out levels (13x13 maps, padded with walls on larger grids)."""
        need_h = max(len(level_text_rows(t)) for t in NAMED_LEVEL_TEXT.values())
        need_w = max(len(level_text_rows(t)[0]) for t in NAMED_LEVEL_TEXT.values())
        if self.height < need_h or self.width < need_w:
            raise UserError(
                f"{ENV_ID}: the named levels need height>={need_h} and width>={need_w}, "
                f"this maze is {self.height}x{self.width}"
            )
        return {name: self.level_from_text(text) for name, text in NAMED_LEVEL_TEXT.items()}


def default_max_walls(height: int, width: int) -> int:
    """About 15% of the cells: 25 walls on the 13x13 grid, scaled by area elsewhere."""
    return height * width * 25 // 169


def level_text_rows(text: str) -> list[str]:
    """The non-blank, stripped rows of a level text."""
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------
# The environment.


class Maze(Env):
    """A grid maze: turn left, turn right or step forward to reach the goal; the level is params."""

    id = ENV_ID
    version = "1"
    description = "Grid maze, 1 player, egocentric view, actions left/right/forward; levels for curricula"

    def __init__(
        self,
        height: int = 13,
        width: int = 13,
        view_size: int = 5,
        max_episode_steps: int = 250,
        max_walls: int | None = None,
    ) -> None:
        """Static options (they fix shapes; everything else is in the level).

        Args:
          height: grid rows, 3..255 (13 as in JaxUED's maze).
          width: grid columns, 3..255.
          view_size: side of the square egocentric view, odd, 3..31.
          max_episode_steps: steps before truncation; also scales the goal reward.
          max_walls: the level space's default bound on sampled walls; None means about 15% of
            the cells (25 on 13x13).
        """
        check_option(ENV_ID, "height", height, int, 3, 255)
        check_option(ENV_ID, "width", width, int, 3, 255)
        check_option(ENV_ID, "view_size", view_size, int, 3, 31)
        if view_size % 2 == 0:
            raise UserError(
                f"{ENV_ID}: option view_size={view_size} must be odd (the agent stands in the middle column)"
            )
        check_option(ENV_ID, "max_episode_steps", max_episode_steps, int, 1)
        self.height = height
        self.width = width
        self.view_size = view_size
        self.max_episode_steps = max_episode_steps
        self.num_players = 1
        self.num_actions = 3
        self.observation_shape = (view_size, view_size, NUM_CHANNELS)
        self.level_space = MazeLevelSpace(height=height, width=width, max_walls=max_walls)
        self._view_offsets = _view_offsets(view_size)

    @property
    def default_params(self) -> MazeLevel:
        """The empty room: start bottom-left facing north, goal top-right."""
        return self.level_space.empty_level()

    # -- rules ----------------------------------------------------------------------------------

    def _reset(self, key, params: MazeLevel) -> MazeState:
        del key  # the level fixes the whole start state
        return MazeState(
            **self._initial_fields(jnp.ones((self.num_actions,), jnp.bool_)),
            position=jnp.asarray(params.start, jnp.int32),
            heading=jnp.asarray(params.start_heading, jnp.int32) % NUM_HEADINGS,
            walls=jnp.asarray(params.walls, jnp.bool_),
            goal=jnp.asarray(params.goal, jnp.int32),
        )

    def _step(self, state: MazeState, action, key, params) -> MazeState:
        del key, params  # deterministic; the level travels in the state
        turn = jnp.where(action == TURN_LEFT, -1, jnp.where(action == TURN_RIGHT, 1, 0))
        heading = (state.heading + turn) % NUM_HEADINGS
        target = state.position + jnp.asarray(HEADING_VECTORS)[state.heading]
        inside = _in_bounds(target, self.height, self.width)
        hits_wall = state.walls[
            jnp.clip(target[0], 0, self.height - 1), jnp.clip(target[1], 0, self.width - 1)
        ]
        moves = (action == FORWARD) & inside & ~hits_wall
        position = jnp.where(moves, target, state.position)
        reached = jnp.all(position == state.goal)
        # step_count is the count before this step; the reward counts this step too.
        reward = 1.0 - 0.9 * (state.step_count + 1).astype(jnp.float32) / self.max_episode_steps
        return state.replace(
            position=position,
            heading=heading,
            rewards=jnp.where(reached, reward, 0.0).reshape(1).astype(jnp.float32),
            terminated=reached,
        )

    def observe(self, state: MazeState, player) -> Array:
        del player  # one player
        cells = state.position + jnp.asarray(self._view_offsets)[state.heading]  # [V, V, 2]
        rows, cols = cells[..., 0], cells[..., 1]
        inside = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
        walls = state.walls[jnp.clip(rows, 0, self.height - 1), jnp.clip(cols, 0, self.width - 1)]
        goal = inside & (rows == state.goal[0]) & (cols == state.goal[1])
        heading = jnp.broadcast_to(
            jax.nn.one_hot(state.heading, NUM_HEADINGS, dtype=jnp.float32),
            (self.view_size, self.view_size, NUM_HEADINGS),
        )
        cell_channels = jnp.stack([walls | ~inside, goal, ~inside], axis=-1).astype(jnp.float32)
        return jnp.concatenate([cell_channels, heading], axis=-1)

    # -- level space, delegated -----------------------------------------------------------------

    def sample_level(self, key: PRNGKey, max_walls: int | Array | None = None) -> MazeLevel:
        """See `MazeLevelSpace.sample_level`."""
        return self.level_space.sample_level(key, max_walls)

    def mutate_level(
        self, key: PRNGKey, level: MazeLevel, num_edits: int | Array, edit_weights: Array | None = None
    ) -> MazeLevel:
        """See `MazeLevelSpace.mutate_level`."""
        return self.level_space.mutate_level(key, level, num_edits, edit_weights)

    def is_valid(self, level: MazeLevel, require_solvable: bool = False) -> Array:
        """See `MazeLevelSpace.is_valid`."""
        return self.level_space.is_valid(level, require_solvable)

    def is_solvable(self, level: MazeLevel) -> Array:
        """See `MazeLevelSpace.is_solvable`."""
        return self.level_space.is_solvable(level)

    def shortest_path_length(self, level: MazeLevel) -> Array:
        """See `MazeLevelSpace.shortest_path_length`."""
        return self.level_space.shortest_path_length(level)

    def level_hash(self, level: MazeLevel) -> Array:
        """See `MazeLevelSpace.level_hash`."""
        return self.level_space.level_hash(level)

    def level_to_text(self, level: MazeLevel) -> str:
        """See `MazeLevelSpace.level_to_text`."""
        return self.level_space.level_to_text(level)

    def level_from_text(self, text: str) -> MazeLevel:
        """See `MazeLevelSpace.level_from_text`."""
        return self.level_space.level_from_text(text)

    def named_levels(self) -> dict[str, MazeLevel]:
        """See `MazeLevelSpace.named_levels`."""
        return self.level_space.named_levels()

    # -- rendering and text actions -------------------------------------------------------------

    def render_text(self, state: MazeState) -> str:
        """The grid in the level text form, the agent drawn as its heading arrow (on the goal,
        the arrow hides the ``G``)."""
        return _grid_text(
            np.asarray(state.walls), np.asarray(state.goal), np.asarray(state.position), int(state.heading)
        )

    def render_svg(self, state: MazeState) -> str:
        """The grid with the agent's arrow; the cells it sees are shaded."""
        cells = np.asarray(state.position) + self._view_offsets[int(state.heading)]
        view = np.zeros((self.height, self.width), dtype=bool)
        rows, cols = cells[..., 0].ravel(), cells[..., 1].ravel()
        inside = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
        view[rows[inside], cols[inside]] = True
        return _grid_svg(
            np.asarray(state.walls),
            np.asarray(state.goal),
            np.asarray(state.position),
            int(state.heading),
            view,
        )

    def action_to_text(self, action: int) -> str:
        return ACTION_NAMES[int(action)]

    def text_to_action(self, text: str) -> int:
        word = text.strip().lower()
        for index, name in enumerate(ACTION_NAMES):
            if word in (name, name[0], str(index)):
                return index
        raise ValueError(f"action must be one of {', '.join(ACTION_NAMES)} (or l, r, f, 0..2), got {text!r}")


def _view_offsets(view_size: int) -> np.ndarray:
    """int32[4, V, V, 2]: the (row, col) offset from the agent of each view cell, per heading.

    View row i is ``V - 1 - i`` cells ahead; view column j is ``j - V // 2`` cells to the right
    (the right of a heading is the next heading clockwise).
    """
    ahead = (view_size - 1 - np.arange(view_size))[:, None, None]
    right = (np.arange(view_size) - view_size // 2)[None, :, None]
    offsets = [
        ahead * HEADING_VECTORS[h] + right * HEADING_VECTORS[(h + 1) % NUM_HEADINGS]
        for h in range(NUM_HEADINGS)
    ]
    return np.stack(offsets).astype(np.int32)
