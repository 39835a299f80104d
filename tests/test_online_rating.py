"""The online rating: its Bradley-Terry fit, its tracking of a changing player, and the engine's
rating stage (measured in the chunk, checkpointed, read by the meta-controllers and `load_agent`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superlearner.selfplay.online_rating import RatingState, fit_bradley_terry, record_round
from superlearner.selfplay.ratings import bradley_terry


def _random_table(rng, num, games=20):
    true = rng.normal(0.0, 300.0, num)
    points = np.zeros((num, num))
    for i in range(num):
        for j in range(i + 1, num):
            if j == i + 1 or rng.random() < 0.5:  # a connected, incomplete design
                p = 1.0 / (1.0 + 10.0 ** ((true[j] - true[i]) / 400.0))
                wins = rng.binomial(games, p)
                points[i, j], points[j, i] = wins, games - wins
    return points


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_traced_fit_equals_the_host_bradley_terry(seed):
    rng = np.random.default_rng(seed)
    points = _random_table(rng, 7)
    names = [f"p{i}" for i in range(7)]
    host = {row.name: row for row in bradley_terry(names, points, anchor="p0", prior_sd=800.0)}
    ratings, stderr = jax.jit(fit_bradley_terry, static_argnums=2)(jnp.asarray(points, jnp.float32), jnp.ones(7, bool), 800.0)
    np.testing.assert_allclose(np.asarray(ratings), [host[n].rating for n in names], atol=0.05)
    np.testing.assert_allclose(np.asarray(stderr), [host[n].stderr for n in names], atol=0.05)


def test_inactive_players_are_left_out_of_the_fit():
    rng = np.random.default_rng(3)
    points = np.zeros((6, 6))
    points[:4, :4] = _random_table(rng, 4)
    active = jnp.asarray([True] * 4 + [False] * 2)
    ratings, stderr = fit_bradley_terry(jnp.asarray(points, jnp.float32), active, 1000.0)
    full, full_stderr = fit_bradley_terry(jnp.asarray(points[:4, :4], jnp.float32), jnp.ones(4, bool), 1000.0)
    np.testing.assert_allclose(np.asarray(ratings[:4]), np.asarray(full), atol=1e-3)
    np.testing.assert_allclose(np.asarray(stderr[:4]), np.asarray(full_stderr), atol=1e-3)
    assert np.all(np.asarray(ratings[4:]) == 0) and np.all(np.asarray(stderr[4:]) == 0)


def _empty_state(num_anchors, history):
    size = num_anchors + history
    return RatingState(points=jnp.zeros((size, size)), rounds=jnp.int32(0), ratings=jnp.zeros((size,)),
                       rating=jnp.float32(0), stderr=jnp.float32(jnp.nan),
                       scores=jnp.full((num_anchors + 1,), jnp.nan), previous={})


@pytest.mark.parametrize("seed", [0, 1])
def test_the_rating_tracks_a_player_that_improves_and_covers_its_true_strength(seed):
    """With the config's default history and prior, a player whose true Elo climbs from 0 to 1600
    plays anchors at 0, 400 and 800 and its previous round (binomial results); the newest round's
    95% interval must cover the true Elo in at least 85% of the rounds, and the estimate must
    keep rising once it beats every anchor (the chain of rounds, not the anchors, measures it)."""
    from superlearner.config import RatingConfig

    defaults = RatingConfig()
    rng = np.random.default_rng(seed)
    anchors = np.array([0.0, 400.0, 800.0])
    games, rounds = 64, 80
    true = np.linspace(0.0, 1600.0, rounds)
    step = jax.jit(lambda s, a, p: record_round(s, a, p, games, defaults.prior_sd))
    state, covered, estimates = _empty_state(3, defaults.history), 0, []
    for r in range(rounds):
        expected = 1.0 / (1.0 + 10.0 ** ((anchors - true[r]) / 400.0))
        vs_anchors = rng.binomial(games, expected).astype(np.float32)
        previous = true[r - 1] if r else 0.0
        vs_previous = rng.binomial(games, 1.0 / (1.0 + 10.0 ** ((previous - true[r]) / 400.0)))
        state = step(state, jnp.asarray(vs_anchors), jnp.float32(vs_previous))
        rating, stderr = float(state.rating), float(state.stderr)
        covered += abs(rating - true[r]) <= 1.96 * stderr
        estimates.append(rating)
    assert covered >= 0.85 * rounds, covered
    late = np.asarray(estimates[-20:])
    assert abs(late.mean() - true[-20:].mean()) < 200.0 and np.corrcoef(late, true[-20:])[0, 1] > 0.5
    anchor_ratings = np.asarray(state.ratings[:3])
    assert abs(anchor_ratings[1] - 400.0) < 150.0 and abs(anchor_ratings[2] - 800.0) < 150.0


# ---------------------------------------------------------------------------------------------
# The engine's rating stage.

SMALL = [
    "learner.num_envs=16", "learner.num_steps=8", "learner.num_minibatches=2", "learner.num_epochs=1",
    "learner.hidden_sizes=[32]", "league.capacity=4", "league.snapshot_every=2", "rating.kind=bradley_terry",
    "rating.every_iterations=3", "rating.games=8", "rating.history=4", "arena.anchors=[random, perfect]",
    "train.total_env_steps=100000",
]


def _engine(*overrides):
    from superlearner.config import load_config, validate_semantics
    from superlearner.engine.build import make_engine

    config = load_config("tic_tac_toe_selfplay", SMALL + list(overrides))
    validate_semantics(config)
    return make_engine(config)


def test_rounds_run_when_due_and_a_split_chunk_gives_the_same_state():
    from superlearner.engine.chunk import initial_state

    engine = _engine()
    chunk = jax.jit(engine.train_chunk, static_argnums=1)
    whole, metrics = chunk(initial_state(engine, 0), 7)
    assert int(whole.rating.rounds[0]) == 3  # after iterations 1, 4 and 7
    stderr = np.asarray(metrics["rating_stderr"])[:, 0]
    assert np.isfinite(stderr).all() and (stderr > 0).all()
    # The metrics of every iteration are the latest round's: they change only at a round.
    ratings = np.asarray(metrics["rating"])[:, 0]
    assert ratings[1] == ratings[0] and ratings[2] == ratings[0] and ratings[4] == ratings[3]
    split, _ = chunk(chunk(initial_state(engine, 0), 4)[0], 3)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(whole.rating), jax.device_get(split.rating))
    # A round's games are the rating's own stream: they do not change the training.
    plain = _engine("rating.kind=none")
    unrated, _ = jax.jit(plain.train_chunk, static_argnums=1)(initial_state(plain, 0), 7)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(whole.learner.params), jax.device_get(unrated.learner.params))


def _meta_step_with_ratings(ratings, *overrides):
    from superlearner.engine.chunk import initial_state
    from superlearner.engine.meta_stage import MetaInput, make_meta_controller, meta_step

    engine = _engine(*overrides)
    state = initial_state(engine, 0)
    state = state.replace(rating=state.rating.replace(rating=jnp.asarray(ratings, jnp.float32)))
    controller = make_meta_controller(engine.config, engine.env, engine.learner)
    returns = jnp.zeros((engine.config.train.population_size,))
    return engine, state, meta_step(controller, state, MetaInput(returns), engine.config, None, engine.learner)


@pytest.mark.parametrize("ratings, parent", [([300.0, -50.0], [0, 0]), ([-50.0, 300.0], [1, 1])])
def test_pbt_with_progress_rating_copies_the_higher_rated_member(ratings, parent):
    _, state, (new_state, metrics) = _meta_step_with_ratings(
        ratings, "train.population_size=2", "meta.kind=pbt", "meta.progress=rating", "meta.interval=1",
        "rating.every_iterations=1", "meta.ready_iterations=0", "meta.truncation_fraction=0.5",
    )
    assert np.asarray(metrics["meta_parent"]).tolist() == parent
    # The copy takes its parent's rating history with its parameters.
    np.testing.assert_array_equal(np.asarray(new_state.rating.rating), np.asarray(ratings)[parent])


def test_a_bandit_arm_sets_the_league_opponent_weights():
    engine, state, (new_state, metrics) = _meta_step_with_ratings(
        [0.0], "meta.kind=bandit", "meta.progress=rating", "meta.interval=3",
        "meta.arms={league_weight_self: [0.1, 0.9], learning_rate: [1.0e-4, 1.0e-3]}",
    )
    arm = int(np.asarray(metrics["meta_arm"])[0])
    assert float(new_state.league.hparams.weight_self[0]) == pytest.approx([0.1, 0.9][arm])
    assert float(new_state.hparams.learning_rate[0]) == pytest.approx([1e-4, 1e-3][arm])
    # The other league knobs are the member's own, untouched.
    np.testing.assert_array_equal(np.asarray(new_state.league.hparams.weight_uniform),
                                  np.asarray(state.league.hparams.weight_uniform))


def test_the_best_checkpoint_and_member_are_chosen_by_the_rating():
    from superlearner.run.trainer import checkpoint_score

    assert checkpoint_score({"rating": [10.0, 55.0], "rating_stderr": [20.0, 30.0]}, None, True) == 55.0
    assert checkpoint_score({"rating": [0.0], "rating_stderr": [float("nan")]}, {"vs_random": [1.0]}, True) is None
    assert checkpoint_score({"episode_return": [0.5]}, None, False) == 0.5


@pytest.mark.parametrize("overrides, message", [
    (["meta.kind=pbt", "train.population_size=2", "meta.progress=rating", "rating.kind=none"], "rating.kind is none"),
    (["meta.kind=pbt", "train.population_size=2", "meta.progress=rating", "meta.interval=4"], "multiple of rating.every_iterations"),
    (["meta.kind=bandit", "meta.progress=rating", "meta.interval=3", "meta.arms={league_weight_selff: [0.1, 0.9]}"], "neither a hyperparameter"),
    (["rating.anchors=[]", "arena.anchors=[]"], "both empty"),
])
def test_bad_rating_settings_are_one_line_errors(overrides, message):
    from superlearner.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        _engine(*overrides)


def test_a_one_player_env_refuses_a_rating():
    from superlearner.config import load_config
    from superlearner.engine.build import make_engine
    from superlearner.errors import ConfigError

    with pytest.raises(ConfigError, match="two-player zero-sum"):
        make_engine(load_config("cartpole_ppo", ["rating.kind=bradley_terry", "arena.anchors=[random]"]))
