"""Kuhn poker: payoffs of every deal and history, alternation, hidden cards, the deal, info states."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.envs import kuhn_poker as kp
from superlearner.envs.kuhn_poker import KuhnPoker

J, Q, K = 0, 1, 2

# Player 0's payoff for each deal (player 0's card, player 1's card) and terminal history,
# worked out by hand: showdowns go to the higher card for 1 (pp) or 2 (a called bet); a fold
# loses the ante of 1.
PAYOFFS = {
    (J, Q): {"pp": -1, "pbp": -1, "pbb": -2, "bp": +1, "bb": -2},
    (J, K): {"pp": -1, "pbp": -1, "pbb": -2, "bp": +1, "bb": -2},
    (Q, J): {"pp": +1, "pbp": -1, "pbb": +2, "bp": +1, "bb": +2},
    (Q, K): {"pp": -1, "pbp": -1, "pbb": -2, "bp": +1, "bb": -2},
    (K, J): {"pp": +1, "pbp": -1, "pbb": +2, "bp": +1, "bb": +2},
    (K, Q): {"pp": +1, "pbp": -1, "pbb": +2, "bp": +1, "bb": +2},
}
NON_TERMINAL = ("", "p", "b", "pb")


@pytest.fixture(scope="module")
def env():
    return KuhnPoker()


@pytest.fixture(scope="module")
def step(env):
    return jax.jit(env.step)


def play(env, step, cards, history, seed=0):
    """The states after each action of ``history`` (a string of p/b) from the deal ``cards``."""
    states = [env.reset_to_deal(jnp.array(cards, jnp.int32))]
    keys = jax.random.split(jax.random.key(seed), max(len(history), 1))
    for letter, key in zip(history, keys):
        states.append(step(states[-1], env.text_to_action(letter), key))
    return states


def test_registry_builds_kuhn_poker():
    env = sl.make("kuhn_poker")
    assert isinstance(env, KuhnPoker)
    assert env.num_players == 2 and env.num_actions == 2 and env.zero_sum
    assert env.observation_shape == (9,)


def test_deals_table_is_the_six_ordered_deals():
    assert sorted(map(tuple, kp.DEALS.tolist())) == sorted(PAYOFFS)


@pytest.mark.parametrize("cards", sorted(PAYOFFS))
def test_payoff_of_every_terminal_history(env, step, cards):
    for history, p0 in PAYOFFS[cards].items():
        states = play(env, step, cards, history)
        for before in states[:-1]:
            assert not bool(before.terminated)
            np.testing.assert_array_equal(before.rewards, [0.0, 0.0])
        final = states[-1]
        assert bool(final.terminated), history
        assert not bool(final.truncated)
        np.testing.assert_array_equal(final.rewards, [p0, -p0], err_msg=f"{cards} {history}")
        # The end is absorbing: nothing more is paid.
        after = step(final, jnp.int32(1), jax.random.key(9))
        np.testing.assert_array_equal(after.rewards, [0.0, 0.0])
        assert bool(after.terminated)


def test_payoffs_batched_under_vmap(env):
    cases = [(c, h) for c in sorted(PAYOFFS) for h in PAYOFFS[c]]
    cards = jnp.array([c for c, _ in cases], jnp.int32)
    actions = jnp.array([[env.text_to_action(a) for a in h.ljust(3, "p")] for _, h in cases], jnp.int32)

    def episode_return(cards, actions, key):
        state = env.reset_to_deal(cards)
        total = jnp.zeros((2,), jnp.float32)
        for t, step_key in enumerate(jax.random.split(key, 3)):
            # Steps past the end are absorbing, so padding the history with passes is harmless.
            state = env.step(state, actions[t], step_key)
            total = total + state.rewards
        return total

    keys = jax.random.split(jax.random.key(0), len(cases))
    totals = jax.jit(jax.vmap(episode_return))(cards, actions, keys)
    expected = np.array([[PAYOFFS[c][h], -PAYOFFS[c][h]] for c, h in cases], np.float32)
    np.testing.assert_array_equal(totals, expected)


def test_players_alternate_starting_with_player_0(env, step):
    for history in ("pbb", "pbp", "bb", "bp", "pp"):
        states = play(env, step, (Q, K), history)
        movers = [int(s.current_player) for s in states[:-1]]
        assert movers == [t % 2 for t in range(len(history))]
        for s in states[:-1]:
            np.testing.assert_array_equal(s.legal_action_mask, [True, True])


def test_observation_layout(env, step):
    state = play(env, step, (K, J), "pb")[-1]
    assert int(state.current_player) == 0
    # K one-hot, then decision point 0 = pass, point 1 = bet, point 2 not reached.
    np.testing.assert_array_equal(state.observation, [0, 0, 1, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(env.observe(state, jnp.int32(1)), [1, 0, 0, 1, 0, 0, 1, 0, 0])
    assert state.observation.dtype == jnp.float32


@pytest.mark.parametrize("player", [0, 1])
def test_observation_does_not_depend_on_opponent_card(env, step, player):
    observe = jax.jit(env.observe)
    for history in NON_TERMINAL + tuple(PAYOFFS[(J, Q)]):
        views = {}
        for cards in PAYOFFS:
            state = play(env, step, cards, history)[-1]
            view = np.asarray(observe(state, jnp.int32(player)))
            own = cards[player]
            if own in views:
                np.testing.assert_array_equal(view, views[own], err_msg=f"{history} {cards}")
            views[own] = view
        # Different own cards are told apart.
        assert len({v.tobytes() for v in views.values()}) == 3


def test_deal_is_uniform_over_six_deals(env):
    num_keys = 6000
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(1), num_keys))
    cards = np.asarray(states.cards)
    assert np.all(cards[:, 0] != cards[:, 1])
    assert cards.min() >= 0 and cards.max() <= 2
    counts = np.bincount(cards[:, 0] * 3 + cards[:, 1], minlength=9)
    observed = counts[[3 * a + b for a, b in sorted(PAYOFFS)]]
    assert observed.sum() == num_keys
    # Each count is Binomial(6000, 1/6): mean 1000, sd ~29; 5 sd bounds.
    assert np.all(np.abs(observed - 1000) < 145), observed


def test_info_state_indices_are_distinct_and_stable(env, step):
    index = jax.jit(kp.info_state_index)
    for player in (0, 1):
        seen = {}
        for cards in PAYOFFS:
            for history in NON_TERMINAL:
                state = play(env, step, cards, history)[-1]
                i = int(index(state, jnp.int32(player)))
                info = (cards[player], history)
                if info in seen:
                    assert seen[info] == i
                seen[info] = i
                assert kp.INFO_STATE_CARD[i] == cards[player]
                assert kp.INFO_STATE_HISTORY[i] == history
                if kp.INFO_STATE_PLAYER[i] == player:
                    assert int(state.current_player) == player
        assert len(seen) == kp.NUM_INFO_STATES == 12
        assert sorted(seen.values()) == list(range(12))
    assert env.num_info_states == 12
    for player in (0, 1):
        assert len(kp.info_states_of(player)) == 6
    assert kp.info_state_name(int(np.flatnonzero(
        (kp.INFO_STATE_CARD == K) & (np.array(kp.INFO_STATE_HISTORY) == "pb"))[0])) == "K:pb"


def test_info_state_index_is_minus_one_after_the_end(env, step):
    for history in PAYOFFS[(Q, J)]:
        state = play(env, step, (Q, J), history)[-1]
        assert int(kp.info_state_index(state, jnp.int32(0))) == -1


def test_info_state_index_under_vmap(env):
    states = jax.vmap(env.reset_to_deal)(jnp.asarray(kp.DEALS))
    got = jax.jit(jax.vmap(kp.info_state_index, in_axes=(0, None)))(states, jnp.int32(1))
    np.testing.assert_array_equal(got, 4 * kp.DEALS[:, 1])


def test_action_text_round_trip(env):
    for text in ("p", "pass", "check", "fold", " Fold "):
        assert env.text_to_action(text) == 0
    for text in ("b", "bet", "call", "CALL"):
        assert env.text_to_action(text) == 1
    assert [env.action_to_text(a) for a in (0, 1)] == ["p", "b"]
    with pytest.raises(ValueError):
        env.text_to_action("raise")


def test_render_text_shows_only_the_mover_card(env, step):
    text = env.render_text(play(env, step, (J, K), "")[0])
    assert "player 0" in text and "J" in text and "K" not in text
    text = env.render_text(play(env, step, (J, K), "b")[-1])
    assert "player 1" in text and "K" in text and "J" not in text and "history: b" in text
    end = env.render_text(play(env, step, (J, K), "bb")[-1])
    assert "showdown" in end and "-2" in end
    fold = env.render_text(play(env, step, (J, K), "pbp")[-1])
    assert "player 0 folds" in fold


@pytest.mark.parametrize("a,b", list(itertools.combinations(range(3), 2)))
def test_higher_card_wins_showdown_regardless_of_seat(env, step, a, b):
    low, high = min(a, b), max(a, b)
    p0_high = play(env, step, (high, low), "bb")[-1]
    p1_high = play(env, step, (low, high), "bb")[-1]
    np.testing.assert_array_equal(p0_high.rewards, [2, -2])
    np.testing.assert_array_equal(p1_high.rewards, [-2, 2])


def test_the_env_declares_hidden_information_and_its_exact_solution(env):
    from superlearner.selfplay.search import searchable

    assert env.perfect_information is False and not searchable(env)
    views = env.info_states()
    assert views.observations.shape == (kp.NUM_INFO_STATES, 9)
    np.testing.assert_array_equal(views.players, kp.INFO_STATE_PLAYER)
    # Row i is the observation of the player acting in information state i.
    for index in range(kp.NUM_INFO_STATES):
        card, history = int(kp.INFO_STATE_CARD[index]), kp.INFO_STATE_HISTORY[index]
        player = int(kp.INFO_STATE_PLAYER[index])
        cards = (card, (card + 1) % 3) if player == 0 else ((card + 1) % 3, card)
        state = play(env, jax.jit(env.step), cards, history)[-1]
        assert int(kp.info_state_index(state, player)) == index
        np.testing.assert_array_equal(views.observations[index], np.asarray(state.observation))
    # OpenSpiel's value for uniform play, 0 for an equilibrium, and a mixture of a policy with
    # itself is the policy.
    uniform = np.full((kp.NUM_INFO_STATES, 2), 0.5)
    assert env.exploitability(uniform) == pytest.approx(0.458333, abs=1e-5)
    table = kp.equilibrium_policy()
    acting = np.stack([table[kp.INFO_STATE_PLAYER[i], i] for i in range(kp.NUM_INFO_STATES)])
    assert env.exploitability(acting) == pytest.approx(0.0, abs=1e-6)
    assert env.exploitability(np.stack([acting, acting, uniform]), np.array([0.4, 0.6, 0.0])) == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < env.exploitability(np.stack([acting, uniform])) < 0.458333
