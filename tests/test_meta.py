"""Meta-controllers and declared hyperparameters, checked against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superlearner.errors import UserError
from superlearner.learners.ppo import PPOHparams
from superlearner.meta.controllers import (
    PPO_HPARAM_SPECS,
    HparamSpec,
    PBTState,
    PopulationState,
    ReturnHistory,
    SWUCBState,
    clip_to_bounds,
    explore_hparams,
    from_unconstrained,
    gather_members,
    init_return_history,
    learning_progress,
    make_pbt,
    make_sw_ucb,
    normalized_return,
    num_truncated,
    push_returns,
    recent_mean,
    returns_in_order,
    sample_hparams,
    select_specs,
    to_unconstrained,
    truncation_selection,
)

BASE = PPOHparams.from_values(
    learning_rate=2.5e-4, ent_coef=0.01, vf_coef=0.5, gamma=0.99, gae_lambda=0.95, clip_eps=0.2,
    max_grad_norm=0.5, adam_eps=1e-5,
)


def ppo_hparams(size, **values):
    """PPOHparams [size], BASE values unless given (a value may be a list per member)."""
    fields = {name: getattr(BASE, name) for name in PPOHparams.__dataclass_fields__}
    fields.update(values)
    return PPOHparams(**{k: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (size,)) for k, v in fields.items()})


def population(size, seed=0):
    """A population whose every leaf differs per member, with several dtypes and nestings."""
    member = jnp.arange(size, dtype=jnp.float32)
    learner = {
        "params": {"w": member[:, None, None] + jnp.arange(6.0).reshape(2, 3), "b": member * 10},
        "opt_state": (member[:, None] * jnp.ones(3) + 0.5, jnp.arange(size, dtype=jnp.int32) * 7),
        "num_updates": jnp.arange(size, dtype=jnp.int32) + 100,
    }
    hparams = ppo_hparams(size, learning_rate=10.0 ** -(member + 2), ent_coef=0.001 * (member + 1))
    rng = jax.random.key_data(jax.random.split(jax.random.key(seed), size))
    return PopulationState(learner=learner, hparams=hparams, rng=rng)


def assert_tree_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def member(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def numpy_step(spec, x, factor):
    """A value after one explore step, by hand in float64: ``log`` scales the value, ``logit``
    the odds, ``affine`` moves by ``log(factor)`` of the range; then clipped."""
    if spec.transform == "log":
        y = x * factor
    elif spec.transform == "logit":
        odds = x / (1 - x) * factor
        y = odds / (1 + odds)
    else:
        y = x + math.log(factor) * (spec.high - spec.low)
    return min(max(y, spec.low), spec.high)


# ----------------------------------------------------------------------------------------------
# Declared hyperparameters.


def test_transforms_match_hand_values_and_round_trip():
    log = HparamSpec("learning_rate", 1e-6, 1e-1, "log")
    logit = HparamSpec("gamma", 0.9, 0.9999, "logit")
    affine = HparamSpec("clip_eps", 0.05, 0.5, "affine")
    assert np.isclose(log.to_unconstrained(jnp.float32(0.01)), math.log(0.01), rtol=1e-6)
    assert np.isclose(logit.to_unconstrained(jnp.float32(0.99)), math.log(99.0), rtol=1e-4)
    assert np.isclose(affine.to_unconstrained(jnp.float32(0.275)), 0.5, rtol=1e-6)
    assert np.allclose(logit.unconstrained_bounds, (math.log(9.0), math.log(9999.0)))

    specs = (log, logit, affine)
    hparams = ppo_hparams(5, learning_rate=[1e-6, 1e-4, 3e-3, 0.05, 0.1], gamma=[0.9, 0.95, 0.99, 0.999, 0.9999],
                          clip_eps=[0.05, 0.1, 0.2, 0.3, 0.5])

    def round_trip(h):
        return from_unconstrained(to_unconstrained(h, specs), specs, h)

    for fn in (round_trip, jax.jit(round_trip)):
        u = to_unconstrained(hparams, specs)
        assert u.shape == (5, 3) and u.dtype == jnp.float32
        back = fn(hparams)
        for name in ("learning_rate", "gamma", "clip_eps"):
            np.testing.assert_allclose(getattr(back, name), getattr(hparams, name), rtol=2e-6)
            assert getattr(back, name).dtype == jnp.float32
        np.testing.assert_array_equal(back.vf_coef, hparams.vf_coef)  # no spec: untouched
    # One member at a time under vmap gives the same numbers.
    per_member = jax.vmap(lambda h: to_unconstrained(h, specs))(hparams)
    np.testing.assert_allclose(per_member, to_unconstrained(hparams, specs), rtol=1e-6)


def test_dict_hparams_work_too():
    specs = (HparamSpec("lr", 1e-4, 1e-2, "log"),)
    hparams = {"lr": jnp.asarray([1e-3, 1e-1], jnp.float32), "other": jnp.zeros(2)}
    clipped = clip_to_bounds(hparams, specs)
    np.testing.assert_allclose(clipped["lr"], [1e-3, 1e-2], rtol=1e-6)
    assert clipped["other"] is hparams["other"]


def test_bad_specs_and_fields_raise_user_errors():
    for args in [
        ("lr", 1e-3, 1e-1, "sqrt"),
        ("lr", 0.1, 0.1, "log"),
        ("lr", 0.0, 0.1, "log"),
        ("gamma", 0.9, 1.0, "logit"),
        ("lr", float("nan"), 0.1, "affine"),
    ]:
        with pytest.raises(UserError):
            HparamSpec(*args)
    with pytest.raises(UserError, match="not a field"):
        to_unconstrained(BASE, (HparamSpec("learning_rat", 1e-5, 1e-1),))
    with pytest.raises(UserError, match="more than once"):
        clip_to_bounds(BASE, (HparamSpec("gamma", 0.9, 0.99, "logit"),) * 2)
    with pytest.raises(UserError, match="no hparam spec"):
        select_specs(["learning_rat"])


def test_default_table_covers_ppo_fields_and_contains_the_defaults():
    names = {spec.name for spec in PPO_HPARAM_SPECS}
    assert names <= set(PPOHparams.__dataclass_fields__)
    assert names == set(PPOHparams.__dataclass_fields__) - {"adam_eps"}
    for spec in PPO_HPARAM_SPECS:
        assert spec.low <= float(getattr(BASE, spec.name)) <= spec.high


def test_clip_to_bounds_by_hand():
    hparams = ppo_hparams(3, learning_rate=[1e-7, 1e-3, 1.0], gamma=[0.5, 0.99, 1.0])
    specs = select_specs(["learning_rate", "gamma"])
    for fn in (clip_to_bounds, jax.jit(clip_to_bounds, static_argnums=1)):
        clipped = fn(hparams, specs)
        np.testing.assert_allclose(clipped.learning_rate, [1e-6, 1e-3, 1e-1], rtol=1e-6)
        np.testing.assert_allclose(clipped.gamma, [0.9, 0.99, 0.9999], rtol=1e-6)


def test_sample_hparams_is_log_uniform_within_the_range():
    specs = select_specs(["learning_rate", "gamma"], learning_rate=(1e-5, 1e-1))
    assert specs[0].low == 1e-5 and specs[1] == PPO_HPARAM_SPECS[3]
    key = jax.random.key(0)
    sampled = sample_hparams(key, specs, 4000, BASE)
    again = jax.jit(sample_hparams, static_argnums=(1, 2))(key, specs, 4000, BASE)
    np.testing.assert_allclose(again.learning_rate, sampled.learning_rate, rtol=1e-6)
    lr = np.asarray(sampled.learning_rate)
    assert lr.shape == (4000,) and lr.dtype == np.float32
    assert lr.min() >= np.float32(1e-5) and lr.max() <= np.float32(1e-1)
    # Log-uniform on [1e-5, 1e-1]: log10 is uniform on [-5, -1], a quarter per decade.
    decades = np.histogram(np.log10(lr), bins=[-5, -4, -3, -2, -1])[0] / 4000
    np.testing.assert_allclose(decades, 0.25, atol=0.03)
    gamma = np.asarray(sampled.gamma)
    assert gamma.min() >= np.float32(0.9) and gamma.max() <= np.float32(0.9999)
    np.testing.assert_array_equal(sampled.vf_coef, np.full(4000, 0.5, np.float32))


def test_explore_multiplies_by_the_factor_inside_the_bounds():
    specs = select_specs(["learning_rate", "gamma"])
    hparams = ppo_hparams(64, learning_rate=1e-3, gamma=0.99)
    explored = jax.jit(explore_hparams, static_argnums=(2,))(jax.random.key(1), hparams, specs)
    ratio = np.asarray(explored.learning_rate) / 1e-3
    assert np.all(np.isclose(ratio, 1.25, rtol=1e-5) | np.isclose(ratio, 0.8, rtol=1e-5))
    assert 0 < np.isclose(ratio, 1.25, rtol=1e-5).sum() < 64  # both directions happen
    odds = np.asarray(explored.gamma, np.float64) / (1 - np.asarray(explored.gamma, np.float64)) / 99.0
    assert np.all(np.isclose(odds, 1.25, rtol=1e-3) | np.isclose(odds, 0.8, rtol=1e-3))
    np.testing.assert_array_equal(explored.vf_coef, hparams.vf_coef)


def test_explore_stays_within_bounds_over_many_draws():
    specs = PPO_HPARAM_SPECS + (HparamSpec("adam_eps", 1e-8, 1e-3, "affine"),)
    # A third of the members start at the lower bound, a third at the upper, a third inside.
    size = 3000
    values = {}
    for spec in specs:
        middle = sum(spec.unconstrained_bounds) / 2
        inside = math.exp(middle) if spec.transform == "log" else (spec.low + spec.high) / 2
        values[spec.name] = jnp.repeat(jnp.asarray([spec.low, spec.high, inside], jnp.float32), size // 3)
    hparams = PPOHparams(**values)

    def many_steps(key, resample_probability):
        def step(h, step_key):
            return explore_hparams(step_key, h, specs, 1.25, resample_probability), None

        return jax.lax.scan(step, hparams, jax.random.split(key, 20))[0]

    # Pure perturbation, half resampling, pure resampling (the probability is traced).
    probabilities = jnp.asarray([0.0, 0.5, 1.0])
    explored = jax.jit(jax.vmap(many_steps))(jax.random.split(jax.random.key(2), 3), probabilities)
    for spec in specs:
        x = np.asarray(getattr(explored, spec.name))
        assert x.min() >= np.float32(spec.low), spec.name
        assert x.max() <= np.float32(spec.high), spec.name
        assert np.isfinite(x).all()
        for row in x:
            assert len(np.unique(row)) > 10  # it did move


# ----------------------------------------------------------------------------------------------
# Population based training.


def test_num_truncated_by_hand():
    assert [num_truncated(p, 0.25) for p in (1, 2, 3, 4, 8, 10, 16)] == [0, 1, 1, 1, 2, 3, 4]
    assert num_truncated(10, 0.2) == 2 and num_truncated(30, 0.1) == 3 and num_truncated(5, 0.5) == 2


def test_exploit_copies_every_part_of_the_parent_and_nothing_else():
    size = 4
    pop = population(size)
    progress = jnp.asarray([3.0, 0.0, 2.0, 1.0])  # member 1 is the worst, member 0 the best
    specs = PPO_HPARAM_SPECS
    pbt = make_pbt(specs, ready_iterations=1)
    state = pbt.init(size, jax.random.key(0))
    for update in (pbt.update, jax.jit(pbt.update)):
        new_state, new_pop, events = update(state, pop, progress, jax.random.key(3))
        np.testing.assert_array_equal(events.did_exploit, [False, True, False, False])
        np.testing.assert_array_equal(events.parent, [0, 0, 2, 3])
        assert bool(events.due)
        for i in (0, 2, 3):  # bit for bit untouched
            assert_tree_equal(member(new_pop, i), member(pop, i))
        assert_tree_equal(member(new_pop.learner, 1), member(pop.learner, 0))
        expected_rng = jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(pop.rng[0]), 1))
        np.testing.assert_array_equal(new_pop.rng[1], expected_rng)
        assert not np.array_equal(new_pop.rng[1], pop.rng[0])  # the copy plays other games
        # Explored hparams: the parent's value moved one step; unspec'd fields copied.
        for spec in specs:
            parent_value = float(getattr(pop.hparams, spec.name)[0])
            got = float(getattr(new_pop.hparams, spec.name)[1])
            moved = [numpy_step(spec, parent_value, factor) for factor in (1.25, 0.8)]
            assert np.isclose(got, moved, rtol=1e-5).any(), spec.name
        np.testing.assert_array_equal(new_pop.hparams.adam_eps[1], pop.hparams.adam_eps[0])
        np.testing.assert_array_equal(new_state.iterations_since_exploit, [1, 0, 1, 1])
        np.testing.assert_array_equal(new_state.parents[0], [0, 0, 2, 3])


def test_not_due_is_an_exact_no_op():
    size = 4
    pop = population(size)
    pbt = make_pbt(ready_iterations=3)
    state = pbt.init(size, jax.random.key(0))
    update = jax.jit(pbt.update)
    for call in range(1, 3):
        state, new_pop, events = update(state, pop, jnp.asarray([3.0, 0.0, 2.0, 1.0]), jax.random.key(call))
        assert not bool(events.due) and not events.did_exploit.any()
        np.testing.assert_array_equal(events.parent, np.arange(size))
        assert_tree_equal(new_pop, pop)
        assert int(state.num_calls) == call and int(state.generation) == 0
        np.testing.assert_array_equal(state.parents, -np.ones((32, size)))
    state, new_pop, events = update(state, pop, jnp.asarray([3.0, 0.0, 2.0, 1.0]), jax.random.key(3))
    assert bool(events.due) and int(state.generation) == 1
    assert events.did_exploit.tolist() == [False, True, False, False]


def test_no_member_is_exploited_before_it_is_ready():
    size = 4
    pbt = make_pbt((), ready_iterations=5, interval=1)  # a generation at every call
    state = pbt.init(size, jax.random.key(0))
    pop = population(size)
    progress = jnp.asarray([0.0, 1.0, 2.0, 3.0])  # member 0 stays the worst
    update = jax.jit(pbt.update)
    exploited_at = []
    for call in range(1, 13):
        state, pop, events = update(state, pop, progress, jax.random.key(call))
        assert bool(events.due)
        # Only the bottom member may go, and only with 5 calls behind it since its last copy.
        assert not events.did_exploit[1:].any()
        if events.did_exploit[0]:
            exploited_at.append(call)
            assert int(events.parent[0]) == 3
            assert_tree_equal(member(pop.hparams, 0), member(pop.hparams, 3))  # no specs: exact copy
    assert exploited_at == [5, 10]
    np.testing.assert_array_equal(state.iterations_since_exploit, [2, 12, 12, 12])


def test_a_measured_progress_runs_only_at_due_steps_and_acts_like_the_array():
    """A zero-argument progress (games against anchors, say) is measured at generation steps and
    pulls only, inside the compiled update, and then decides exactly what the array would."""
    size = 4
    values = jnp.asarray([3.0, 0.0, 2.0, 1.0])
    measured = []

    def progress():
        jax.debug.callback(lambda: measured.append(1))
        return values

    for controller in (make_pbt(ready_iterations=3), make_sw_ucb({"gamma": [0.9, 0.99]}, window=4, pull_interval=3)):
        measured.clear()
        update_array = jax.jit(controller.update)
        update_measured = jax.jit(lambda s, p, k, c=controller: c.update(s, p, progress, k))
        state_a = state_m = controller.init(size, jax.random.key(0))
        pop_a = pop_m = population(size)
        for call in range(7):
            key = jax.random.key(call)
            state_a, pop_a, events_a = update_array(state_a, pop_a, values, key)
            state_m, pop_m, events_m = update_measured(state_m, pop_m, key)
            jax.block_until_ready(events_m)
            assert_tree_equal((state_a, pop_a, events_a), (state_m, pop_m, events_m))
        # PBT is due at calls 3 and 6; the bandit pulls at calls 1, 4 and 7.
        assert len(measured) == (2 if isinstance(state_a, PBTState) else 3)


def test_lineage_ring_records_the_last_generations():
    size = 4
    pbt = make_pbt((), ready_iterations=0, interval=1, lineage_length=3)
    state = pbt.init(size, jax.random.key(0))
    pop = population(size)
    fitness_by_generation = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [0, 3, 1, 2], [2, 1, 0, 3]]
    # With one member cut per generation: the worst copies the best.
    expected = [[3, 1, 2, 3], [0, 1, 2, 0], [0, 2, 2, 3], [1, 1, 2, 3], [0, 1, 3, 3]]
    update = jax.jit(pbt.update)
    for g, fitness in enumerate(fitness_by_generation):
        state, pop, events = update(state, pop, jnp.asarray(fitness, jnp.float32), jax.random.key(g))
        np.testing.assert_array_equal(events.parent, expected[g])
    assert int(state.generation) == 5
    # Generation g lives in row g % 3: rows hold generations 3, 4, 2.
    np.testing.assert_array_equal(state.parents, [expected[3], expected[4], expected[2]])


def test_truncation_selection_with_ties():
    fitness = jnp.asarray([5.0, 1.0, 1.0, 1.0, 9.0, 9.0, 3.0, 9.0])
    eligible = jnp.ones(8, bool)
    select = jax.jit(truncation_selection, static_argnums=3)
    keys = jax.random.split(jax.random.key(0), 200)
    parents, replaced = jax.vmap(select, in_axes=(0, None, None, None))(keys, fitness, eligible, 2)
    parents, replaced = np.asarray(parents), np.asarray(replaced)
    assert (replaced.sum(1) == 2).all()
    assert not replaced[:, [0, 4, 5, 6, 7]].any()  # only the three tied at the bottom may go
    assert replaced[:, [1, 2, 3]].sum(0).min() > 50  # the tie is broken at random, fairly
    assert np.isin(parents[replaced], [4, 5, 7]).all()  # parents come from the tied top
    assert (parents[~replaced] == np.broadcast_to(np.arange(8), (200, 8))[~replaced]).all()
    # All tied: nobody is strictly better, nobody is copied.
    _, none = select(keys[0], jnp.ones(8), eligible, 2)
    assert not none.any()
    # NaN counts as worst.
    nan_first = jnp.asarray([jnp.nan, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    parent, nan_replaced = select(keys[0], nan_first, eligible, 2)
    assert nan_replaced.tolist() == [True, True] + [False] * 6
    assert set(np.asarray(parent[:2]).tolist()) <= {6, 7}
    # Ineligible bottom members stay.
    _, held = select(keys[0], fitness, jnp.zeros(8, bool), 2)
    assert not held.any()


def test_pbt_under_vmap_matches_separate_runs():
    size, runs = 4, 3
    pbt = make_pbt(select_specs(["learning_rate", "gamma"]), ready_iterations=1)
    states = jax.tree.map(lambda x: jnp.stack([x] * runs), pbt.init(size, jax.random.key(0)))
    pops = jax.jit(jax.vmap(lambda seed: population(size, seed)))(jnp.arange(runs))
    progress = jnp.asarray([[3.0, 0.0, 2.0, 1.0], [0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    keys = jax.random.split(jax.random.key(1), runs)
    batched = jax.jit(jax.vmap(pbt.update))(states, pops, progress, keys)
    single_update = jax.jit(pbt.update)
    for r in range(runs):
        single = single_update(member(states, r), member(pops, r), progress[r], keys[r])
        for x, y in zip(jax.tree.leaves(single), jax.tree.leaves(member(batched, r))):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)
    np.testing.assert_array_equal(batched[2].did_exploit[2], [False] * 4)  # all tied: no copy


def test_typed_key_streams_are_supported():
    size = 4
    pop = population(size).replace(rng=jax.random.split(jax.random.key(5), size))
    pbt = make_pbt((), ready_iterations=0, interval=1)
    _, new_pop, _ = pbt.update(pbt.init(size, jax.random.key(0)), pop, jnp.arange(4.0), jax.random.key(1))
    assert jnp.issubdtype(new_pop.rng.dtype, jax.dtypes.prng_key)
    expected = jax.random.key_data(jax.random.fold_in(pop.rng[3], 0))
    np.testing.assert_array_equal(jax.random.key_data(new_pop.rng[0]), expected)
    np.testing.assert_array_equal(jax.random.key_data(new_pop.rng[1:]), jax.random.key_data(pop.rng[1:]))


def test_events_parent_carries_other_member_state():
    history = init_return_history(4, 3)
    history = push_returns(history, jnp.asarray([1.0, 2.0, 3.0, 4.0]), mask=jnp.asarray([True, True, True, False]))
    carried = gather_members(history, jnp.asarray([0, 0, 2, 3]))
    np.testing.assert_array_equal(carried.values[1], history.values[0])
    np.testing.assert_array_equal(carried.count, [1, 1, 1, 0])


def test_bad_pbt_options_raise_user_errors():
    for options in [
        dict(truncation_fraction=0.0), dict(truncation_fraction=0.6), dict(ready_iterations=-1),
        dict(interval=0), dict(perturb_factor=0.8), dict(resample_probability=1.5), dict(lineage_length=0),
        dict(ready_iterations=2.5),
    ]:
        with pytest.raises(UserError):
            make_pbt(**options)
    pbt = make_pbt()
    with pytest.raises(UserError, match="population_size"):
        pbt.init(0, jax.random.key(0))
    with pytest.raises(UserError, match="made for 4 members"):
        pbt.update(pbt.init(4, jax.random.key(0)), population(3), jnp.zeros(3), jax.random.key(1))


# ----------------------------------------------------------------------------------------------
# Sliding-window UCB bandit.


def test_bandit_pulls_credits_and_writes_arm_values_by_hand():
    size = 2
    arms = {"gamma": [0.9, 0.99], "gae_lambda": [0.8, 0.95]}
    bandit = make_sw_ucb(arms, window=4, pull_interval=2, exploration=0.0)
    state = bandit.init(size, jax.random.key(0))
    pop = population(size)
    update = jax.jit(bandit.update)

    # Call 1 pulls at once (untried arms are drawn at random) and credits nothing.
    state, pop, events = update(state, pop, jnp.asarray([0.0, 0.0]), jax.random.key(1))
    first = np.asarray(events.arm)
    assert bool(events.due) and (events.reward == 0).all() and int(state.num_rewards) == 0
    np.testing.assert_allclose(pop.hparams.gamma, np.asarray([0.9, 0.99], np.float32)[first])
    np.testing.assert_allclose(pop.hparams.gae_lambda, np.asarray([0.8, 0.95], np.float32)[first])
    # Call 2 is between pulls: nothing changes.
    before = pop
    state, pop, events = update(state, pop, jnp.asarray([5.0, 5.0]), jax.random.key(2))
    assert not bool(events.due)
    assert_tree_equal(pop, before)
    np.testing.assert_array_equal(events.arm, first)
    # Call 3 credits the progress change since call 1; the untried arm is pulled next.
    state, pop, events = update(state, pop, jnp.asarray([1.5, -2.0]), jax.random.key(3))
    np.testing.assert_allclose(events.reward, [1.5, -2.0])
    np.testing.assert_array_equal(state.arm_history[:, 0], first)
    np.testing.assert_array_equal(events.arm, 1 - first)
    # Call 5: both arms tried once; with no exploration bonus member 0 goes back to its better
    # first arm, member 1 stays on the second (0.5 > -2.0).
    state, pop, _ = update(state, pop, jnp.asarray([1.5, -2.0]), jax.random.key(4))
    state, pop, events = update(state, pop, jnp.asarray([1.0, -1.5]), jax.random.key(5))
    np.testing.assert_allclose(events.reward, [-0.5, 0.5])
    np.testing.assert_array_equal(events.arm, [first[0], 1 - first[1]])
    assert int(state.num_calls) == 5 and int(state.num_rewards) == 2


def _run_bandit(window, pre, post, num_pre, num_post, size=8, noise=0.05, exploration=0.1):
    """Pulls every call; progress grows by the pulled arm's mean reward plus noise."""
    bandit = make_sw_ucb({"gamma": [0.9, 0.99, 0.999]}, window=window, exploration=exploration)
    means = jnp.asarray([pre] * num_pre + [post] * num_post, jnp.float32)

    def body(carry, mean):
        state, pop, progress, key = carry
        key, pull_key, noise_key = jax.random.split(key, 3)
        state, pop, events = bandit.update(state, pop, progress, pull_key)
        progress = progress + mean[events.arm] + noise * jax.random.normal(noise_key, (size,))
        return (state, pop, progress, key), events.arm

    carry = (bandit.init(size, jax.random.key(0)), population(size), jnp.zeros(size), jax.random.key(1))
    (state, pop, _, _), arms = jax.jit(lambda c: jax.lax.scan(body, c, means))(carry)
    return state, pop, np.asarray(arms)


def test_bandit_converges_then_switches_after_a_change_thanks_to_the_window():
    pre, post = [0.2, 0.8, 0.5], [0.8, 0.2, 0.5]
    state, pop, arms = _run_bandit(50, pre, post, 300, 200)
    assert (arms[200:300] == 1).mean() > 0.85  # the stationary best arm
    assert (arms[-100:] == 0).mean() > 0.85  # the new best arm after the change
    np.testing.assert_allclose(pop.hparams.gamma, np.asarray([0.9, 0.99, 0.999], np.float32)[arms[-1]])
    # Without forgetting (a window longer than the run) the stale arm keeps its lead.
    _, _, arms_no_window = _run_bandit(500, pre, post, 300, 200)
    assert (arms_no_window[200:300] == 1).mean() > 0.85
    assert (arms_no_window[-100:] == 0).mean() < 0.2


def test_bad_bandit_options_raise_user_errors():
    for arms, options in [
        ({}, {}), ({"gamma": []}, {}), ({"gamma": [0.9, 0.99], "gae_lambda": [0.9]}, {}),
        ({"gamma": [0.9]}, dict(window=0)), ({"gamma": [0.9]}, dict(exploration=-1.0)),
    ]:
        with pytest.raises(UserError):
            make_sw_ucb(arms, **options)
    bandit = make_sw_ucb({"gama": [0.9, 0.99]})
    with pytest.raises(UserError, match="not a field"):
        bandit.update(bandit.init(2, jax.random.key(0)), population(2), jnp.zeros(2), jax.random.key(1))


# ----------------------------------------------------------------------------------------------
# Both controllers: compiled once, fixed-shape state.


@pytest.mark.parametrize("kind", ["pbt", "sw_ucb"])
def test_new_hparam_values_do_not_recompile_and_state_shapes_are_fixed(kind):
    size = 4
    if kind == "pbt":
        controller = make_pbt(ready_iterations=1)
    else:
        controller = make_sw_ucb({"gamma": [0.9, 0.99, 0.999]}, window=5)
    state = controller.init(size, jax.random.key(0))
    initial = state
    update = jax.jit(controller.update)
    pop = population(size)
    with jax.debug_key_reuse(True):
        for call in range(6):
            lr = 10.0 ** -(call + 2.0)
            pop = pop.replace(hparams=pop.hparams.replace(learning_rate=jnp.full((size,), lr, jnp.float32)))
            progress = jax.random.normal(jax.random.key(100 + call), (size,))
            state, pop, events = update(state, pop, progress, jax.random.key(call))
    assert update._cache_size() == 1
    # The controller state keeps its structure, shapes and dtypes, and holds only plain arrays.
    assert isinstance(state, PBTState if kind == "pbt" else SWUCBState)
    assert jax.tree.structure(state) == jax.tree.structure(initial)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(initial)):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert not jnp.issubdtype(a.dtype, jax.dtypes.prng_key)
    assert int(state.num_calls) == 6
    for leaf in jax.tree.leaves(events):
        assert leaf.shape in ((), (size,))


# ----------------------------------------------------------------------------------------------
# Progress signals.


def test_learning_progress_and_normalized_return_by_hand():
    np.testing.assert_allclose(learning_progress(jnp.asarray([1.0, 3.0, 5.0, 7.0])), 2.0, rtol=1e-6)
    # Least squares on (0, 0), (1, 2), (2, 1): slope 0.5.
    np.testing.assert_allclose(learning_progress(jnp.asarray([0.0, 2.0, 1.0])), 0.5, rtol=1e-6)
    masked = learning_progress(jnp.asarray([4.0, jnp.nan, 0.0, 6.0]), jnp.asarray([False, False, True, True]))
    np.testing.assert_allclose(masked, 6.0, rtol=1e-6)
    assert float(learning_progress(jnp.asarray([1.0, 2.0]), jnp.asarray([True, False]))) == 0.0
    batch = jnp.asarray([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    np.testing.assert_allclose(jax.jit(learning_progress)(batch), [1.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(learning_progress)(batch), [1.0, -1.0], rtol=1e-6)
    normalized = normalized_return(jnp.asarray([22.0, 500.0, 0.0]), 22.0, 500.0)
    np.testing.assert_allclose(normalized, [0.0, 1.0, -22 / 478], rtol=1e-6)


def test_return_history_ring_keeps_the_last_window_in_order():
    history = init_return_history(2, 3)
    push = jax.jit(push_returns)
    for value in [1.0, 2.0, 4.0, 8.0, 16.0]:
        history = push(history, jnp.asarray([value, -value]), jnp.asarray([True, value < 3]))
    assert isinstance(history, ReturnHistory)
    values, valid = returns_in_order(history)
    np.testing.assert_array_equal(values[0], [4.0, 8.0, 16.0])
    np.testing.assert_array_equal(valid[0], [True, True, True])
    np.testing.assert_array_equal(values[1][:2], [-1.0, -2.0])
    np.testing.assert_array_equal(valid[1], [True, True, False])
    np.testing.assert_array_equal(history.count, [5, 2])
    np.testing.assert_allclose(learning_progress(values, valid), [6.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(recent_mean(history), [28.0 / 3.0, -1.5], rtol=1e-6)
    assert np.isnan(recent_mean(init_return_history(1, 3))).all()


def test_joint_hparams_round_trip_and_name_the_curriculum_knobs():
    from superlearner.curriculum.levels import CurriculumHparams
    from superlearner.meta.controllers import joint_hparams, split_joint_hparams

    ppo, curriculum = BASE, CurriculumHparams.from_values(temperature=0.7)
    joint = joint_hparams(ppo, curriculum)
    assert float(joint["learning_rate"]) == pytest.approx(float(BASE.learning_rate)) and float(joint["curriculum_temperature"]) == pytest.approx(0.7)
    joint = dict(joint, learning_rate=jnp.float32(1e-3), curriculum_temperature=jnp.float32(2.0))
    new_ppo, new_curriculum = split_joint_hparams(joint, ppo, curriculum)
    assert float(new_ppo.learning_rate) == pytest.approx(1e-3) and float(new_curriculum.temperature) == 2.0
    assert float(new_curriculum.replay_prob) == float(curriculum.replay_prob) and float(new_ppo.gamma) == float(ppo.gamma)


def test_pbt_explores_and_copies_the_curriculum_knobs_the_sampler_reads():
    """The engine's PBT step on a maze run with robust PLR: the knobs live in the curriculum
    state (the sampler's only source), are drawn per member at the start, and an exploited
    member gets its parent's knobs moved by explore, while the parent keeps its own."""
    from superlearner.config import load_config
    from superlearner.engine import initial_state, make_engine, make_meta_controller, meta_step

    overrides = [
        "learner.memory=none", "learner.num_envs=4", "learner.num_steps=16", "learner.num_minibatches=1",
        "learner.num_epochs=1", "learner.hidden_sizes=[8]", "curriculum.capacity=16", "train.population_size=2",
        "meta.kind=pbt", "meta.adapt=[curriculum_temperature, curriculum_replay_prob]",
        "meta.init_low={curriculum_temperature: 0.05}", "meta.init_high={curriculum_temperature: 5.0}",
        "meta.interval=1", "meta.ready_iterations=0", "meta.truncation_fraction=0.5", "meta.progress_window=1",
        "train.total_env_steps=1024",
    ]
    config = load_config("maze_plr", overrides)
    engine = make_engine(config)
    start = initial_state(engine, 0)
    temperature = np.asarray(start.curriculum["hparams"].temperature)
    assert temperature.shape == (2,) and temperature[0] != temperature[1]
    assert np.all((0.05 <= temperature) & (temperature <= 5.0))  # drawn log-uniform in the range
    np.testing.assert_allclose(np.asarray(start.curriculum["hparams"].replay_prob), [0.8, 0.8])
    controller = make_meta_controller(config, engine.env)
    # Member 0 returns more, so member 1 (the worst half) becomes a copy of it.
    state, metrics = meta_step(controller, start, jnp.array([1.0, 0.0]), config=config)
    np.testing.assert_array_equal(np.asarray(metrics["meta_exploited"]), [0.0, 1.0])
    np.testing.assert_array_equal(np.asarray(metrics["meta_parent"]), [0.0, 0.0])
    knobs = state.curriculum["hparams"]
    new_temperature, new_replay = np.asarray(knobs.temperature), np.asarray(knobs.replay_prob)
    # Explore moves a copied value by log(1.25) in unconstrained space: a log knob is multiplied
    # or divided by 1.25, an affine one in [0, 1] moves by 0.223 (and is clipped to 1).
    assert np.isclose(new_temperature[1], temperature[0] * 1.25, rtol=1e-5) or np.isclose(
        new_temperature[1], temperature[0] / 1.25, rtol=1e-5)
    assert np.isclose(new_replay[1], 1.0) or np.isclose(new_replay[1], 0.8 - np.log(1.25), rtol=1e-5)
    assert new_temperature[0] == temperature[0] and new_replay[0] == np.float32(0.8)
    # The level buffer is copied with them, and the learner's hparams are untouched.
    for leaf in jax.tree.leaves(state.curriculum["buffer"]):
        np.testing.assert_array_equal(np.asarray(leaf[1]), np.asarray(leaf[0]))
    np.testing.assert_array_equal(np.asarray(state.hparams.learning_rate), np.asarray(start.hparams.learning_rate))


def test_curriculum_knobs_need_a_curriculum_and_pbt():
    from superlearner.config import load_config, validate_semantics
    from superlearner.errors import ConfigError

    with pytest.raises(ConfigError, match="curriculum_temperature is a curriculum knob, but curriculum.kind is none"):
        validate_semantics(load_config("cartpole_pbt", ["meta.adapt=[learning_rate, curriculum_temperature]"]))
    with pytest.raises(ConfigError, match="which only meta.kind pbt adapts"):
        validate_semantics(load_config("maze_metagrad", ["meta.adapt=[learning_rate, curriculum_replay_prob]"]))
    with pytest.raises(ConfigError, match="did you mean curriculum_temperature"):
        validate_semantics(load_config("maze_plr_pbt", ["meta.adapt=[curriculum_temprature]"]))
    validate_semantics(load_config("maze_plr_pbt", ["meta.adapt=[learning_rate, curriculum_temperature]"]))
    validate_semantics(load_config("maze_plr_pbt", ["meta.kind=none"]))  # the same start, not adapted
