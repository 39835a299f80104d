"""Memory estimates of compiled train chunks and the check that a run fits before it starts."""

import jax
import pytest

from superlearner.config import config_from_dict
from superlearner.engine import initial_state, make_engine
from superlearner.errors import UserError
from superlearner.run.memory import GIB, MemoryEstimate, check_fits, device_capacity, program_memory, tree_bytes


def _config(num_envs: int):
    return config_from_dict({
        "env": {"id": "cartpole"},
        "learner": {"num_envs": num_envs, "num_steps": 16, "num_minibatches": 2, "num_epochs": 1, "hidden_sizes": [16]},
        "train": {"total_env_steps": num_envs * 16 * 4},
    })


def _chunk_estimate(num_envs: int):
    engine = make_engine(_config(num_envs))
    state = initial_state(engine, 0)
    compiled = jax.jit(engine.train_chunk, static_argnums=1, donate_argnums=0).lower(state, 2).compile()
    return program_memory(compiled), state, engine.config


@pytest.fixture(scope="module")
def small():
    return _chunk_estimate(4)


def test_chunk_estimate_counts_the_state_and_grows_with_the_env_batch(small):
    small, state, _ = small
    large, _, _ = _chunk_estimate(256)
    # The chunk's inputs are exactly the TrainState.
    assert small.arguments == tree_bytes(state)
    assert small.peak >= small.arguments
    # Rollouts of 64x more envs need more state and more scratch space.
    assert large.arguments > small.arguments
    assert large.temporaries > small.temporaries


def test_check_fits_names_the_settings_to_lower(small):
    estimate, state, config = small
    check_fits(estimate, None, state=state, config=config)  # capacity unknown: no opinion
    check_fits(estimate, estimate.peak, state=state, config=config)  # exactly fits
    with pytest.raises(UserError) as info:
        check_fits(estimate, estimate.peak - 1, state=state, config=config, where="cpu:0")
    message = str(info.value)
    assert "\n" not in message and "cpu:0" in message
    assert "learner.num_envs (now 4)" in message


def test_peak_counts_outputs_that_do_not_reuse_donated_inputs():
    assert MemoryEstimate(arguments=10, outputs=10, temporaries=5, aliased=10).peak == 15
    assert MemoryEstimate(arguments=10, outputs=12, temporaries=5, aliased=4).peak == 23


def test_device_capacity_is_known_on_cpu():
    capacity = device_capacity(jax.local_devices()[0])
    assert capacity is not None and capacity > 0.5 * GIB


def test_train_refuses_a_run_that_would_not_fit_before_writing_anything(tmp_path, capsys):
    """A run whose compiled chunk needs more than the budget stops with one line naming the
    settings to lower, and leaves no run directory behind (nothing to clean up, nothing lost)."""
    from superlearner.cli.main import main

    run_dir = tmp_path / "run"
    code = main(["train", "cartpole_ppo", "--run-dir", str(run_dir), "--set", "train.memory_budget_gib=0.000001",
                 "--set", "learner.num_steps=16", "--set", "learner.hidden_sizes=[8]"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "is available" in err and "learner.num_envs (now 4)" in err
    assert not run_dir.exists()
