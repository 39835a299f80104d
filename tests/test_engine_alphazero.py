"""AlphaZero through the engine, trainer, checkpoints and CLI: exact resume with the replay buffer,
config errors, a loaded agent that searches and never plays an illegal move, eval against an anchor."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superlearner import cli
from superlearner.run.agent import load_agent, load_train_state
from superlearner.run.checkpoint import Checkpointer
from superlearner.config import config_from_dict, validate_semantics
from superlearner.engine import make_engine
from superlearner.errors import ConfigError, UserError
from superlearner.run.logs import read_metrics
from superlearner.run.trainer import resume, train

# 16 tic-tac-toe games x 9 moves per iteration, 4 iterations in chunks of 2: the replay ring (512)
# wraps in the fourth iteration and holds games begun in an earlier chunk, so a resume matches only
# if the buffer and the games in progress are restored.
TINY = {
    "name": "tiny_alphazero",
    "env": {"id": "tic_tac_toe"},
    "learner": {"kind": "alphazero", "num_envs": 16, "num_steps": 9},
    "alphazero": {
        "num_simulations": 8, "max_num_considered_actions": 9, "replay_capacity": 512, "batch_size": 64,
        "num_updates": 4, "min_replay_size": 64, "channels": 8, "num_blocks": 1, "eval_simulations": 8,
        "learning_rate": 3e-3,
    },
    "arena": {"every_chunks": 0},
    "train": {"total_env_steps": 16 * 9 * 4, "iterations_per_chunk": 2, "checkpoint_every_chunks": 1, "keep_checkpoints": 10},
    "log": {"tensorboard": False},
}


def _config(**sections):
    raw = json.loads(json.dumps(TINY))
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def _comparable(records):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "steps_per_second")} for r in records]


def _latest_state(run_dir):
    steps = Checkpointer(run_dir, read_only=True).steps()
    _, state, _ = load_train_state(run_dir / "checkpoints" / str(max(steps)))
    return state


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("alphazero") / "run"
    result = train(_config(), run_dir, show_progress=False)
    assert result.completed and result.iteration == 4
    return run_dir


def test_the_train_state_holds_the_learner_per_member_and_the_replay_buffer(straight_run):
    state = _latest_state(straight_run)
    buffer = state.learner.buffer
    assert buffer.positions.valid.shape == (1, 512)
    # The ring wrapped (4 x 144 positions > 512) and holds sampleable positions with targets.
    assert int(buffer.size[0]) == 512 and int(buffer.insert_index[0]) == (4 * 144) % 512
    assert int(buffer.positions.valid[0].sum()) > 64
    # Tic-tac-toe games end within the 9 moves, so SGD runs from the first iteration on.
    assert int(state.learner.num_updates[0]) == 4 * 4
    assert state.hparams.learning_rate.shape == (1,) and float(state.hparams.learning_rate[0]) == pytest.approx(3e-3)
    records = read_metrics(straight_run)
    assert [r["iteration"] for r in records] == [2, 4]
    assert records[-1]["metrics"]["sgd_applied"] == [1.0]
    assert "loss_total" in records[-1]["metrics"] and "value_scale" in records[-1]["hparams"]


def test_resume_is_exact_including_the_replay_buffer(straight_run, tmp_path):
    run_dir = tmp_path / "run"
    first = train(_config(), run_dir, show_progress=False, max_chunks=1)
    assert not first.completed and first.iteration == 2
    second = resume(run_dir, show_progress=False)
    assert second.completed and second.iteration == 4
    a, b = _latest_state(straight_run), _latest_state(run_dir)
    paths_a = jax.tree_util.tree_flatten_with_path(a)[0]
    for (path, x), y in zip(paths_a, jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))
    assert _comparable(read_metrics(run_dir)) == _comparable(read_metrics(straight_run))


@pytest.mark.parametrize(
    "sections, words",
    [
        ({"alphazero": {"num_simulations": 0}}, "alphazero.num_simulations=0 is out of range"),
        ({"alphazero": {"num_simulation": 4}}, "did you mean alphazero.num_simulations"),
        ({"alphazero": {"min_replay_size": 1024}}, "alphazero.min_replay_size=1024 exceeds alphazero.replay_capacity=512"),
        ({"alphazero": {"learning_rate": [1e-3, 2e-3]}}, "alphazero.learning_rate has 2 values but train.population_size=1"),
        ({"alphazero": {"gumbel_scale": -1.0}}, "alphazero.gumbel_scale=-1.0 is out of range"),
        ({"learner": {"kind": "alphazro"}}, "did you mean 'alphazero'"),
        ({"meta": {"kind": "pbt", "adapt": ["gamma"]}, "train": {"population_size": 2}}, "unknown hyperparameter 'gamma'"),
        ({"meta": {"kind": "metagrad", "adapt": ["learning_rate"]}}, "has no differentiable update"),
        ({"env": {"id": "kuhn_poker"}}, "two-player zero-sum game of perfect information"),
    ],
)
def test_bad_alphazero_settings_are_one_line_errors(sections, words):
    with pytest.raises(UserError) as error:
        config = _config(**sections)
        validate_semantics(config)
        make_engine(config)
    message = str(error.value)
    assert words in message and "\n" not in message
    if "env" not in sections:
        assert isinstance(error.value, ConfigError)


def test_the_loaded_agent_searches_and_never_plays_an_illegal_move(straight_run):
    agent = load_agent(straight_run)
    assert agent.num_simulations == 8 and agent.step == 4  # the run's alphazero.eval_simulations
    raw = load_agent(straight_run, num_simulations=0)
    assert raw.num_simulations == 0
    with pytest.raises(UserError, match="must be an integer, 0"):
        load_agent(straight_run, num_simulations=-1)
    env = agent.env
    search = jax.jit(agent.kind_of(greedy=False))  # with Gumbel noise: many different games
    step = jax.jit(jax.vmap(env.step))
    key = jax.random.key(7)
    states = jax.vmap(env.reset)(jax.random.split(key, 64))
    for move in range(9):
        key, act_key, random_key, step_key = jax.random.split(key, 4)
        actions = np.asarray(search(agent.params, act_key, states))
        live = ~np.asarray(states.terminated | states.truncated)
        mask = np.asarray(states.legal_action_mask)
        assert mask[np.arange(64), actions][live].all(), f"illegal move by search at ply {move}"
        # Every other ply a random legal move, so the positions are varied and late ones are crowded.
        random_actions = jax.random.categorical(random_key, jnp.where(states.legal_action_mask, 0.0, -jnp.inf))
        actions = jnp.where(move % 2 == 1, random_actions, actions)
        states = step(states, actions.astype(jnp.int32), jax.random.split(step_key, 64))
    assert bool(jnp.all(states.terminated | states.truncated))
    # One unbatched state, the path `superlearner play` uses.
    state = env.reset(jax.random.key(0))
    assert bool(state.legal_action_mask[int(agent.act(jax.random.key(1), state))])


def test_eval_against_an_anchor_with_search_and_with_the_raw_policy(straight_run, capsys):
    assert cli.main(["eval", str(straight_run), "--opponent", "random", "--games", "40", "--json"]) == 0
    searched = json.loads(capsys.readouterr().out)
    assert searched["simulations"] == 8 and searched["games"] == 40
    assert searched["wins"] + searched["draws"] + searched["losses"] == 40
    # Eight simulations through the real rules already find wins and block losses in one move.
    assert searched["score"] >= 0.7
    assert cli.main(["eval", str(straight_run), "--opponent", "random", "--games", "40", "--raw-policy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["simulations"] == 0
    assert cli.main(["eval", str(straight_run), "--opponent", "random", "--games", "4", "--simulations", "-2"]) == 2
    assert "--simulations -2" in capsys.readouterr().err
