"""The learning-progress teacher against uniform task sampling on cartpole's pole lengths.

    python scripts/teacher_compare.py [--seeds 0 1 2] [--steps 1000000] [--out DIR]

Trains the `cartpole_lp` preset twice per seed at equal env steps: with the teacher
(curriculum.lp_epsilon as in the preset) and with uniform sampling over the same bins
(lp_epsilon=1.0, domain randomisation over the range). Each agent is then evaluated greedily on
50 episodes at the centre of each of the 10 length bins; success is a return of at least 475.
Prints one JSON line per run and a summary with 95% confidence intervals over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.run.agent import load_agent
from superlearner.run.checkpoint import latest_checkpoint
from superlearner.config import load_config
from superlearner.core.evaluate import run_episodes
from superlearner.run.trainer import train

# Student t quantiles (two-sided 95%) by degrees of freedom, for intervals over a few seeds.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def evaluate_over_bins(run_dir: Path, episodes_per_bin: int = 50, seed: int = 7) -> np.ndarray:
    """float[bins]: greedy success rate at the centre of each of the preset's length bins."""
    agent = load_agent(latest_checkpoint(run_dir))
    cc = agent.config.curriculum
    width = (cc.lp_high - cc.lp_low) / cc.lp_bins
    centres = cc.lp_low + width * (np.arange(cc.lp_bins) + 0.5)
    values = np.repeat(centres, episodes_per_bin).astype(np.float32)
    base = agent.env.default_params
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (values.size,) + jnp.shape(x)), base)
    params = params.replace(**{cc.lp_field: jnp.asarray(values)})
    returns = run_episodes(agent.env, lambda o, m, k: agent.act_batch(o, m, k), jax.random.key(seed), values.size,
                           env_params=params, params_batched=True)
    return (returns >= agent.env.reward_threshold).reshape(cc.lp_bins, episodes_per_bin).mean(axis=1)


def mean_ci(values: list[float]) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), T95.get(values.size - 1, 1.96) * float(values.std(ddof=1)) / math.sqrt(values.size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps per run (default 1e6)")
    parser.add_argument("--out", type=Path, default=Path("runs/teacher_compare"), help="where the runs go")
    args = parser.parse_args()
    results: dict[str, list[float]] = {"teacher": [], "uniform": []}
    for seed in args.seeds:
        for variant in results:
            overrides = ["log.tensorboard=false", f"train.seed={seed}", "train.eval_episodes=0",
                         f"train.total_env_steps={args.steps}"]
            if variant == "uniform":
                overrides.append("curriculum.lp_epsilon=1.0")
            run_dir = args.out / f"{variant}-{seed}"
            start = time.perf_counter()
            train(load_config("cartpole_lp", overrides), run_dir, show_progress=False)
            wall = time.perf_counter() - start
            per_bin = evaluate_over_bins(run_dir)
            results[variant].append(float(per_bin.mean()))
            print(json.dumps(dict(variant=variant, seed=seed, wall_s=round(wall, 1), mean_success=round(float(per_bin.mean()), 3),
                                  per_bin=per_bin.round(2).tolist())), flush=True)
    for variant, values in results.items():
        mean, half = mean_ci(values)
        print(f"{variant}: mean success over the length bins {mean:.3f} +- {half:.3f} (95% CI, {len(values)} seeds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
