"""Curriculum: level buffer insertion and de-duplication, replay distributions, the four sampler
kinds, regret and learnability scores, and the learning-progress teacher."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from superlearner.curriculum import levels as cur
from superlearner.envs.cartpole import CartPole, make_default_params
from superlearner.errors import UserError


@struct.dataclass
class Toy:
    """A one-number level: easy to hand-compute with."""

    value: jax.Array


class ToySpace:
    """Levels are integers; a mutation adds the number of edits (so every edit is visible)."""

    def sample(self, key):
        return Toy(jax.random.randint(key, (), 0, 1_000_000, dtype=jnp.int32))

    def mutate(self, key, level, num_edits):
        del key
        return Toy(level.value + num_edits)


SPACE = ToySpace()
HP = cur.CurriculumHparams.from_values()


def toys(*values):
    return Toy(jnp.asarray(values, jnp.int32))


def make(kind="plr", capacity=4, batch_size=2, **kwargs):
    return cur.make_level_sampler(kind, SPACE, capacity, batch_size, **kwargs)


# Shared samplers and compiled functions: each program is compiled once per test session.
PLR = make("plr", capacity=4, batch_size=2)
PROBABILITIES = {
    prioritization: jax.jit(make(capacity=4, prioritization=prioritization).replay_probabilities)
    for prioritization in ("rank", "proportional")
}
PLR_NEXT_LEVELS = jax.jit(PLR.next_levels)


def filled(sampler, values, scores, last_sampled=None, step=0):
    """A buffer whose first len(values) slots hold the given levels."""
    buffer = sampler.init(Toy(jnp.int32(0)))
    n = len(values)
    valid = jnp.arange(sampler.capacity) < n
    pad = sampler.capacity - n
    last = np.zeros(n, np.int32) if last_sampled is None else np.asarray(last_sampled, np.int32)
    levels = toys(*values, *([0] * pad))
    return buffer.replace(
        levels=levels,
        scores=jnp.asarray(list(scores) + [0.0] * pad, jnp.float32),
        last_sampled=jnp.asarray(list(last) + [0] * pad, jnp.int32),
        valid=valid,
        hashes=jnp.where(valid, jax.vmap(sampler.level_hash)(levels), 0).astype(jnp.uint32),
        step=jnp.int32(step),
    )


def held(buffer):
    """{level value: score} of the valid slots."""
    valid = np.asarray(buffer.valid)
    values = np.asarray(buffer.levels.value)[valid].tolist()
    return dict(zip(values, np.asarray(buffer.scores)[valid].tolist()))


# ------------------------------------------------------------------------------------------------
# Configuration errors.


def test_bad_settings_raise_one_line_user_errors():
    with pytest.raises(UserError, match="kind='bogus'.*accepted: dr, plr, accel, sfl"):
        make("bogus")
    with pytest.raises(UserError, match="prioritization"):
        make(prioritization="softmax")
    with pytest.raises(UserError, match="capacity"):
        make(capacity=0)
    with pytest.raises(UserError, match="needs a level space with mutate"):
        cur.make_level_sampler("accel", None, 4, 2, sample_fn=SPACE.sample)
    with pytest.raises(UserError, match="unknown hyperparameter.*tempreature"):
        cur.CurriculumHparams.from_values(tempreature=1.0)
    for value in jax.tree.leaves(HP):
        assert value.dtype == jnp.float32 and value.shape == ()


# ------------------------------------------------------------------------------------------------
# Insertion and de-duplication.


@pytest.mark.parametrize("jit", [False, True])
def test_insert_replaces_the_lowest_score_only_when_the_newcomer_is_higher(jit):
    sampler = make(capacity=3)
    insert = jax.jit(sampler.insert) if jit else sampler.insert
    buffer = sampler.init(Toy(jnp.int32(0)))
    buffer = insert(buffer, toys(10, 20, 30), jnp.array([1.0, 2.0, 3.0]))
    assert held(buffer) == {10: 1.0, 20: 2.0, 30: 3.0}
    # Lower than the lowest (1.0), and equal to it: both rejected.
    buffer = insert(buffer, toys(40, 41), jnp.array([0.5, 1.0]))
    assert held(buffer) == {10: 1.0, 20: 2.0, 30: 3.0}
    # Higher: 1.5 replaces level 10 (score 1); then 2.5 replaces level 50, now the lowest.
    buffer = insert(buffer, toys(50, 60), jnp.array([1.5, 2.5]))
    assert held(buffer) == {20: 2.0, 60: 2.5, 30: 3.0}
    # Every offered level advances the staleness clock; new entries are fresh.
    assert int(buffer.step) == 7
    assert int(buffer.last_sampled[np.asarray(buffer.levels.value).tolist().index(60)]) == 7
    assert int(buffer.size) == 3


def test_insert_fills_empty_slots_whatever_the_score_and_skips_non_finite_masked_and_invalid():
    sampler = make(capacity=4, valid_fn=lambda level: level.value % 2 == 0)
    buffer = sampler.init(Toy(jnp.int32(0)))
    buffer = jax.jit(sampler.insert)(
        buffer,
        toys(2, 4, 6, 8, 9),
        jnp.array([-5.0, jnp.nan, jnp.inf, 1.0, 9.0]),
        mask=jnp.array([True, True, True, False, True]),
    )
    # -5 fills an empty slot; NaN and inf are no measurement; 8 is masked out; 9 is invalid.
    assert held(buffer) == {2: -5.0}


@pytest.mark.parametrize("jit", [False, True])
def test_duplicates_by_hash_update_the_entry_instead_of_being_inserted_twice(jit):
    sampler = make(capacity=4)
    insert = jax.jit(sampler.insert) if jit else sampler.insert
    buffer = sampler.init(Toy(jnp.int32(0)))
    buffer = insert(buffer, toys(7, 8, 7), jnp.array([1.0, 2.0, 0.5]), max_returns=jnp.array([3.0, 1.0, 2.0]))
    assert held(buffer) == {7: 0.5, 8: 2.0}
    slot = np.asarray(buffer.levels.value).tolist().index(7)
    assert float(buffer.max_returns[slot]) == 3.0  # the best return is kept, not overwritten
    # Across calls, even when the buffer is full and the score is low.
    buffer = insert(buffer, toys(1, 2), jnp.array([5.0, 6.0]))
    buffer = insert(buffer, toys(8), jnp.array([-1.0]))
    assert held(buffer) == {7: 0.5, 8: -1.0, 1: 5.0, 2: 6.0}
    assert int(buffer.size) == 4
    assert len(set(np.asarray(buffer.hashes).tolist())) == 4


def test_tree_hash_is_equal_for_equal_levels_and_differs_otherwise():
    params = make_default_params()
    other = params.replace(length=jnp.float32(0.6))
    hashes = [int(cur.tree_hash(p)) for p in (params, other)]
    assert hashes[0] == int(jax.jit(cur.tree_hash)(make_default_params())) and hashes[0] != hashes[1]
    values = jax.vmap(cur.tree_hash)(toys(*range(2000)))
    assert len(set(np.asarray(values).tolist())) == 2000
    assert values.dtype == jnp.uint32


# ------------------------------------------------------------------------------------------------
# Replay distributions.


def test_rank_and_proportional_probabilities_with_temperature():
    sampler = make(capacity=4, prioritization="rank")
    buffer = filled(sampler, [1, 2, 3], [3.0, 1.0, 2.0])
    no_staleness = HP.replace(staleness_coef=jnp.float32(0.0))
    # Ranks 1, 3, 2: weights 1, 1/3, 1/2 at temperature 1.
    p = sampler.replay_probabilities(buffer, no_staleness.replace(temperature=jnp.float32(1.0)))
    np.testing.assert_allclose(p, np.array([6, 2, 3, 0]) / 11, rtol=1e-6)
    # Temperature 0.5 squares the weights: 1, 1/9, 1/4.
    p = PROBABILITIES["rank"](buffer, no_staleness.replace(temperature=jnp.float32(0.5)))
    np.testing.assert_allclose(p, np.array([36, 4, 9, 0]) / 49, rtol=1e-6)
    p = PROBABILITIES["proportional"](buffer, no_staleness.replace(temperature=jnp.float32(0.5)))
    np.testing.assert_allclose(p, np.array([9, 1, 4, 0]) / 14, rtol=1e-6)


def test_staleness_mixes_in_with_the_staleness_coefficient():
    sampler = make(capacity=4)
    buffer = filled(sampler, [1, 2, 3], [3.0, 1.0, 2.0], last_sampled=[4, 10, 7], step=10)
    np.testing.assert_allclose(
        cur.staleness_probabilities(buffer.last_sampled, buffer.valid, buffer.step),
        [6 / 9, 0, 3 / 9, 0],
        rtol=1e-6,
    )
    hp = HP.replace(temperature=jnp.float32(1.0), staleness_coef=jnp.float32(0.3))
    expected = 0.7 * np.array([6, 2, 3, 0]) / 11 + 0.3 * np.array([6, 0, 3, 0]) / 9
    np.testing.assert_allclose(PROBABILITIES["rank"](buffer, hp), expected, rtol=1e-6)
    # vmap over a population of staleness coefficients.
    coefs = jnp.array([0.0, 1.0])
    p = jax.vmap(lambda c: sampler.replay_probabilities(buffer, hp.replace(staleness_coef=c)))(coefs)
    np.testing.assert_allclose(p[0], np.array([6, 2, 3, 0]) / 11, rtol=1e-6)
    np.testing.assert_allclose(p[1], np.array([6, 0, 3, 0]) / 9, rtol=1e-6)


@pytest.mark.parametrize("prioritization", ["rank", "proportional"])
def test_replay_probabilities_never_divide_by_zero(prioritization):
    sampler = make(capacity=4, prioritization=prioritization)
    probabilities = PROBABILITIES[prioritization]
    cold = HP.replace(temperature=jnp.float32(1e-9))
    cases = {
        "empty": (filled(sampler, [], []), [0.25] * 4),
        "all equal": (filled(sampler, [1, 2, 3], [2.0, 2.0, 2.0]), [1 / 3, 1 / 3, 1 / 3, 0]),
        "all zero": (filled(sampler, [1, 2], [0.0, 0.0]), [0.5, 0.5, 0, 0]),
        "single": (filled(sampler, [5], [0.0]), [1, 0, 0, 0]),
        "full": (filled(sampler, [1, 2, 3, 4], [1.0] * 4, last_sampled=[3] * 4, step=3), [0.25] * 4),
    }
    for name, (buffer, expected) in cases.items():
        for hp in (HP, cold):
            p = np.asarray(probabilities(buffer, hp))
            assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-6, name
            np.testing.assert_allclose(p, expected, atol=1e-6, err_msg=name)
    # A near-zero temperature is greedy, not NaN.
    greedy = cold.replace(staleness_coef=jnp.float32(0.0))
    p = probabilities(filled(sampler, [1, 2, 3], [1.0, 3.0, 2.0]), greedy)
    np.testing.assert_allclose(p, [0, 1, 0, 0], atol=1e-6)


def test_replay_draws_follow_the_computed_distribution():
    buffer = filled(PLR, [1, 2, 3], [5.0, 0.5, 3.0], last_sampled=[0, 9, 5], step=10)
    hp = HP.replace(temperature=jnp.float32(0.7), staleness_coef=jnp.float32(0.25))
    p = np.asarray(PROBABILITIES["rank"](buffer, hp), np.float64)
    # Ranks 1, 3, 2 and staleness 10, 1, 5, by hand.
    rank_weights = (1 / np.array([1.0, 3.0, 2.0])) ** (1 / 0.7)
    expected_p = 0.75 * rank_weights / rank_weights.sum() + 0.25 * np.array([10, 1, 5]) / 16
    np.testing.assert_allclose(p[:3], expected_p, rtol=1e-5)
    num = 20_000
    sample = jax.jit(PLR.sample_replay, static_argnums=3)
    new_buffer, levels, indices = sample(buffer, jax.random.key(1), hp, num)
    counts = np.bincount(np.asarray(indices), minlength=4)
    assert counts[3] == 0  # the empty slot is never drawn
    expected = num * p[:3]
    chi2 = float(((counts[:3] - expected) ** 2 / expected).sum())
    assert chi2 < 13.9, (counts, expected)  # 99.9% quantile of chi-square with 2 dof: 13.82
    np.testing.assert_array_equal(np.asarray(levels.value), np.asarray(indices) + 1)
    # Bookkeeping: counts, the clock, and every drawn level is now the least stale.
    np.testing.assert_array_equal(new_buffer.num_sampled, counts)
    assert int(new_buffer.step) == 10 + num
    assert (np.asarray(new_buffer.last_sampled)[:3] == 10 + num).all()


# ------------------------------------------------------------------------------------------------
# The four kinds.


def test_plr_replays_with_replay_prob_only_once_filled_and_trains_only_on_replays():
    sampler = PLR  # capacity 4, min_fill_ratio 0.5: replays need two levels
    keys = jax.random.split(jax.random.key(2), 4000)
    decide = jax.jit(jax.vmap(sampler.decide, in_axes=(None, 0, None)))
    hp = HP.replace(replay_prob=jnp.float32(0.3))
    assert not np.asarray(decide(filled(sampler, [1], [1.0]), keys, hp)).any()
    modes = np.asarray(decide(filled(sampler, [1, 2], [1.0, 2.0]), keys, hp))
    assert set(modes.tolist()) == {cur.MODE_FRESH, cur.MODE_REPLAY}
    assert abs((modes == cur.MODE_REPLAY).mean() - 0.3) < 0.03

    next_levels = PLR_NEXT_LEVELS
    buffer = filled(sampler, [1, 2, 3], [1.0, 2.0, 3.0])
    _, batch = next_levels(buffer, keys[0], HP.replace(replay_prob=jnp.float32(1.0)))
    assert int(batch.mode) == cur.MODE_REPLAY and bool(batch.train)
    assert (np.asarray(batch.indices) >= 0).all()
    np.testing.assert_array_equal(batch.levels.value, np.asarray(batch.indices) + 1)
    new_buffer, batch = next_levels(buffer, keys[0], HP.replace(replay_prob=jnp.float32(0.0)))
    assert int(batch.mode) == cur.MODE_FRESH and not bool(batch.train)
    assert (np.asarray(batch.indices) == -1).all()
    assert int(new_buffer.step) == int(buffer.step)  # fresh levels are counted when offered
    # Non-robust PLR trains on fresh levels too.
    non_robust = jax.jit(make("plr", train_on_fresh=True).next_levels)
    _, batch = non_robust(buffer, keys[0], HP.replace(replay_prob=jnp.float32(0.0)))
    assert bool(batch.train)


def test_update_rescores_replayed_levels_and_offers_fresh_ones():
    sampler = make("plr", capacity=4, batch_size=3)
    buffer = filled(sampler, [1, 2, 3], [1.0, 2.0, 3.0])
    replay = cur.LevelBatch(
        levels=toys(1, 1, 3),
        indices=jnp.array([0, 0, 2]),
        mode=jnp.int32(cur.MODE_REPLAY),
        train=jnp.bool_(True),
    )
    update = jax.jit(sampler.update)
    # Slot 0 played twice: the mean of its scores; slot 2's NaN changes nothing.
    buffer = update(buffer, replay, jnp.array([4.0, 6.0, jnp.nan]), max_returns=jnp.array([1.0, 2.0, 9.0]))
    assert held(buffer) == {1: 5.0, 2: 2.0, 3: 3.0}
    np.testing.assert_array_equal(buffer.max_returns[:3], [2.0, -np.inf, 9.0])
    np.testing.assert_array_equal(
        cur.combined_max_returns(buffer, jnp.array([0, -1, 2]), jnp.array([3.0, 0.5, 1.0])), [3.0, 0.5, 9.0]
    )
    fresh = cur.LevelBatch(
        levels=toys(40, 50, 60),
        indices=jnp.full((3,), -1),
        mode=jnp.int32(cur.MODE_FRESH),
        train=jnp.bool_(False),
    )
    buffer = update(buffer, fresh, jnp.array([0.5, 2.5, 4.0]))
    assert held(buffer) == {1: 5.0, 50: 2.5, 3: 3.0, 60: 4.0}


def test_dr_always_trains_on_fresh_levels_and_leaves_the_buffer_alone():
    sampler = make("dr", capacity=4, batch_size=3)
    buffer = sampler.init(Toy(jnp.int32(0)))
    new_buffer, batch = jax.jit(sampler.next_levels)(buffer, jax.random.key(3), HP)
    assert int(batch.mode) == cur.MODE_FRESH and bool(batch.train)
    assert len(set(np.asarray(batch.levels.value).tolist())) == 3
    new_buffer = sampler.update(new_buffer, batch, jnp.ones(3))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), buffer, new_buffer))


def test_accel_mutates_every_replayed_level_on_the_next_step_without_training():
    num_edits = 3
    sampler = make("accel", capacity=8, batch_size=5, num_edits=num_edits)
    buffer = filled(sampler, [100, 200, 300, 400, 500, 600], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    next_levels = jax.jit(sampler.next_levels)
    always = HP.replace(replay_prob=jnp.float32(1.0))
    key1, key2, key3 = jax.random.split(jax.random.key(4), 3)
    buffer, replay = next_levels(buffer, key1, always)
    assert int(replay.mode) == cur.MODE_REPLAY and bool(replay.train) and bool(buffer.pending)
    buffer, mutants = next_levels(buffer, key2, always)
    assert int(mutants.mode) == cur.MODE_MUTATE and not bool(mutants.train)
    assert (np.asarray(mutants.indices) == -1).all() and not bool(buffer.pending)
    # Every level of the batch got its edits, not only the first.
    np.testing.assert_array_equal(mutants.levels.value, np.asarray(replay.levels.value) + num_edits)
    # The mutants are offered to the buffer; then the cycle starts again with a replay.
    buffer = jax.jit(sampler.update)(buffer, mutants, jnp.full((5,), 10.0))
    assert set(np.asarray(mutants.levels.value).tolist()) <= set(held(buffer))
    _, after = next_levels(buffer, key3, always)
    assert int(after.mode) == cur.MODE_REPLAY


def test_accel_mutants_stay_valid_when_the_level_space_requires_it():
    def sloppy_mutate(key, level, num_edits):
        # Half the mutants are invalid (odd).
        return Toy(level.value + num_edits * 2 + jax.random.randint(key, (), 0, 2))

    sampler = cur.make_level_sampler(
        "accel",
        SPACE,
        4,
        64,
        num_edits=1,
        mutate_fn=sloppy_mutate,
        valid_fn=lambda level: level.value % 2 == 0,
        mutation_tries=4,
    )
    parents = Toy(jnp.arange(64, dtype=jnp.int32) * 10)
    mutants = np.asarray(jax.jit(sampler.mutate)(jax.random.key(5), parents).value)
    assert (mutants % 2 == 0).all()
    # Most found a valid mutant within four tries (1 - 1/16 expected); the rest kept the parent.
    changed = mutants == np.asarray(parents.value) + 2
    assert changed.mean() > 0.8 and ((mutants == np.asarray(parents.value)) | changed).all()


def test_accel_on_the_maze_keeps_mutants_solvable():
    from superlearner.envs.maze import MazeLevelSpace

    space = MazeLevelSpace()
    sampler = cur.make_level_sampler(
        "accel", space, 8, 4, num_edits=8, valid_fn=functools.partial(space.is_valid, require_solvable=True)
    )
    named = space.named_levels()
    chosen = [named[name] for name in ("SmallCorridor", "Labyrinth", "Spiral", "ZigZag")]
    parents = jax.tree.map(lambda *x: jnp.stack(x), *chosen)
    mutants = jax.jit(sampler.mutate)(jax.random.key(6), parents)
    solvable = jax.vmap(space.is_solvable)(mutants)
    assert bool(solvable.all())
    assert bool(jnp.any(mutants.walls != parents.walls, axis=(1, 2)).any())


def test_sfl_mixes_fresh_levels_with_the_fresh_ratio_and_always_trains():
    sampler = make("sfl", capacity=8, batch_size=8, min_fill_ratio=0.25)
    next_levels = jax.jit(sampler.next_levels)
    hp = HP.replace(fresh_ratio=jnp.float32(0.25))
    empty = filled(sampler, [1], [0.25])
    _, batch = next_levels(empty, jax.random.key(7), hp)
    assert int(batch.mode) == cur.MODE_FRESH and (np.asarray(batch.indices) == -1).all() and bool(batch.train)
    buffer = filled(sampler, [1, 2, 3], [0.25, 0.0, 0.1875])
    new_buffer, batch = next_levels(buffer, jax.random.key(7), hp)
    indices = np.asarray(batch.indices)
    assert int(batch.mode) == cur.MODE_REPLAY and bool(batch.train)
    assert (indices[:2] == -1).all() and (indices[2:] >= 0).all() and (indices[2:] < 3).all()
    np.testing.assert_array_equal(np.asarray(batch.levels.value)[2:], indices[2:] + 1)
    assert int(new_buffer.num_sampled.sum()) == 6 and int(new_buffer.step) == 6
    # Scores are learnability from success rates; the best levels stay.
    rates = jnp.array([0.5, 0.9, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    new_buffer = jax.jit(sampler.update)(new_buffer, batch, cur.learnability(rates), success_rates=rates)
    assert held(new_buffer)[int(batch.levels.value[0])] == 0.25


def test_traced_hparams_never_recompile_and_vmap_over_a_population():
    sampler = PLR
    buffer = filled(sampler, [1, 2, 3], [1.0, 2.0, 3.0])
    next_levels = PLR_NEXT_LEVELS
    for replay_prob in (0.0, 1.0, 0.5):
        next_levels(buffer, jax.random.key(8), HP.replace(replay_prob=jnp.float32(replay_prob)))
    assert next_levels._cache_size() == 1
    population = jax.tree.map(lambda x: jnp.stack([x, x]), buffer)
    hps = jax.tree.map(lambda x: jnp.stack([x, x]), HP).replace(replay_prob=jnp.array([0.0, 1.0]))
    keys = jax.random.split(jax.random.key(9), 2)
    _, batch = jax.jit(jax.vmap(sampler.next_levels))(population, keys, hps)
    np.testing.assert_array_equal(batch.mode, [cur.MODE_FRESH, cur.MODE_REPLAY])
    np.testing.assert_array_equal(batch.train, [False, True])


def test_keys_are_used_once():
    def reuses(key):
        return jax.random.uniform(key) + jax.random.uniform(key)

    for kind in cur.KINDS:
        sampler = make(kind, capacity=4, batch_size=2)

        def step(buffer, step_key):
            next_key, score_key = jax.random.split(step_key)
            buffer, batch = sampler.next_levels(buffer, next_key, HP)
            return sampler.update(buffer, batch, jax.random.uniform(score_key, (2,))), batch.mode

        def steps(buffer, key):
            return jax.lax.scan(step, buffer, jax.random.split(key, 3))

        # The checker runs when the program is traced, so tracing is enough (no compile).
        with jax.debug_key_reuse(True):
            _, modes = jax.eval_shape(steps, filled(sampler, [1, 2, 3], [1.0, 2.0, 3.0]), jax.random.key(10))
            assert modes.shape == (3,)
            with pytest.raises(jax.errors.KeyReuseError):
                jax.eval_shape(reuses, jax.random.key(0))


# ------------------------------------------------------------------------------------------------
# Scores.


@pytest.mark.parametrize("jit", [False, True])
def test_positive_value_loss_averages_each_finished_episode_then_episodes(jit):
    pvl = jax.jit(cur.positive_value_loss) if jit else cur.positive_value_loss
    advantages = jnp.array([1.0, -1.0, 3.0, 2.0, -5.0, 4.0])
    dones = jnp.array([0, 1, 0, 0, 1, 0], bool)
    # Episodes: (1 + 0) / 2 and (3 + 2 + 0) / 3; the unfinished last step is left out.
    np.testing.assert_allclose(pvl(advantages, dones), (0.5 + 5 / 3) / 2, rtol=1e-6)
    assert float(pvl(advantages, jnp.zeros(6, bool))) == -np.inf
    assert float(cur.positive_value_loss(advantages, jnp.zeros(6, bool), 0.0)) == 0.0
    # vmap over envs of a [T, N] rollout.
    batch = jax.vmap(cur.positive_value_loss, in_axes=1)(
        jnp.stack([advantages, -advantages], 1), jnp.stack([dones, jnp.ones(6, bool)], 1)
    )
    np.testing.assert_allclose(batch, [(0.5 + 5 / 3) / 2, (0 + 1 + 0 + 0 + 5 + 0) / 6], rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_max_mc_and_max_episode_return(jit):
    max_mc = jax.jit(cur.max_mc) if jit else cur.max_mc
    values = jnp.array([0.2, 0.4, 0.0, 0.5, 0.5, 0.9])
    dones = jnp.array([0, 1, 0, 0, 1, 0], bool)
    # Episodes: mean(0.8, 0.6) = 0.7 and mean(1.0, 0.5, 0.5) = 2/3.
    np.testing.assert_allclose(max_mc(values, dones, jnp.float32(1.0)), (0.7 + 2 / 3) / 2, rtol=1e-6)
    assert float(max_mc(values, jnp.zeros(6, bool), jnp.float32(1.0))) == -np.inf
    max_return = jax.jit(cur.max_episode_return) if jit else cur.max_episode_return
    rewards = jnp.array([0.0, 1.0, 0.0, 0.0, 0.5, 2.0])
    assert float(max_return(rewards, dones)) == 1.0  # the unfinished 2.0 does not count
    assert float(max_return(-rewards, dones)) == -0.5  # negative returns are kept, not floored at 0
    assert float(max_return(rewards, jnp.zeros(6, bool))) == -np.inf
    np.testing.assert_allclose(
        jax.vmap(cur.max_mc, in_axes=(1, 1, 0))(jnp.stack([values, values], 1), jnp.stack([dones, dones], 1),
                                                jnp.array([1.0, 2.0])),
        [(0.7 + 2 / 3) / 2, (0.7 + 2 / 3) / 2 + 1.0], rtol=1e-6,
    )


def test_learnability_success_rate_ema_and_learning_progress():
    np.testing.assert_allclose(cur.learnability(jnp.array([0.0, 0.5, 0.25, 1.0])), [0.0, 0.25, 0.1875, 0.0])
    np.testing.assert_allclose(jax.jit(cur.learnability)(0.9), 0.09, rtol=1e-6)
    success = jnp.array([0, 1, 0, 0, 1, 1], bool)
    rate, count = jax.jit(cur.episode_success_rate)(success, jnp.array([0, 1, 1, 0, 1, 1], bool))
    assert int(count) == 4 and float(rate) == 0.75
    rate, count = cur.episode_success_rate(jnp.zeros(3, bool), jnp.zeros(3, bool))
    assert int(count) == 0 and np.isnan(float(rate))
    # Two steps of rate 0.5 from 0 towards 1: 0.5, then 0.75.
    assert float(cur.ema_update(0.0, 1.0, 0.5, 2)) == 0.75
    assert float(jax.jit(cur.ema_update)(0.0, 1.0, 0.5, 1)) == 0.5
    progress = cur.learning_progress(jnp.array([0.2, 0.9]), jnp.array([0.5, 0.4]))
    np.testing.assert_allclose(progress, [0.3, 0.5], rtol=1e-6)


def test_sfl_smoothed_success_rate_hand_computed():
    # Env 0: fresh, 1 win of 1 episode -> (1 + 0.5) / (1 + 1) = 0.75 (not 1, so learnability > 0).
    # Env 1: fresh, 0 of 2 -> 0.5 / 3. Env 2: replayed slot 1 (stored 0.4), 1 of 1 -> 0.5 * 0.4
    # + 0.5 * 0.75 = 0.575. Env 3: replayed slot 0 (stored NaN: never measured) -> 0.75.
    # Env 4: replayed, no episode finished -> NaN (no measurement).
    rate = jnp.array([1.0, 0.0, 1.0, 1.0, jnp.nan])
    count = jnp.array([1, 2, 1, 1, 0])
    stored = jnp.array([jnp.nan, 0.4, 0.9])
    indices = jnp.array([-1, -1, 1, 0, 2])
    smoothed = jax.jit(cur.smoothed_success_rate, static_argnums=(4, 5))(rate, count, stored, indices, 0.5, 0.5)
    np.testing.assert_allclose(smoothed[:4], [0.75, 0.5 / 3, 0.575, 0.75], rtol=1e-6)
    assert np.isnan(float(smoothed[4]))
    # A single 0/1 episode never scores zero learnability; without the prior it does.
    assert float(cur.learnability(smoothed[0])) == 0.1875
    raw = cur.smoothed_success_rate(rate, count, stored, indices, 0.0, 0.0)
    np.testing.assert_allclose(raw[:4], [1.0, 0.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------------
# The learning-progress teacher.


def test_teacher_is_uniform_without_progress_and_first_outcomes_set_both_averages():
    teacher = cur.make_lp_teacher(4)
    state = teacher.init()
    np.testing.assert_allclose(teacher.probabilities(state, HP), [0.25] * 4)
    state = jax.jit(teacher.update)(state, jnp.array([1, 1, 3]), jnp.array([1.0, 0.0, 1.0]), HP)
    np.testing.assert_allclose(state.fast, [0, 0.5, 0, 1])
    np.testing.assert_allclose(state.slow, [0, 0.5, 0, 1])
    np.testing.assert_array_equal(state.counts, [0, 2, 0, 1])
    # Masked entries (no outcome) change nothing.
    same = teacher.update(state, jnp.array([0, 3]), jnp.array([1.0, 0.0]), HP, mask=jnp.array([False, False]))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), same, state))
    np.testing.assert_allclose(teacher.probabilities(state, HP), [0.25] * 4)
    # The next outcome of bin 3 moves the fast average more than the slow one.
    state = teacher.update(state, jnp.array([3]), jnp.array([0.0]), HP)
    assert float(state.fast[3]) == pytest.approx(0.9) and float(state.slow[3]) == pytest.approx(0.98)
    p = np.asarray(teacher.probabilities(state, HP))
    assert p.argmax() == 3 and abs(p.sum() - 1) < 1e-6 and p.min() >= 0.1 / 4 - 1e-7


def test_teacher_concentrates_on_the_bin_whose_success_rate_is_changing():
    teacher = cur.make_lp_teacher(4)
    num, steps = 16, 240

    def success(bins, t):
        # Bins 0, 1, 3 never change; bin 2 is being learnt from t = 20 to t = 220.
        ramp = jnp.clip((t - 20) / 200.0, 0.0, 1.0)
        return jnp.array([0.0, 1.0, 0.0, 0.5])[bins] + jnp.where(bins == 2, ramp, 0.0)

    def run(hparams, key):
        def body(state, inputs):
            t, step_key = inputs
            bins = teacher.sample(step_key, state, hparams, num)
            state = teacher.update(state, bins, success(bins, t), hparams)
            return state, (bins, teacher.probabilities(state, hparams))

        times = jnp.arange(steps, dtype=jnp.float32)
        return jax.lax.scan(body, teacher.init(), (times, jax.random.split(key, steps)))

    # Two population members: vmap over keys and epsilons.
    hps = jax.tree.map(lambda x: jnp.stack([x, x]), HP).replace(lp_epsilon=jnp.array([0.1, 0.3]))
    _, (bins, probs) = jax.jit(jax.vmap(run))(hps, jax.random.split(jax.random.key(11), 2))
    bins, probs = np.asarray(bins), np.asarray(probs)
    for member, epsilon in enumerate((0.1, 0.3)):
        during = bins[member, 60:200].ravel()
        share = (during == 2).mean()
        assert share > 0.6, share
        assert probs[member, 150].argmax() == 2
        assert probs[member, 150, 2] > 1 - epsilon
    # The members differ where their epsilons do: more exploration, less focus.
    assert probs[0, 150, 2] > probs[1, 150, 2]


def test_bins_to_cartpole_params():
    params = cur.bins_to_params(jnp.array([0, 1, 3]), make_default_params(), "length", 0.25, 2.25, 4)
    np.testing.assert_allclose(params.length, [0.5, 1.0, 2.0])
    np.testing.assert_allclose(params.gravity, [9.8] * 3, rtol=1e-6)
    assert params.length.dtype == jnp.float32
    jittered = jax.jit(cur.bins_to_params, static_argnums=(2, 5))(
        jnp.array([0, 3]), make_default_params(), "gravity", 5.0, 13.0, 4, jax.random.key(12)
    )
    assert 5.0 <= float(jittered.gravity[0]) <= 7.0 and 11.0 <= float(jittered.gravity[1]) <= 13.0
    # The batch of params drives a batch of envs: a longer pole falls more slowly.
    env = CartPole()

    @jax.jit
    def fall(params, key):
        reset_key, step_key = jax.random.split(key)
        states = jax.vmap(env.reset)(jax.random.split(reset_key, 3), params)
        states = states.replace(theta=jnp.full(3, 0.1), theta_dot=jnp.zeros(3))
        states = jax.vmap(env.step)(states, jnp.zeros(3, jnp.int32), jax.random.split(step_key, 3), params)
        return states.theta_dot

    theta_dot = np.asarray(fall(params, jax.random.key(13)))
    assert (np.diff(np.abs(theta_dot)) < 0).all(), theta_dot
    with pytest.raises(UserError, match="no field 'mass'"):
        cur.bins_to_params(jnp.array([0]), make_default_params(), "mass", 0.0, 1.0, 4)


# ------------------------------------------------------------------------------------------------
# The update inside the engine: robust PLR and ACCEL train on replayed levels only.


def _tiny_maze_curriculum(**curriculum):
    """A maze run small enough to compile and fill a 12-level buffer in a few chunks."""
    from superlearner.config import config_from_dict

    return config_from_dict({
        "env": {"id": "maze", "options": {"max_episode_steps": 6}},
        "learner": {"num_envs": 4, "num_steps": 16, "num_minibatches": 1, "num_epochs": 1, "hidden_sizes": [8]},
        "curriculum": {"capacity": 12, "min_fill_ratio": 0.25, **curriculum},
        "train": {"total_env_steps": 4 * 16 * 40},
    })


@pytest.mark.parametrize("kind", ["plr", "accel"])
def test_the_learner_changes_exactly_on_the_steps_that_train(kind):
    from superlearner.engine import LEARNER_UPDATED, initial_state, make_engine

    # Episodes of at most 6 steps end inside every 16-step rollout, so levels are scored and the
    # buffer fills within a few steps; from then on steps replay (and train) or not at random.
    engine = make_engine(_tiny_maze_curriculum(kind=kind, replay_prob=0.5))
    state = initial_state(engine, 0)
    chunk = jax.jit(engine.train_chunk, static_argnums=1)
    seen = []
    for _ in range(14):
        new, metrics = chunk(state, 1)
        changed = any(not np.array_equal(a, b) for a, b in
                      zip(jax.tree.leaves(state.learner.params), jax.tree.leaves(new.learner.params)))
        updated = bool(metrics[LEARNER_UPDATED][0, 0] > 0)
        assert changed == updated
        # A skipped update computed nothing: its losses are NaN (null in the logs), never stale.
        assert np.isnan(metrics["loss_total"][0, 0]) == (not updated)
        seen.append(updated)
        state = new
    assert True in seen and False in seen


@pytest.mark.parametrize("score", ["learnability", "pvl"])
def test_accel_scores_levels_by_learnability_when_asked(score):
    from superlearner.engine import initial_state, make_engine

    engine = make_engine(_tiny_maze_curriculum(kind="accel", score=score))
    state, _ = jax.jit(engine.train_chunk, static_argnums=1)(initial_state(engine, 0), 12)
    buffer = jax.tree.map(lambda x: np.asarray(x[0]), state.curriculum["buffer"])
    filled = np.arange(12) < buffer.size
    assert filled.sum() >= 3
    scores, rates = buffer.scores[filled], buffer.success_rates[filled]
    if score == "learnability":
        # Every stored score is p (1 - p) of the stored (Beta-smoothed) success rate, which the
        # prior keeps off 0 and 1, so no level scores exactly zero.
        np.testing.assert_allclose(scores, rates * (1.0 - rates), rtol=1e-6)
        assert ((rates > 0.0) & (rates < 1.0)).all() and (scores > 0.0).all()
    else:
        assert not np.allclose(scores, rates * (1.0 - rates))


# ------------------------------------------------------------------------------------------------
# The teacher inside the engine (curriculum.kind: lp).


def _lp_config(**curriculum):
    from superlearner.config import config_from_dict

    return config_from_dict({
        "env": {"id": "cartpole"},
        "learner": {"num_envs": 4, "num_steps": 64, "num_minibatches": 2, "num_epochs": 1, "hidden_sizes": [16]},
        "curriculum": {"kind": "lp", "lp_field": "length", "lp_low": 0.1, "lp_high": 2.0, "lp_bins": 5, **curriculum},
        "train": {"total_env_steps": 4 * 64 * 3},
    })


def test_an_episode_that_ends_mid_rollout_restarts_on_the_level_the_teacher_chose():
    """With ``reset_params``, env n's episode that ends at step t is followed by one on
    ``reset_params[t, n]``: after the rollout each env plays the level of its last reset."""
    from superlearner.engine import initial_state, make_engine
    from superlearner.learners.rollout import collect_single_agent

    engine = make_engine(_lp_config())
    state = initial_state(engine, 0)
    member = jax.tree.map(lambda x: x[0], (state.learner, state.env_state, state.episode_stats, state.env_params))
    learner, env_state, stats, env_params = member
    num_steps, num_envs = 64, 4
    t = np.arange(num_steps)[:, None]
    n = np.arange(num_envs)[None, :]
    marks = (1.0 + 0.01 * t + 0.001 * n).astype(np.float32)  # a distinct length per (t, n)
    base = engine.env.default_params
    reset_params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_steps, num_envs) + jnp.shape(x)), base).replace(
        length=jnp.asarray(marks))
    _, _, rollout, levels, finished = jax.jit(
        lambda s, st, p, k: collect_single_agent(engine.env, engine.learner, learner.params, s, st, p, k,
                                                 num_steps, True, reset_params=reset_params)
    )(env_state, stats, env_params, jax.random.key(3))
    done = np.asarray(finished["done"])
    np.testing.assert_array_equal(done, np.asarray(rollout.continue_) == 0)
    assert done.any(axis=0).all(), "every env should finish an episode in 64 random-policy steps"
    for env_index in range(num_envs):
        last = np.flatnonzero(done[:, env_index])[-1]
        assert float(levels.length[env_index]) == pytest.approx(marks[last, env_index])


def test_teacher_credits_each_outcome_to_the_bin_its_episode_played():
    from superlearner.engine import initial_curriculum_hparams, make_engine

    from superlearner.engine import make_teacher

    engine = make_engine(_lp_config())
    teacher = make_teacher(engine.config, engine.env)
    hparams = jax.tree.map(lambda x: x[0], initial_curriculum_hparams(engine.config))
    curriculum = {"teacher": teacher.init(), "bins": jnp.array([0, 1], jnp.int32), "hparams": hparams}
    # Env 0 ends an episode at t=0 (bin 0, success) and t=2 (bin 3, failure); env 1 at t=1 (bin 1, failure).
    next_bins = jnp.array([[3, 4], [2, 2], [4, 4]], jnp.int32)
    done = jnp.array([[True, False], [False, True], [True, False]])
    returns = jnp.array([[500.0, 0.0], [0.0, 12.0], [20.0, 0.0]])
    curriculum, metrics = teacher.observe(curriculum, next_bins, {"done": done, "episode_return": returns})
    np.testing.assert_array_equal(curriculum["teacher"].counts, [1, 1, 0, 1, 0])
    np.testing.assert_allclose(curriculum["teacher"].fast, [1.0, 0.0, 0.0, 0.0, 0.0])
    # After the rollout env 0 plays bin 4 (its reset at t=2), env 1 bin 2 (its reset at t=1).
    np.testing.assert_array_equal(curriculum["bins"], [4, 2])
    assert float(metrics["curriculum_success_rate"]) == pytest.approx(1 / 3)


def test_lp_engine_keeps_levels_in_range_and_counts_every_finished_episode():
    from superlearner.engine import initial_state, make_engine

    engine = make_engine(_lp_config())
    state = initial_state(engine, 0)
    lengths = np.asarray(state.env_params.length)
    assert lengths.min() >= 0.1 and lengths.max() <= 2.0 and len(np.unique(lengths)) > 1
    start_episodes = int(state.episode_stats.num_episodes.sum())
    state, _ = jax.jit(engine.train_chunk, static_argnums=1)(state, 2)
    finished = int(state.episode_stats.num_episodes.sum()) - start_episodes
    assert int(state.curriculum["teacher"].counts.sum()) == finished > 0


def test_lp_config_errors_name_the_setting():
    from superlearner.engine import make_engine
    from superlearner.errors import ConfigError, UserError

    with pytest.raises(UserError, match="no field 'lenght'"):
        make_engine(_lp_config(lp_field="lenght"))
    with pytest.raises(ConfigError, match="lp_low=2.0 must be below"):
        make_engine(_lp_config(lp_low=2.0, lp_high=1.0))
