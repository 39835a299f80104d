"""Self-play rollouts: seats, perspective and signs, on real games."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superlearner.config import config_from_dict, load_config
from superlearner.engine import make_engine
from superlearner.learners import ppo_selfplay as selfplay
from superlearner.selfplay import opponents
from superlearner.selfplay.league import SELF
from superlearner.learners.ppo_selfplay import collect_self_play, opponent_policy, outcome_score


def _member0(tree):
    """Member 0 of a population-batched pytree."""
    return jax.tree.map(lambda a: a[0], tree)


def _engine(env_id="tic_tac_toe", **league):
    raw = {
        "env": {"id": env_id},
        "learner": {"num_envs": 16, "num_steps": 24, "num_minibatches": 2, "num_epochs": 1, "hidden_sizes": [16]},
        "league": {"capacity": 4, "snapshot_every": 1, **league},
        "train": {"total_env_steps": 16 * 24 * 4},
        "log": {"tensorboard": False},
    }
    return make_engine(config_from_dict(raw))


def test_learner_always_acts_at_its_own_decisions_and_rewards_have_its_sign():
    engine = _engine(weight_self=1.0, weight_uniform=1.0)
    state = engine.init(0)
    params, league, matches = _member0(state.learner.params), _member0(state.league), _member0(state.env_state)
    collect = jax.jit(lambda m, l, k: collect_self_play(engine.env, engine.learner, params, l, m, _member0(state.env_params), k, 24))
    seats = []
    for seed in range(3):
        start = matches
        matches, league, rollout, stats = collect(matches, league, jax.random.key(seed))
        obs = np.asarray(rollout.observation)  # [T, N, 3, 3, 2]: mover's marks, then the opponent's
        own, other = obs[..., 0].sum((-1, -2)), obs[..., 1].sum((-1, -2))
        # At a learner decision, the learner has as many marks as the opponent (first seat) or one
        # fewer (second seat): the observation is the learner's own view.
        assert np.all((own == other) | (own == other - 1))
        seats.append(np.asarray(start.seat))
        # Rewards are the learner's: +1/-1 only at the end of a game, 0 otherwise.
        reward, cont = np.asarray(rollout.reward), np.asarray(rollout.continue_)
        assert np.all(reward[cont == 1] == 0)
        assert set(np.unique(reward[cont == 0])) <= {-1.0, 0.0, 1.0}
        # Transitions of finished games bootstrap from nothing.
        assert np.all(np.asarray(rollout.v_tp1)[cont == 0] == 0)
        assert float(stats.games) == float((cont == 0).sum())
        # The scores the league records agree with the rollout's final rewards.
        np.testing.assert_allclose(float(stats.score), np.mean(outcome_score(reward[cont == 0])), atol=1e-6)
    seats = np.concatenate(seats)
    assert 0.25 < seats.mean() < 0.75, "the learner must sit in both seats"


def test_against_a_random_snapshot_the_second_seat_moves_after_the_opening_reply():
    engine = _engine()
    state = engine.init(1)
    matches = _member0(state.env_state)
    game = matches.game
    # Every game starts at a learner decision, with the opponent's opening move already made
    # where the learner sits second.
    np.testing.assert_array_equal(np.asarray(game.current_player), np.asarray(matches.seat))
    np.testing.assert_array_equal(np.asarray(game.step_count), np.asarray(matches.seat))


def _distinct_snapshots(league):
    """The league with every slot's network perturbed differently, so games reading another
    game's network are caught."""
    keys = jax.random.split(jax.random.key(7), league.capacity)
    return league.replace(params=jax.tree.map(
        lambda x: x + jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(keys), league.params
    ))


def _assert_own_opponents_logits(engine, params, league, matches, logits):
    game = matches.game
    for i, slot in enumerate(np.asarray(matches.opponent)):
        own = params if slot == SELF else jax.tree.map(lambda x: x[slot], league.params)
        expected = engine.learner.policy(own, game.observation[i], game.legal_action_mask[i])[0]
        np.testing.assert_allclose(logits[i], np.asarray(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dense", [True, False])
def test_each_game_gets_the_logits_of_its_own_opponent(dense, monkeypatch):
    # Both ways of running the opponents (every network on every game, or each game's network
    # gathered) must give each game its own opponent's policy.
    monkeypatch.setattr(opponents, "DENSE_OPPONENTS_MAX", 64 if dense else 0)
    engine = _engine()
    state = engine.init(2)
    params, league, matches = _member0(state.learner.params), _member0(state.league), _member0(state.env_state)
    league = _distinct_snapshots(league)
    opponent = np.arange(matches.seat.shape[0]) % (league.capacity + 1) - 1  # SELF, then every slot
    matches = matches.replace(opponent=jnp.asarray(opponent, jnp.int32))
    logits = np.asarray(opponent_policy(engine.learner, league, params, matches)(matches))
    _assert_own_opponents_logits(engine, params, league, matches, logits)
    # The snapshots differ, so a game reading another game's network would have been caught.
    assert len({tuple(np.round(row[np.isfinite(row)], 4)) for row in logits}) > league.capacity


def test_with_opponent_groups_each_game_gets_the_logits_of_its_own_opponent():
    engine = _engine(opponent_groups=4)
    state = engine.init(2)
    params, league, matches = _member0(state.learner.params), _member0(state.league), _member0(state.env_state)
    league = _distinct_snapshots(league)
    # Four groups of four games; each group's pair is (previous, current), and its games play
    # one or the other.
    pairs = np.array([[SELF, 0], [1, 2], [3, SELF], [2, 2]])
    plays_current = np.array([0, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 1], bool)
    pair = np.repeat(pairs, 4, axis=0)
    opponent = np.where(plays_current, pair[:, 1], pair[:, 0])
    matches = matches.replace(opponent=jnp.asarray(opponent, jnp.int32), pair=jnp.asarray(pair, jnp.int32))
    logits = np.asarray(opponent_policy(engine.learner, league, params, matches, groups=4)(matches))
    _assert_own_opponents_logits(engine, params, league, matches, logits)
    assert len({tuple(np.round(row[np.isfinite(row)], 4)) for row in logits}) >= 5


def test_opponent_groups_keep_each_games_opponent_and_share_the_draw_in_a_group():
    # Pure past-snapshot play over a league of four distinct slots, 16 games in 4 groups.
    engine = _engine(opponent_groups=4, weight_self=0.0, weight_uniform=1.0, weight_pfsp_hard=0.0)
    state = engine.init(0)
    params, league, matches = _member0(state.learner.params), _member0(state.league), _member0(state.env_state)
    league = league.replace(added_at=jnp.arange(league.capacity, dtype=jnp.int32))  # every slot filled
    collect = jax.jit(lambda m, l, k: collect_self_play(
        engine.env, engine.learner, params, l, m, _member0(state.env_params), k, 4, groups=4))
    draws = set()
    for seed in range(12):
        before = matches
        matches, _, rollout, _ = collect(matches, league, jax.random.key(seed))
        pair = np.asarray(matches.pair)
        # One pair per group, and every game plays one of its group's pair.
        assert np.all(pair.reshape(4, 4, 2) == pair.reshape(4, 4, 2)[:, :1])
        assert np.all((np.asarray(matches.opponent) == pair[:, 0]) | (np.asarray(matches.opponent) == pair[:, 1]))
        # A game that went on through the rollout kept its opponent.
        went_on = np.asarray(rollout.continue_).all(axis=0)
        np.testing.assert_array_equal(np.asarray(matches.opponent)[went_on], np.asarray(before.opponent)[went_on])
        # A game begun in this rollout plays its group's current opponent.
        length = np.asarray(matches.length)
        began = ~went_on & (length <= 2 * 4)
        np.testing.assert_array_equal(np.asarray(matches.opponent)[began], pair[began, 1])
        draws.update(pair[::4, 1].tolist())
    # Over the rollouts the groups drew every slot (and never the current self).
    assert draws == {0, 1, 2, 3}


def test_opponent_groups_must_divide_the_games():
    from superlearner.config import validate_semantics
    from superlearner.errors import ConfigError

    config = load_config("connect_four_selfplay", ["league.opponent_groups=3"])
    with pytest.raises(ConfigError, match="opponent_groups=3 must divide learner.num_envs=128"):
        validate_semantics(config)
    validate_semantics(load_config("connect_four_selfplay", ["league.opponent_groups=8"]))


def test_kuhn_poker_rewards_are_the_learners_chips():
    engine = _engine("kuhn_poker", weight_self=1.0)
    state = engine.init(0)
    out = jax.jit(lambda k: collect_self_play(
        engine.env, engine.learner, _member0(state.learner.params), _member0(state.league), _member0(state.env_state),
        _member0(state.env_params), k, 24))(jax.random.key(3))
    reward, cont = np.asarray(out[2].reward), np.asarray(out[2].continue_)
    assert set(np.unique(reward[cont == 0])) <= {-2.0, -1.0, 1.0, 2.0}
    # Against itself the learner's expected result is zero: over many games, near zero.
    assert abs(reward[cont == 0].mean()) < 0.35


def test_random_opening_plies_give_varied_live_starts_at_a_learner_decision():
    from superlearner.learners.ppo_selfplay import new_matches

    engine = _engine()
    state = engine.init(0)
    league, env_params = _member0((state.league, state.env_params))
    fresh = jax.jit(lambda k: new_matches(engine.env, league, k, 16, env_params, opening_moves=3))
    plies = np.concatenate([np.asarray(fresh(jax.random.key(s)).game.step_count) for s in range(8)])
    assert set(np.unique(plies)) == {0, 1, 2, 3}
    # Random plies belong to no player: the game lengths count only the players' moves.
    assert int(fresh(jax.random.key(0)).length.sum()) == 0
    # Training with openings keeps every game at a learner decision between rollouts.
    engine = _engine(weight_self=1.0, opening_moves=3)
    state = engine.init(2)
    matches, _, rollout, _ = jax.jit(lambda k: collect_self_play(
        engine.env, engine.learner, _member0(state.learner.params), _member0(state.league), _member0(state.env_state),
        _member0(state.env_params), k, 24, 3))(jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(matches.game.current_player), np.asarray(matches.seat))
    assert not np.any(np.asarray(matches.game.terminated))


def test_payoff_row_is_a_mean_return_against_each_filled_slot_with_paired_deals():
    from superlearner.selfplay.arena import from_policy, make_match_fn
    from superlearner.selfplay.arena import make_payoff_fn

    engine = _engine("kuhn_poker")
    state = engine.init(0)
    league, params = _member0(state.league), _member0(state.learner.params)
    row = jax.jit(make_payoff_fn(engine.env, engine.learner, 64))(league, params, jax.random.key(0))
    assert row.shape == (4,)
    filled = np.asarray(league.filled)
    np.testing.assert_array_equal(np.asarray(row)[~filled], 0.0)
    assert np.all(np.abs(np.asarray(row)) <= 2.0)
    # Paired seats: game i + G/2 is dealt game i's cards with the seats swapped, so one greedy
    # policy against itself wins back in the second half exactly what it lost in the first.
    player = from_policy(engine.learner.policy, params, greedy=True)
    play = jax.jit(make_match_fn(engine.env, player, player, 64, paired_seats=True))
    returns, seat = play(jax.random.key(5))
    np.testing.assert_array_equal(np.asarray(seat), [0] * 32 + [1] * 32)
    np.testing.assert_allclose(np.asarray(returns[:32]), -np.asarray(returns[32:]))
    assert np.any(np.asarray(returns) != 0)


# ---------------------------------------------------------------------------------------------
# Learning outcomes: small runs of the presets that must reach a stated level.


@pytest.mark.slow
def test_kuhn_poker_league_policy_becomes_nearly_unexploitable(tmp_path):
    """The PSRO-style preset, cut to 1.6e6 steps: the league's policy (its snapshots mixed by the
    Nash meta-strategy) must be exploitable by less than 0.05 (uniform play: 0.458), measured
    exactly, and the eval command must measure the same mixture. At 6e5 steps it is still near
    0.05 (0.04-0.06, varying with the CPU's floating point); at 1.6e6 seeds 0-3 ended at 0.007-0.032."""
    from superlearner.run.agent import load_agent, load_train_state
    from superlearner.cli.players import best_response_report as kuhn_best_response_report
    from superlearner.run.trainer import train

    overrides = ["train.total_env_steps=1600000", "train.iterations_per_chunk=100", "log.tensorboard=false"]
    result = train(load_config("kuhn_poker_selfplay", overrides), tmp_path / "run", show_progress=False)
    assert result.completed
    assert result.last_metrics["exploitability_league"][0] < 0.05, result.last_metrics
    agent = load_agent(tmp_path / "run" / "checkpoints" / str(result.iteration))
    _, state, _ = load_train_state(tmp_path / "run" / "checkpoints" / str(result.iteration))
    league = jax.tree.map(lambda x: x[0], state.league)
    report = kuhn_best_response_report(agent.env, agent.engine.learner.policy, agent.params, league)
    assert report["exploitability_league"] == pytest.approx(result.last_metrics["exploitability_league"][0], abs=1e-6)


@pytest.mark.slow
def test_tic_tac_toe_self_play_learns_to_beat_random_and_hold_perfect_play(tmp_path):
    """The tic_tac_toe preset, cut to 6e5 steps (the full 3.2e6 loses no line of perfect play):
    the greedy agent must score above 0.8 against random play and lose under 80% of its games
    against perfect play (both seats, every first move; an untrained agent loses nearly all)."""
    from superlearner.run.trainer import train

    overrides = [
        "train.total_env_steps=600000", "train.iterations_per_chunk=100", "log.tensorboard=false",
        "arena.anchors=[random, perfect]",
    ]
    result = train(load_config("tic_tac_toe_selfplay", overrides), tmp_path / "run", show_progress=False)
    assert result.completed
    metrics = result.last_metrics
    strength = {k: v for k, v in metrics.items() if k.startswith(("vs_", "lost_vs_"))}
    assert metrics["vs_random"][0] > 0.8, strength
    assert metrics["lost_vs_perfect"][0] < 0.8, strength


@pytest.mark.slow
def test_pbt_in_self_play_ranks_members_by_their_score_against_the_anchors():
    """Two members, one that can hardly learn (step size 1e-7): each scores about one half
    against its own league, so the training return cannot tell them apart. Ranked by games
    against the random anchor, the first generation must replace the weak member with a copy
    of the trained one (weights, and its step size, which explore does not touch here)."""
    from superlearner.engine import initial_state

    overrides = [
        "train.population_size=2", "hparams.learning_rate=[1e-7, 3e-3]", "learner.anneal_lr=false",
        "learner.num_envs=64", "meta.kind=pbt", "meta.adapt=[ent_coef]", "meta.progress=anchors",
        "meta.progress_games=128", "meta.interval=20", "meta.ready_iterations=20",
        "meta.truncation_fraction=0.5", "arena.anchors=[random]", "train.total_env_steps=100000",
    ]
    engine = make_engine(load_config("tic_tac_toe_selfplay", overrides))
    state, metrics = jax.jit(engine.train_chunk, static_argnums=1)(initial_state(engine, 0), 20)
    np.testing.assert_array_equal(np.asarray(metrics["meta_exploited"])[-1], [1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(metrics["meta_exploited"])[:-1], 0.0)  # one generation
    np.testing.assert_allclose(np.asarray(state.hparams.learning_rate), [3e-3, 3e-3])
    for leaf in jax.tree.leaves(state.learner.params):
        np.testing.assert_array_equal(np.asarray(leaf[0]), np.asarray(leaf[1]))


def test_anchor_progress_needs_a_two_player_game_and_anchors():
    from superlearner.config import validate_semantics
    from superlearner.errors import ConfigError

    with pytest.raises(ConfigError, match="two-player game"):
        make_engine(load_config("cartpole_pbt", ["meta.progress=anchors"]))
    pbt = ["meta.kind=pbt", "train.population_size=2", "meta.progress=anchors"]
    with pytest.raises(ConfigError, match="arena.anchors, which is empty"):
        validate_semantics(load_config("tic_tac_toe_selfplay", [*pbt, "arena.anchors=[]"]))
    with pytest.raises(ConfigError, match="meta.kind pbt or bandit"):
        validate_semantics(load_config("tic_tac_toe_selfplay", ["meta.progress=anchors"]))
    validate_semantics(load_config("tic_tac_toe_selfplay", pbt))


def test_a_checkpoint_written_before_opponent_groups_restores_with_each_games_opponent_as_its_pair(tmp_path, monkeypatch):
    from superlearner.run import checkpoint

    engine = _engine()
    state = engine.init(0)
    # A checkpoint of the earlier layout: the matches hold no pair.
    flatten = checkpoint.flatten_state
    monkeypatch.setattr(checkpoint, "flatten_state", lambda tree: {
        k: v for k, v in flatten(tree).items() if k != ".env_state.pair"
    })
    writer = checkpoint.Checkpointer(tmp_path, asynchronous=False)
    writer.save(1, state, {})
    monkeypatch.setattr(checkpoint, "flatten_state", flatten)
    restored, _ = checkpoint.Checkpointer(tmp_path, read_only=True).restore(state)
    opponent = np.asarray(state.env_state.opponent)
    np.testing.assert_array_equal(np.asarray(restored.env_state.pair), np.stack([opponent, opponent], axis=-1))
    np.testing.assert_array_equal(np.asarray(restored.env_state.opponent), opponent)
    # Any other missing leaf is still refused.
    monkeypatch.setattr(checkpoint, "flatten_state", lambda tree: {
        k: v for k, v in flatten(tree).items() if k != ".env_state.seat"
    })
    checkpoint.Checkpointer(tmp_path / "b", asynchronous=False).save(1, state, {})
    monkeypatch.setattr(checkpoint, "flatten_state", flatten)
    with pytest.raises(checkpoint.CheckpointError, match="missing"):
        checkpoint.Checkpointer(tmp_path / "b", read_only=True).restore(state)


def test_league_opponents_sample_their_moves_at_the_opponent_temperature():
    from superlearner.selfplay.opponents import sample_moves as _sample

    p = np.array([0.1, 0.2, 0.7, 0.0])
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(p)), (20000, 4))  # the last move is illegal (-inf)
    for temperature in (1.0, 0.5):
        moves = np.asarray(_sample(jax.random.key(0), logits, temperature))
        expected = p ** (1 / temperature) / np.sum(p ** (1 / temperature))
        np.testing.assert_allclose(np.bincount(moves, minlength=4) / moves.size, expected, atol=0.015)
    assert np.all(np.asarray(_sample(jax.random.key(1), logits, 0.0)) == 2)
