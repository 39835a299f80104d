"""A tiny cartpole run shared by the tests of the run directory (resume, faults, locks, writes)."""

from __future__ import annotations

import json

import jax
import numpy as np

from superlearner.config import config_from_dict

PER_ITERATION = 4 * 16  # env steps per iteration: 4 envs x 16 steps
TINY = {
    "name": "tiny",
    "env": {"id": "cartpole"},
    "learner": {"num_envs": 4, "num_steps": 16, "num_minibatches": 2, "num_epochs": 2, "hidden_sizes": [16, 16],
                "anneal_lr": False},
    "train": {"total_env_steps": PER_ITERATION * 8, "iterations_per_chunk": 2, "checkpoint_every_chunks": 1,
              "keep_checkpoints": 10, "eval_episodes": 0},
    "log": {"tensorboard": False},
}


def tiny_config(iterations: int = 8, **learner):
    """The tiny run's config for ``iterations`` iterations, with ``learner`` settings changed."""
    raw = json.loads(json.dumps(TINY))
    raw["train"]["total_env_steps"] = PER_ITERATION * iterations
    raw["learner"].update(learner)
    return config_from_dict(raw)


def comparable(records):
    """Log records without the fields that depend on the machine's speed."""
    return [{k: v for k, v in r.items() if k not in ("wall_time", "steps_per_second")} for r in records]


def assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
