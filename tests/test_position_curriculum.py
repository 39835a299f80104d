"""A curriculum over the start positions of connect four and othello, with AlphaZero.

The level space's rules (fresh and mutated levels are positions of legal play that are not over,
``reset`` starts from a level, the default level is the standard start), the per-game stage (no
game is cut, a finished game scores the level it started from, the standard start is drawn at
its rate), exact resume, the restore of a checkpoint written before the envs had levels, the
scores' preference for positions whose games are split, and the pictures of positions."""

import functools
import json
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.config import config_from_dict, config_to_dict
from superlearner.curriculum import positions
from superlearner.curriculum.levels import CurriculumHparams, make_level_sampler
from superlearner.engine import initial_state, make_curriculum_stage, make_engine
from superlearner.errors import ConfigError, UserError
from superlearner.run.checkpoint import Checkpointer

GAMES = ("connect_four", "othello")
# A 4x4 connect four position whose only move (column 3, by O) fills the board: a draw.
LAST_MOVE = "XOX.\nXXOO\nOOXX\nXXOO\nO to move"


def _leaves_equal(a, b) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _take(tree, *index):
    return jax.tree.map(lambda x: x[index], tree)


# ------------------------------------------------------------------------------------------------
# The level space.


@pytest.mark.parametrize("env_id", GAMES)
def test_the_default_level_is_the_standard_start(env_id):
    env = sl.make(env_id)
    space = env.level_space
    state = env.reset(jax.random.key(0))
    assert _leaves_equal(space.level_of(state), env.default_params)
    assert _leaves_equal(env.reset(jax.random.key(1), space.standard_level()), state)
    discs = env.discs(state)
    if env_id == "connect_four":
        assert (discs == -1).all() and np.asarray(state.legal_action_mask).all()
    else:
        assert sorted(zip(*np.nonzero(discs >= 0))) == [(3, 3), (3, 4), (4, 3), (4, 4)]
        assert discs[3, 3] == discs[4, 4] == 1 and discs[3, 4] == discs[4, 3] == 0
    assert int(state.current_player) == 0 and bool(space.is_valid(env.default_params))


@functools.lru_cache(maxsize=None)
def _rules(env_id):
    env = sl.make(env_id)
    return env, jax.jit(env.reset), jax.jit(env.step)


def _replay(env_id, level, actions):
    """The level reached by playing ``actions`` (-1: no ply) from ``level`` with the env's rules."""
    env, reset, step = _rules(env_id)
    state = reset(jax.random.key(0), level)
    for action in np.asarray(actions):
        if action >= 0:
            assert bool(state.legal_action_mask[action]) and not bool(state.terminated)
            state = step(state, jnp.int32(action), jax.random.key(1))
    assert not bool(state.terminated | state.truncated)
    return env.level_space.level_of(state)


@pytest.mark.parametrize("env_id", GAMES)
def test_fresh_and_mutated_levels_are_unfinished_positions_reached_by_legal_play(env_id):
    env, _, _ = _rules(env_id)
    space = env.level_space

    @jax.jit
    @jax.vmap
    def draw(key):
        # `sample` is `sample_line`'s level; `mutate(key, level, n)` is `play_line(key, level, n, n)`'s.
        level, line = space.sample_line(key)
        mutant, mutant_line = space.play_line(key, level, 3, 3)
        return level, line, mutant, mutant_line, space.is_valid(level) & space.is_valid(mutant), space.level_hash(level)

    keys = jax.random.split(jax.random.key(3), 12)
    levels, lines, mutants, mutant_lines, valid, hashes = jax.device_get(draw(keys))
    assert valid.all()
    for i in range(len(keys)):
        level = _take(levels, i)
        assert _leaves_equal(_replay(env_id, space.standard_level(), lines[i]), level)
        assert _leaves_equal(_replay(env_id, level, mutant_lines[i]), _take(mutants, i))
        assert 1 <= (lines[i] >= 0).sum() <= space.max_plies
    assert len(set(hashes.tolist())) > len(keys) // 2  # varied


def test_a_mutation_where_every_ply_ends_the_game_keeps_the_parent():
    env = sl.make("connect_four", rows=4, columns=4)
    level = env.level_space.level_from_text(LAST_MOVE)
    after = env.step(env.reset(jax.random.key(0), level), jnp.int32(3), jax.random.key(1))
    assert bool(after.terminated)  # the one legal move ends the game
    assert _leaves_equal(env.level_space.mutate(jax.random.key(2), level, 3), level)


@pytest.mark.parametrize("env_id", GAMES)
def test_reset_from_a_level_gives_its_board_and_player_to_move_and_its_forms_round_trip(env_id):
    env = sl.make(env_id)
    space = env.level_space
    level = space.sample(jax.random.key(5))
    state = env.reset(jax.random.key(6), level)
    assert _leaves_equal(space.level_of(state), level) and int(state.current_player) == int(level.current_player)
    text = space.level_to_text(level)
    rows, to_move = text.split("\n")[:-1], text.split("\n")[-1]
    np.testing.assert_array_equal(env.discs(state), [[{".": -1, "X": 0, "O": 1}[c] for c in row] for row in rows])
    assert to_move == ("X to move" if int(level.current_player) == 0 else "O to move")
    assert _leaves_equal(space.level_from_text(text), level)
    assert _leaves_equal(space.level_from_json(space.level_to_json(level)), level)
    reference = env.reset(jax.random.key(0), env.level_from_discs(env.discs(state), int(level.current_player)))
    np.testing.assert_array_equal(state.legal_action_mask, reference.legal_action_mask)
    svg = ET.fromstring(space.level_to_svg(level))
    assert sum(e.tag.endswith("circle") for e in svg.iter()) >= (env.discs(state) >= 0).sum()
    image = space.level_to_image(level)
    assert image.shape[2] == 3 and 0.0 <= image.min() and image.max() <= 1.0
    other = level.replace(current_player=1 - level.current_player)
    assert int(space.level_hash(other)) != int(space.level_hash(level))


@pytest.mark.parametrize(
    "env_id, text, words",
    [
        ("connect_four", "....\n.X..\n....\n.O..\nX to move", "legal play"),  # a disc in the air
        ("connect_four", "....\nX...\nX...\nXOOO\nO to move", "legal play"),  # O to move, as many discs as X
        ("connect_four", "X...\nX...\nX...\nXOOO\nO to move", "legal play"),  # four in a row: over
        ("connect_four", "....\n....\n....\nX...", "then a line"),
    ],
)
def test_texts_that_are_no_unfinished_legal_position_are_refused_in_one_line(env_id, text, words):
    space = sl.make(env_id, rows=4, columns=4).level_space
    with pytest.raises(UserError, match=words) as error:
        space.level_from_text(text)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------
# The per-game stage.

ALPHAZERO = {
    "num_simulations": 4, "max_num_considered_actions": 4, "replay_capacity": 256, "batch_size": 16,
    "num_updates": 1, "min_replay_size": 16, "channels": 8, "num_blocks": 1, "eval_simulations": 4,
}
CURRICULUM = {"kind": "accel", "capacity": 128, "min_fill_ratio": 0.03, "num_edits": 2, "score": "learnability",
              "standard_start_rate": 0.3}


def _config(num_envs=16, num_steps=12, iterations=8, learner="alphazero", **sections):
    raw = {
        "name": "tiny_positions",
        "env": {"id": "connect_four", "options": {"rows": 4, "columns": 5}},
        "learner": {"kind": learner, "num_envs": num_envs, "num_steps": num_steps},
        "alphazero": dict(ALPHAZERO),
        "curriculum": dict(CURRICULUM),
        "arena": {"every_chunks": 0},
        "train": {"total_env_steps": num_envs * num_steps * iterations, "eval_episodes": 0},
        "log": {"tensorboard": False},
    }
    if learner != "alphazero":
        raw.pop("alphazero")
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(json.loads(json.dumps(raw)))


@pytest.fixture(scope="module")
def collections():
    """Three iterations of one member, through the stage and the learner's collection (no
    update), with everything each step saw."""
    config = _config()
    engine = make_engine(config)
    stage = make_curriculum_stage(config, engine.env, engine.learner)
    member = _take(initial_state(engine, 0).members(), 0)

    @jax.jit
    def iteration(member, key):
        level_key, reset_key, collect_key = jax.random.split(key, 3)
        member, context, sampled = stage.levels(member, level_key, reset_key)
        after, batch, outcome = engine.learner.collect(member, collect_key, context)
        followed = positions.follow_games(member.curriculum["games"], member.env_params, sampled[0], outcome)
        observed, metrics = stage.observe(after, outcome, sampled)
        return dict(before=member, after=after, trajectory=batch.trajectory, outcome=outcome, draws=sampled[0],
                    followed=followed, observed=observed, metrics=metrics)

    steps = []
    for key in jax.random.split(jax.random.key(7), 3):
        steps.append(jax.device_get(iteration(member, key)))
        member = steps[-1]["observed"]
    return engine, stage, steps


def test_the_first_games_start_from_the_levels_the_stage_drew(collections):
    engine, _, steps = collections
    member = steps[0]["before"]
    boards = member.env_state.env_state.boards
    np.testing.assert_array_equal(boards, member.env_params.boards)
    sources = np.asarray(member.curriculum["games"].source)
    assert set(np.unique(sources)) <= {positions.SOURCE_STANDARD, positions.SOURCE_FRESH}


def test_no_game_is_cut_and_new_games_start_from_their_drawn_level(collections):
    engine, _, steps = collections
    env = engine.env
    for step in steps:
        done, trajectory, draws = np.asarray(step["outcome"].done), step["trajectory"], step["draws"]
        num_steps = done.shape[0]
        assert done.any() and not np.asarray(trajectory["truncated"]).any()
        # Every game that ended, ended by the rules (never truncated); the others went on for
        # all T plies, and a restarted one has played the plies since it started.
        before = np.asarray(step["before"].env_state.episode_length)
        after = np.asarray(step["after"].env_state.episode_length)
        going = ~done.any(axis=0)
        np.testing.assert_array_equal(after[going], before[going] + num_steps)
        last = num_steps - 1 - np.argmax(done[::-1], axis=0)
        np.testing.assert_array_equal(after[~going], num_steps - 1 - last[~going])
        # A game that ended at step t < T - 1 was followed by one from draws.levels[t].
        fresh = jax.vmap(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), done.shape), draws.levels)
        observed = np.asarray(trajectory["observation"])
        for t, n in zip(*np.nonzero(done[:-1])):
            np.testing.assert_array_equal(observed[t + 1, n], np.asarray(fresh.observation)[t, n])
        # The collection's own record of the levels in play agrees with the stage's.
        assert _leaves_equal(step["after"].env_params, step["observed"].env_params)


def test_finished_games_score_the_level_they_started_from(collections):
    engine, stage, steps = collections
    space = engine.env.level_space
    replays = 0
    for step in steps:
        done, draws = np.asarray(step["outcome"].done), step["draws"]
        _, final_levels, finished = step["followed"]
        final_return = np.asarray(step["trajectory"]["final_return"])
        starts = [_take(step["before"].env_params, n) for n in range(done.shape[1])]
        sources = list(np.asarray(step["before"].curriculum["games"].source))
        buffer = step["observed"].curriculum["buffer"]
        held = set(np.asarray(buffer.hashes)[np.asarray(buffer.valid)].tolist())
        for t in range(done.shape[0]):
            for n in np.flatnonzero(done[t]):
                level = starts[n]
                assert _leaves_equal(_take(finished.levels, t, n), level)
                assert int(finished.source[t, n]) == sources[n]
                player = int(level.current_player)
                assert float(finished.start_return[t, n]) == final_return[t, n, player]
                if sources[n] != positions.SOURCE_STANDARD:
                    assert int(space.level_hash(level)) in held
                starts[n], sources[n] = _take(draws.levels, t, n), int(draws.sources[t, n])
                replays += sources[n] == positions.SOURCE_REPLAY
        assert all(_leaves_equal(_take(final_levels, n), starts[n]) for n in range(done.shape[1]))
        assert float(step["metrics"]["curriculum_games"]) == done.sum()
    before, after = steps[0]["before"].curriculum["buffer"], steps[-1]["observed"].curriculum["buffer"]
    assert int(after.num_sampled.sum() - before.num_sampled.sum()) == replays > 0


def test_the_standard_start_is_drawn_at_its_rate(collections):
    """The collections' draws (3 x 12 x 16, rate 0.3): the standard start's share is within a
    binomial bound, and the other draws are fresh, replayed and mutated levels, all legal."""
    engine, _, steps = collections
    draws = [step["draws"] for step in steps]
    sources = np.concatenate([np.asarray(d.sources).reshape(-1) for d in draws])
    standard = sources == positions.SOURCE_STANDARD
    rate = CURRICULUM["standard_start_rate"]
    assert abs(standard.mean() - rate) <= 4.5 * np.sqrt(rate * (1 - rate) / sources.size), standard.mean()
    assert {positions.SOURCE_FRESH, positions.SOURCE_REPLAY, positions.SOURCE_MUTANT} <= set(sources[~standard].tolist())
    boards = np.concatenate([np.asarray(d.levels.boards).reshape((-1,) + d.levels.boards.shape[2:]) for d in draws])
    assert not boards[standard].any()  # connect four's standard start: the empty board
    for d in draws:
        assert (np.asarray(d.indices)[np.asarray(d.sources) == positions.SOURCE_REPLAY] >= 0).all()
        assert np.asarray(jax.jit(jax.vmap(jax.vmap(engine.env.level_space.is_valid)))(d.levels)).all()


def test_learnability_prefers_positions_whose_games_are_split():
    """Two positions, each finishing eight games: one always won by the side to move, one won
    and lost in turn. The split one scores far higher, so robust PLR replays it more."""
    space = sl.make("connect_four", rows=4, columns=5).level_space
    sampler = make_level_sampler("plr", space, capacity=8, batch_size=4)
    decided = space.level_from_text(".....\n.....\n..O..\n..X..\nX to move")
    split = space.level_from_text(".....\n.....\n.....\n..XO.\nX to move")
    levels = jax.tree.map(lambda a, b: jnp.stack([a, b, a, b]), decided, split)
    buffer = sampler.init(space.standard_level())
    record = jax.jit(lambda buffer, returns: positions.record_games(sampler, buffer, positions.FinishedGames(
        done=jnp.ones((1, 4), bool), levels=jax.tree.map(lambda x: x[None], levels),
        source=jnp.full((1, 4), positions.SOURCE_FRESH), start_return=returns[None],
        value_error=jnp.zeros((1, 4))), "learnability", 0.1, 0.5))
    for _ in range(4):
        buffer, metrics = record(buffer, jnp.array([1.0, 1.0, 1.0, -1.0]))
    slots = {int(h): i for i, h in enumerate(np.asarray(buffer.hashes))}
    decided_slot, split_slot = slots[int(space.level_hash(decided))], slots[int(space.level_hash(split))]
    scores = np.asarray(buffer.scores)
    assert int(buffer.size) == 2 and scores[split_slot] > scores[decided_slot] + 0.1, scores
    assert float(metrics["curriculum_games"]) == 4 and float(metrics["curriculum_start_side_score"]) == 0.75
    probabilities = np.asarray(sampler.replay_probabilities(buffer, CurriculumHparams.from_values(staleness_coef=0.0)))
    assert probabilities[split_slot] > probabilities[decided_slot]


# ------------------------------------------------------------------------------------------------
# Runs: exact resume with a league and a population, and checkpoints from before levels.


def test_two_members_in_a_league_resume_exactly_from_a_checkpoint(tmp_path):
    config = _config(num_envs=8, num_steps=8, train={"population_size": 2},
                     league={"kind": "snapshots", "capacity": 2, "snapshot_every": 1})
    engine = make_engine(config)
    abstract = jax.eval_shape(engine.init, jnp.int32(0))
    # Compiled once for the checkpoint's types (a restored state has no weakly typed leaves).
    typed = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract)
    chunk = jax.jit(engine.train_chunk, static_argnums=1).lower(typed, 2).compile()
    first, _ = chunk(initial_state(engine, 0))
    straight, metrics = chunk(first)
    checkpointer = Checkpointer(tmp_path / "run", asynchronous=False)
    checkpointer.save(2, first, {"config": config_to_dict(config)})
    restored, _ = checkpointer.restore(abstract)
    checkpointer.close()
    resumed, _ = chunk(restored)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(straight)[0], jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
    assert float(np.asarray(metrics["curriculum_games"]).sum()) > 0
    assert (np.asarray(straight.curriculum["buffer"].valid).sum(axis=1) > 0).all()
    assert int(np.asarray(straight.league.num_added).min()) >= 2


def test_a_checkpoint_from_before_connect_four_had_levels_restores_on_the_standard_start(tmp_path):
    config = _config(curriculum={"kind": "none"})
    engine = make_engine(config)
    state = initial_state(engine, 0)
    checkpointer = Checkpointer(tmp_path / "run", asynchronous=False)
    checkpointer.save(1, state.replace(env_params=sl.NoParams()), {"config": config_to_dict(config)})
    restored, _ = checkpointer.restore(jax.eval_shape(engine.init, jnp.int32(0)))
    checkpointer.close()
    assert _leaves_equal(restored, state)
    assert np.asarray(restored.env_params.boards).shape == (1, 16, 2, 1) and not np.asarray(restored.env_params.boards).any()


@pytest.mark.parametrize(
    "sections, words",
    [
        ({"learner": "ppo"}, "declares no game_starts"),
        ({"curriculum": {"score": "maxmc"}}, "curriculum.score=maxmc"),
        ({"curriculum": {"standard_start_rate": 1.5}}, "standard_start_rate"),
    ],
)
def test_settings_that_cannot_work_fail_in_one_line_before_compiling(sections, words):
    with pytest.raises(ConfigError, match=words) as error:
        make_engine(_config(**sections))
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------
# Pictures.


def test_a_gallery_of_positions_is_drawn_as_boards(tmp_path):
    from superlearner.cli.levels import gallery_svg, levels_svg
    from superlearner.run.plot import _level_drawing, plot_level_gallery

    env = sl.make("connect_four", rows=4, columns=5)
    space = env.level_space
    levels = jax.tree.map(lambda *xs: jnp.stack(xs), *[space.level_from_text(text) for text in (
        ".....\n.....\n..O..\n..X..\nX to move", ".....\n.....\n.....\nX.O.X\nO to move",
        ".....\n.....\n.X...\nXOO.X\nO to move")])
    texts = [space.level_to_text(_take(levels, i)) for i in range(3)]
    galleries = [{"iteration": it, "levels": [{"slot": i, "score": 0.1 * i, "path_length": None, "text": t}
                                              for i, t in enumerate(texts)]} for it in (10, 20)]
    svg = ET.fromstring(gallery_svg(env, galleries))
    assert sum(e.tag.endswith("circle") for e in svg.iter()) == 2 * 3 * 20  # every cell of every board
    assert sum(e.tag.endswith("circle") for e in ET.fromstring(levels_svg(env, levels)).iter()) == 3 * 20
    (tmp_path / "config.yaml").write_text("env:\n  id: connect_four\n  options: {rows: 4, columns: 5}\n")
    path = plot_level_gallery(galleries, tmp_path / "gallery.png", level_image=_level_drawing(tmp_path))
    assert path.stat().st_size > 0
