"""Tests of superlearner.selfplay.anchors: the random, minimax and perfect players, the solved
tic-tac-toe table, and exact Kuhn poker exploitability."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.selfplay import anchors
from superlearner.selfplay.anchors import (
    WIN_SCORE,
    make_anchor,
    minimax_action_values,
    register_heuristic,
)
from superlearner.envs.kuhn_poker import equilibrium_policy as kuhn_equilibrium_policy
from superlearner.envs.kuhn_poker import table_exploitability as kuhn_exploitability
from superlearner.envs.tic_tac_toe import solved_values as tic_tac_toe_values
from superlearner.errors import UserError


def _has_env(module: str) -> bool:
    return importlib.util.find_spec(f"superlearner.envs.{module}") is not None


needs_connect_four = pytest.mark.skipif(
    not _has_env("connect_four"), reason="superlearner.envs.connect_four is not available"
)
needs_othello = pytest.mark.skipif(not _has_env("othello"), reason="superlearner.envs.othello is not available")
needs_kuhn = pytest.mark.skipif(not _has_env("kuhn_poker"), reason="superlearner.envs.kuhn_poker is not available")


def fast_jit(fn):
    """``jax.jit`` with XLA's backend optimisation off, compiled once per argument shapes.

    The searches unroll one level per ply, so their programs are deep but cheap to run; on CPU
    the LLVM optimisation passes then dominate the test's time (several times the run).
    """
    jitted = jax.jit(fn)
    compiled = {}

    def call(*args):
        signature = tuple((leaf.shape, str(leaf.dtype)) for leaf in jax.tree.leaves(args))
        signature += (str(jax.tree.structure(args)),)
        if signature not in compiled:
            compiled[signature] = jitted.lower(*args).compile({"xla_backend_optimization_level": "0"})
        return compiled[signature](*args)

    return call


_STEPS = {}


def play(env, moves):
    """The state after playing ``moves`` from the start (the board games here ignore step keys)."""
    step = _STEPS.setdefault(env.id, fast_jit(env.step))
    state = env.reset(jax.random.key(0))
    for i, move in enumerate(moves):
        state = step(state, jnp.int32(move), jax.random.key(i + 1))
    assert not bool(state.terminated), "test position must be live"
    return state


def stack(states):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


# ------------------------------------------------------------------------------------------
# The factory.


def test_spec_errors_name_what_is_accepted():
    env = sl.make("tic_tac_toe")
    for bad in ("randm", "minimax", "minimax:0", "minimax:x", "minimax:2:0", "minimax:1:2:3", "perfect:1", ""):
        with pytest.raises(UserError, match="accepted") as info:
            make_anchor(env, bad)
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="more than"):
        make_anchor(env, "minimax:9")  # 9**9 leaves: refuse instead of running out of memory
    assert anchors.anchor_specs(env) == ("random", "minimax:DEPTH", "minimax:DEPTH:WIDTH", "perfect")


@needs_connect_four
def test_perfect_is_refused_where_no_exact_player_exists():
    env = sl.make("connect_four")
    with pytest.raises(UserError, match="no perfect player.*accepted anchors for connect_four: random, minimax"):
        make_anchor(env, "perfect")


@needs_kuhn
def test_minimax_is_refused_for_hidden_information():
    env = sl.make("kuhn_poker")
    with pytest.raises(UserError, match="perfect information.*random, perfect"):
        make_anchor(env, "minimax:2")


def test_anchors_consume_each_key_once():
    env = sl.make("tic_tac_toe")
    state = play(env, [4])
    for spec in ("random", "minimax:2", "perfect"):
        act = jax.vmap(make_anchor(env, spec), in_axes=(0, None))
        with jax.debug_key_reuse(True):
            actions = fast_jit(act)(jax.random.split(jax.random.key(0), 4), state)
        assert np.all(np.asarray(state.legal_action_mask)[np.asarray(actions)]), spec


# ------------------------------------------------------------------------------------------
# random


def test_random_anchor_picks_only_legal_moves_and_covers_them():
    env = sl.make("tic_tac_toe")
    state = play(env, [4, 0, 8, 2])  # cells 0, 2, 4, 8 taken
    act = fast_jit(jax.vmap(make_anchor(env, "random"), in_axes=(0, None)))
    actions = np.asarray(act(jax.random.split(jax.random.key(1), 2000), state))
    assert set(actions.tolist()) == {1, 3, 5, 6, 7}
    counts = np.bincount(actions, minlength=9)[[1, 3, 5, 6, 7]]
    assert counts.min() > 300  # ~400 each under uniform
    # Eager equals jit for the same key.
    key = jax.random.key(7)
    assert int(make_anchor(env, "random")(key, state)) == int(fast_jit(make_anchor(env, "random"))(key, state))


@needs_connect_four
def test_random_anchor_avoids_full_columns():
    env = sl.make("connect_four")
    state = play(env, [0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6])  # columns 0 and 6 full
    act = fast_jit(jax.vmap(make_anchor(env, "random"), in_axes=(0, None)))
    actions = np.asarray(act(jax.random.split(jax.random.key(2), 500), state))
    assert set(actions.tolist()) == {1, 2, 3, 4, 5}


# ------------------------------------------------------------------------------------------
# minimax on connect four


@pytest.fixture(scope="module")
def c4():
    return sl.make("connect_four") if _has_env("connect_four") else None


@pytest.fixture(scope="module")
def c4_values_depth2(c4):
    return fast_jit(jax.vmap(lambda s, k: minimax_action_values(c4, s, k, 2)))


@needs_connect_four
def test_connect_four_minimax_wins_in_one_and_blocks(c4, c4_values_depth2):
    positions = {
        # X (to move) has 0,1,2 on the bottom row; O has 0,1,2 on the row above. Win at 3.
        "win_over_block": ([0, 0, 1, 1, 2, 2], {3}),
        # O has 0,1,2 on the bottom row; X has nothing comparable. Block at 3.
        "block_row": ([6, 0, 6, 1, 5, 2], {3}),
        # O has three stacked in column 4; X must cap it.
        "block_column": ([0, 4, 1, 4, 6, 4], {4}),
        # X has 3,4,5 on the bottom with both ends open: 2 and 6 both win at once.
        "two_wins": ([3, 3, 4, 4, 5, 0], {2, 6}),
    }
    states = stack([play(c4, moves) for moves, _ in positions.values()])
    keys = jax.random.split(jax.random.key(3), len(positions))
    values = np.asarray(c4_values_depth2(states, keys))
    act = fast_jit(jax.vmap(make_anchor(c4, "minimax:2")))
    for trial in range(3):
        chosen = np.asarray(act(jax.random.split(jax.random.key(10 + trial), len(positions)), states))
        for (name, (_, best)), move in zip(positions.items(), chosen):
            assert int(move) in best, (name, move, values)
    for (name, (_, best)), row in zip(positions.items(), values):
        if name in ("win_over_block", "two_wins"):
            # An immediate win is worth WIN_SCORE + 2 at depth 2: the quickest possible.
            assert all(row[a] == WIN_SCORE + 2 for a in best)
        else:
            # Every move except the block loses at once (the opponent's win at depth 1).
            others = [a for a in range(7) if a not in best]
            assert all(row[a] == -(WIN_SCORE + 1) for a in others), (name, row)
            assert all(abs(row[a]) < WIN_SCORE for a in best)


@needs_connect_four
def test_connect_four_minimax_prefers_the_centre_on_an_empty_board(c4, c4_values_depth2):
    empty = c4.reset(jax.random.key(0))
    depth1 = np.asarray(fast_jit(lambda s, k: minimax_action_values(c4, s, k, 1))(empty, jax.random.key(1)))
    depth2 = np.asarray(c4_values_depth2(stack([empty]), jax.random.split(jax.random.key(2), 1))[0])
    for values in (depth1, depth2):
        assert np.argmax(values) == 3 and np.sum(values == values.max()) == 1
        # The heuristic is symmetric under mirroring the board.
        np.testing.assert_allclose(values, values[::-1])


@needs_connect_four
def test_connect_four_heuristic_counts_open_lines_and_centre(c4):
    # X: bottom 1, 2 (an open two in several windows); O: column 3 bottom (a centre disc).
    state = play(c4, [1, 3, 2])  # O to move
    h_o = float(c4.heuristic(state))
    # O's view: O has one centre disc (+3); X's bottom two at columns 1-2 lies in windows
    # [0..3] (blocked by O at 3), [1..4] (blocked) -> only windows without O count: none
    # horizontally. Vertical/diagonal windows hold one X disc each, so X has no open two.
    assert h_o == pytest.approx(3.0)
    state = play(c4, [1, 6, 2])  # O to move; O's disc is at the edge now
    # X's bottom two at columns 1-2 lies in the open windows [0..3] and [1..4]: 2 * 2 = 4;
    # O's single disc makes no line and is off centre.
    assert float(c4.heuristic(state)) == pytest.approx(-4.0)


@needs_connect_four
def test_minimax_ties_are_broken_at_random(c4):
    # The centre column is full and the board is mirror-symmetric, so every best move has an
    # equally good mirror image: the anchor must pick among them, not always the first.
    state = play(c4, [3, 3, 3, 3, 3, 3])
    values = np.asarray(fast_jit(lambda s, k: minimax_action_values(c4, s, k, 1))(state, jax.random.key(0)))
    best = set(np.flatnonzero(values >= values.max() - 1e-3).tolist())
    assert len(best) >= 2
    act = fast_jit(jax.vmap(make_anchor(c4, "minimax:1"), in_axes=(0, None)))
    chosen = set(np.asarray(act(jax.random.split(jax.random.key(5), 64), state)).tolist())
    assert chosen == best


# ------------------------------------------------------------------------------------------
# tic-tac-toe: the solved table and the perfect player


def test_tic_tac_toe_table_known_values():
    env = sl.make("tic_tac_toe")
    table = tic_tac_toe_values()
    assert table.shape == (3**9,) and table.dtype == jnp.int8
    value = fast_jit(env.solved_value)
    assert int(value(env.reset(jax.random.key(0)))) == 0  # a draw
    # X took the centre, O an edge: X wins with perfect play; O to move loses.
    assert int(value(play(env, [4, 1]))) == 1
    assert int(value(play(env, [4, 1, 0]))) == -1
    # X holds opposite corners around O's centre: O must answer on an edge; a corner loses.
    state = play(env, [0, 4, 8])
    values = np.asarray(fast_jit(env.solved_action_values)(state, jax.random.key(1)))
    np.testing.assert_array_equal(values, [-2, 0, -1, 0, -2, 0, -1, 0, -2])
    # 5478 positions are reachable; the non-zero entries are among them.
    assert 0 < int(np.sum(np.asarray(table) != 0)) < 5478


def test_tic_tac_toe_minimax_depth9_agrees_with_the_table():
    env = sl.make("tic_tac_toe")
    # Positions with three empty cells (X to move), so a width of 3 is exact and depth 9
    # searches past the end of every line of play (finished states are absorbing).
    sequences = [
        [4, 0, 1, 7, 2, 6],  # O threatens 3 and 8: X loses
        [0, 4, 1, 2, 6, 3],  # X must block 5
        [4, 0, 8, 2, 1, 7],  # empties 3, 5, 6
        [0, 1, 4, 8, 2, 6],  # X must block 7
        [1, 0, 2, 4, 8, 3],  # O threatens 5 and 6: X loses
    ]
    # One unbatched program, run per position: a batch axis makes the deep program slower to
    # compile than the five runs take.
    search = fast_jit(lambda s, k: minimax_action_values(env, s, k, 9, width=3))
    exact = fast_jit(env.solved_action_values)
    for i, sequence in enumerate(sequences):
        state = play(env, sequence)
        key = jax.random.key(i)
        row_searched = np.asarray(search(state, key))
        row_solved = np.asarray(exact(state, key))
        legal = np.asarray(state.legal_action_mask)
        np.testing.assert_array_equal(np.sign(row_searched[legal]), row_solved[legal])
        # The search's best moves are among the solved best moves.
        best_searched = set(np.flatnonzero(legal & (row_searched == row_searched[legal].max())))
        best_solved = set(np.flatnonzero(legal & (row_solved == row_solved[legal].max())))
        assert best_searched <= best_solved


def test_perfect_tic_tac_toe_never_loses():
    """Against random play it never loses and mostly wins; against itself it always draws."""
    env = sl.make("tic_tac_toe")
    perfect = make_anchor(env, "perfect")
    random_act = make_anchor(env, "random")
    num_games = 800
    # Games 0..399: perfect against random; 400..799: perfect against itself. In each half the
    # perfect player (whose rewards are summed) moves first in the first 200 games.
    against_random = jnp.arange(num_games) < 400
    seat = ((jnp.arange(num_games) % 400) >= 200).astype(jnp.int32)

    def one_game(game_key, seat, against_random):
        reset_key, play_key = jax.random.split(game_key)

        def body(carry, step_key):
            state, total = carry
            a_key, b_key, env_key = jax.random.split(step_key, 3)
            opponent = jnp.where(against_random, random_act(b_key, state), perfect(b_key, state))
            action = jnp.where(state.current_player == seat, perfect(a_key, state), opponent)
            state = env.step(state, action, env_key)
            return (state, total + state.rewards[seat]), None

        start = (env.reset(reset_key), jnp.float32(0))
        (state, total), _ = jax.lax.scan(body, start, jax.random.split(play_key, 9))
        return total, state.terminated

    games = fast_jit(jax.vmap(one_game))
    totals, finished = games(jax.random.split(jax.random.key(0), num_games), seat, against_random)
    totals = np.asarray(totals)
    assert bool(jnp.all(finished))
    assert totals.min() >= 0.0
    assert (totals[:200] == 1).mean() > 0.9  # moving first, it almost always beats random play
    assert (totals[200:400] == 1).mean() > 0.6
    np.testing.assert_array_equal(totals[400:], 0.0)


def test_every_perfect_line_is_counted_and_only_bad_play_loses_them():
    env = sl.make("tic_tac_toe")
    values = jax.jit(lambda state: env.solved_action_values(state, jax.random.key(0)))

    def best(state) -> int:  # deterministic perfect play: the first optimal move
        return int(np.argmax(np.asarray(values(state))))

    def lowest_cell(state) -> int:
        return int(np.flatnonzero(np.asarray(state.legal_action_mask))[0])

    out = anchors.lines_against_perfect(env, best)
    assert set(out) == {"first", "second"}
    assert sorted(out["first"]) == sorted(["empty"] + [str(m) for m in range(9)])
    for rows in out.values():
        assert all(r["losses"] == 0 and r["wins"] == 0 and r["lines"] == r["draws"] > 0 for r in rows.values())
    # Second from the empty board, the perfect side opens anywhere: at least 9 lines.
    assert out["second"]["empty"]["lines"] >= 9
    bad = anchors.lines_against_perfect(env, lowest_cell)
    assert sum(r["losses"] for rows in bad.values() for r in rows.values()) > 0


def test_perfect_tic_tac_toe_takes_a_win_and_varies_its_moves():
    env = sl.make("tic_tac_toe")
    act = fast_jit(jax.vmap(make_anchor(env, "perfect"), in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(4), 200)
    # X has 0 and 1; O has 3 and 4: X must complete the top row at 2 (not block at 5).
    assert set(np.asarray(act(keys, play(env, [0, 3, 1, 4]))).tolist()) == {2}
    # Every first move draws, so the opening varies.
    openings = set(np.asarray(act(keys, env.reset(jax.random.key(0)))).tolist())
    assert openings == set(range(9))


# ------------------------------------------------------------------------------------------
# Heuristic registry


def test_register_heuristic_is_used_and_clipped():
    env = sl.make("tic_tac_toe")
    state = play(env, [4])

    def prefers_cell_zero(env_, s):
        # From the leaf mover's view: the opponent holding cell 0 is (hugely) bad.
        taken = s.observation[0, 0, 1]
        return -1e9 * taken

    try:
        register_heuristic("tic_tac_toe", prefers_cell_zero)
        values = np.asarray(fast_jit(lambda s, k: minimax_action_values(env, s, k, 1))(state, jax.random.key(0)))
    finally:
        register_heuristic("tic_tac_toe", anchors.zero_heuristic)
    assert values[0] == anchors.HEURISTIC_BOUND  # clipped, still below a decided win
    assert np.all(values[[1, 2, 3, 5, 6, 7, 8]] == 0.0)
    assert values[4] < -WIN_SCORE  # occupied: excluded
    with pytest.raises(UserError, match="callable"):
        register_heuristic("tic_tac_toe", 3)


# ------------------------------------------------------------------------------------------
# othello


@pytest.fixture(scope="module")
def othello_openings():
    """64 othello positions after 6 to 20 random plies (live ones only) and their env."""
    env = sl.make("othello")
    act = make_anchor(env, "random")

    def rollout(key):
        def body(state, k):
            a_key, s_key = jax.random.split(k)
            return env.step(state, act(a_key, state), s_key), state

        reset_key, play_key = jax.random.split(key)
        _, states = jax.lax.scan(body, env.reset(reset_key), jax.random.split(play_key, 20))
        return jax.tree.map(lambda x: x[6:], states)

    states = fast_jit(jax.vmap(rollout))(jax.random.split(jax.random.key(0), 8))
    states = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), states)
    live = np.flatnonzero(~np.asarray(states.terminated | states.truncated))[:64]
    return env, jax.tree.map(lambda x: x[live], states)


@needs_othello
def test_othello_heuristic_is_zero_at_the_symmetric_start(othello_openings):
    env, _ = othello_openings
    start = fast_jit(env.reset)(jax.random.key(0))
    assert float(fast_jit(env.heuristic)(start)) == 0.0


@needs_othello
def test_othello_depth1_values_are_the_negated_child_heuristic(othello_openings):
    env, states = othello_openings
    n = states.current_player.shape[0]
    keys = jax.random.split(jax.random.key(1), n)
    values = np.asarray(fast_jit(jax.vmap(lambda s, k: minimax_action_values(env, s, k, 1, width=65)))(states, keys))

    def direct(state, key):
        children = jax.vmap(lambda a: env.step(state, a, key))(jnp.arange(65))
        h = jax.vmap(env.heuristic)(children)
        return -h, children.terminated

    expected, done = fast_jit(jax.vmap(direct))(states, keys)
    expected, done = np.asarray(expected), np.asarray(done)
    mask = np.asarray(states.legal_action_mask)
    check = mask & ~done
    assert check.sum() > 300
    np.testing.assert_allclose(values[check], expected[check], rtol=0, atol=1e-3)
    assert np.all(values[~mask] < -WIN_SCORE)


@needs_othello
def test_othello_minimax_usually_takes_an_available_corner(othello_openings):
    env, states = othello_openings
    n = states.current_player.shape[0]
    chosen = np.asarray(fast_jit(jax.vmap(make_anchor(env, "minimax:1")))(jax.random.split(jax.random.key(2), n), states))
    assert np.all(np.asarray(states.legal_action_mask)[np.arange(n), chosen])
    corners = np.array([0, 7, 56, 63])
    has_corner = np.asarray(states.legal_action_mask)[:, corners].any(-1)
    if has_corner.sum() >= 3:
        assert np.isin(chosen[has_corner], corners).mean() >= 0.8


# ------------------------------------------------------------------------------------------
# Kuhn poker


@needs_kuhn
def test_kuhn_exploitability_of_uniform_matches_openspiel():
    uniform = np.full((2, 12, 2), 0.5)
    assert kuhn_exploitability(uniform) == pytest.approx(0.458333, abs=1e-4)


@needs_kuhn
@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0 / 6.0, 0.25, 1.0 / 3.0])
def test_kuhn_equilibrium_family_is_unexploitable(alpha):
    assert kuhn_exploitability(kuhn_equilibrium_policy(alpha)) == pytest.approx(0.0, abs=1e-6)


@needs_kuhn
def test_kuhn_exploitability_of_bad_policies_is_large():
    always_bet = np.zeros((2, 12, 2))
    always_bet[..., 1] = 1.0
    never_bet = np.zeros((2, 12, 2))
    never_bet[..., 0] = 1.0
    assert kuhn_exploitability(always_bet) > 0.3
    assert kuhn_exploitability(never_bet) > 0.3
    # Perturbing an equilibrium makes it exploitable, continuously.
    perturbed = kuhn_equilibrium_policy(0.2).astype(np.float64)
    perturbed[1, :, :] = 0.5 * perturbed[1] + 0.25
    assert 0.01 < kuhn_exploitability(perturbed) < kuhn_exploitability(np.full((2, 12, 2), 0.5))


@needs_kuhn
def test_kuhn_policy_table_is_validated():
    with pytest.raises(UserError, match="shape"):
        kuhn_exploitability(np.full((2, 6, 2), 0.5))
    bad = np.full((2, 12, 2), 0.5)
    bad[0, 0] = (0.9, 0.3)
    with pytest.raises(UserError, match="probabilities"):
        kuhn_exploitability(bad)


@needs_kuhn
def test_kuhn_perfect_anchor_plays_the_equilibrium():
    from superlearner.envs import kuhn_poker as kp

    env = kp.KuhnPoker()
    act = fast_jit(jax.vmap(make_anchor(env, "perfect"), in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(0), 400)
    start = env.reset_to_deal(jnp.array([2, 0]))  # player 0 K, player 1 J
    facing_bet = env.step(start, jnp.int32(kp.BET), jax.random.key(1))
    # Player 1 with J facing a bet always folds.
    assert set(np.asarray(act(keys, facing_bet)).tolist()) == {kp.PASS}
    # Player 0 with K bets with probability 3 * alpha = 1/2 (alpha = 1/6).
    bets = np.asarray(act(keys, start)).mean()
    assert 0.4 < bets < 0.6


def test_the_tactics_audit_finds_wins_in_one_and_the_moves_that_allow_one():
    import importlib.util
    from pathlib import Path

    import jax
    import numpy as np

    import superlearner as sl

    spec = importlib.util.spec_from_file_location("tactics", Path(__file__).parents[1] / "scripts" / "tactics.py")
    tactics_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tactics_module)
    env = sl.make("connect_four")
    tactics = tactics_module.one_move_tactics(env)
    state = env.reset(jax.random.key(0))
    for column in (0, 6, 1, 6, 2):  # the first player has three in the bottom row, column 3 open
        state = env.step(state, column, jax.random.key(0))
    wins, unsafe = (np.asarray(x)[0] for x in tactics(jax.tree.map(lambda a: a[None], state)))
    assert not wins.any()
    np.testing.assert_array_equal(unsafe, np.arange(7) != 3)  # only the block at 3 is safe
    state = env.step(state, 6, jax.random.key(0))  # the second player now threatens column 6
    wins, unsafe = (np.asarray(x)[0] for x in tactics(jax.tree.map(lambda a: a[None], state)))
    np.testing.assert_array_equal(wins, np.arange(7) == 3)
    # Winning at 3 ends the game; blocking at 6 is safe; anything else lets column 6 win.
    np.testing.assert_array_equal(unsafe, ~np.isin(np.arange(7), [3, 6]))
