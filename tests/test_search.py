"""Search over any policy-value network (`superlearner.selfplay.search`): a PPO self-play agent of a board
game can act by Gumbel search with its own policy and value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.cli.main import main
from superlearner.errors import UserError
from superlearner.selfplay.search import make_search, searchable
from tests.test_games_cli import _untrained_run


def play(env, moves):
    state = env.reset(jax.random.key(0))
    for move in moves:
        state = env.step(state, jnp.int32(move), jax.random.key(1))
    assert not bool(state.terminated)
    return state


@pytest.fixture(scope="module")
def connect_four_run(tmp_path_factory):
    return _untrained_run(tmp_path_factory.mktemp("search") / "c4", "connect_four")


def test_only_two_player_zero_sum_games_of_perfect_information_are_searchable():
    assert searchable(sl.make("connect_four")) and searchable(sl.make("othello"))
    assert not searchable(sl.make("kuhn_poker")) and not searchable(sl.make("cartpole"))


# Player 0 has three in the bottom row (columns 0-2) and wins in column 3; after the same moves
# with one more for each side, player 1 has three in column 6 and wins there.
@pytest.mark.parametrize("moves, winning_move", [([0, 6, 1, 6, 2, 5], 3), ([0, 6, 1, 6, 4, 6, 0], 6)])
def test_a_ppo_agent_with_search_takes_a_win_in_one_for_either_player(connect_four_run, moves, winning_move):
    # The network is untrained: only the search's use of the real rules can find the win.
    agent = sl.load_agent(connect_four_run, num_simulations=32)
    state = play(agent.env, moves)
    assert int(agent.act(jax.random.key(2), state)) == winning_move
    raw = sl.load_agent(connect_four_run)
    assert raw.num_simulations == 0


def test_search_from_a_network_never_picks_an_illegal_move():
    env = sl.make("connect_four")
    # Columns 0-5 full (no line of four), only column 6 is legal.
    moves = [m for a, b in ((0, 1), (2, 3), (4, 5)) for m in [a, b] * 3 + [b, a] * 3]
    state = play(env, moves)
    assert np.asarray(state.legal_action_mask).tolist() == [False] * 6 + [True]

    def policy(params, observation, mask):  # prefers illegal moves strongly, before masking
        logits = jnp.broadcast_to(jnp.arange(7.0, 0.0, -1.0) * 10, mask.shape)
        return jnp.where(mask, logits, -1e9), jnp.zeros(mask.shape[:-1])

    search = jax.jit(lambda states, key: make_search(env, policy)(None, states, key, 16, 1.0))
    batch = jax.tree.map(lambda x: jnp.broadcast_to(x, (8,) + x.shape), state)
    out = search(batch, jax.random.key(0))
    assert (np.asarray(out.action) == 6).all()
    assert np.allclose(np.asarray(out.action_weights)[:, :6], 0.0)


def test_search_is_refused_where_it_would_cheat_or_has_no_rules(tmp_path):
    kuhn = _untrained_run(tmp_path / "kuhn", "kuhn_poker")
    with pytest.raises(UserError, match="acts without search"):
        sl.load_agent(kuhn, num_simulations=8)
    assert sl.load_agent(kuhn, num_simulations=0).num_simulations == 0


def test_eval_command_searches_with_a_ppo_agent(connect_four_run, capsys):
    import json

    assert main(["eval", str(connect_four_run), "--opponent", "random", "--games", "8", "--simulations", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["simulations"] == 8 and report["wins"] + report["draws"] + report["losses"] == 8
    assert main(["eval", str(connect_four_run), "--opponent", "random", "--games", "8", "--simulations", "8", "--league"]) == 2
    assert "does not search" in capsys.readouterr().err
