"""The maze curricula against domain randomisation, several seeds each, at equal env steps.

    python scripts/curriculum_compare.py [--methods dr plr accel sfl] [--seeds 0 1 2]
                                         [--steps 40000000] [--sampled 1000] [--out DIR]
                                         [--set KEY=VALUE ...]

Trains the `maze_<method>` presets (identical agent and budget) for every seed, then evaluates
each agent (actions sampled from its policy, 20 episodes per maze) on the named held-out mazes and on
``--sampled`` sampled solvable mazes with the worst 1% and 10% (CVaR, chosen on one
measurement and measured on another). Prints one JSON line per run and a table of the means
over seeds with 95% confidence intervals (Student t), then each method's paired difference from
domain randomisation on the seeds both ran; ``--results FILE`` prints the table from
the JSON lines of an earlier invocation instead of training.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import numpy as np

from superlearner.run.agent import load_agent
from superlearner.run.checkpoint import latest_checkpoint
from superlearner.config import load_config
from superlearner.cli.levels import evaluate_named_levels, evaluate_sampled_levels, sample_levels
from superlearner.run.trainer import train

# Student t quantiles (two-sided 95%) by degrees of freedom, for intervals over a few seeds.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}
COLUMNS = (("named", "named held-out mazes, mean solve rate"), ("sampled", "sampled mazes, mean solve rate"),
           ("cvar10", "CVaR 10% solve rate"), ("cvar1", "CVaR 1% solve rate"))


def evaluate_run(run_dir: Path, num_sampled: int, named_episodes: int = 20, seed: int = 11) -> dict:
    """Solve rates with actions sampled from the policy (a memoryless policy acting greedily in a
    partially observed maze walks in circles wherever two places look alike)."""
    agent = load_agent(latest_checkpoint(run_dir))
    act = agent.episode_act_fn(greedy=False)
    named = evaluate_named_levels(agent.env, act, jax.random.key(seed), agent.env.named_levels(), episodes=named_episodes)
    levels = sample_levels(agent.env, jax.random.key(seed + 1), num_sampled)
    sampled = evaluate_sampled_levels(agent.env, act, jax.random.key(seed + 2), levels)
    return dict(named=named["mean_solve_rate"], sampled=sampled["mean_solve_rate"],
                cvar10=sampled["cvar"]["10%"]["solve_rate"], cvar1=sampled["cvar"]["1%"]["solve_rate"],
                per_level={k: v["solve_rate"] for k, v in named["levels"].items()})


def mean_ci(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), T95.get(values.size - 1, 1.96) * float(values.std(ddof=1)) / math.sqrt(values.size)


def print_table(rows: list[dict]) -> None:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print("| method | seeds | " + " | ".join(title for _, title in COLUMNS) + " | wall s per run |")
    print("|---|---:|" + "---:|" * (len(COLUMNS) + 1))
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        cells = []
        for key, _ in COLUMNS:
            mean, half = mean_ci([r[key] for r in mine])
            cells.append(f"{mean:.3f} +- {half:.3f}")
        wall = np.mean([r["wall_s"] for r in mine])
        print(f"| {method} | {len(mine)} | " + " | ".join(cells) + f" | {wall:.0f} |")
    print_paired(rows)


def print_paired(rows: list[dict], baseline: str = "dr") -> None:
    """Each method minus the baseline over the seeds (`train.seed`) both were run with, with a
    95% interval over those seeds."""
    base = {r["seed"]: r for r in rows if r["method"] == baseline}
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] != baseline):
        pairs = [(r, base[r["seed"]]) for r in rows if r["method"] == method and r["seed"] in base]
        if len(pairs) < 2:
            continue
        cells = []
        for key, title in COLUMNS:
            mean, half = mean_ci([a[key] - b[key] for a, b in pairs])
            cells.append(f"{title.split(',')[0]} {mean:+.3f} +- {half:.3f}")
        print(f"{method} - {baseline}, paired over {len(pairs)} seeds: " + "; ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["dr", "plr", "accel", "sfl"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="env steps per run (default: the presets' budget)")
    parser.add_argument("--sampled", type=int, default=1000, help="sampled solvable mazes for the CVaR (default 1000)")
    parser.add_argument("--out", type=Path, default=Path("runs/curriculum_compare"), help="where the runs go")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run (as `superlearner train --set`), repeatable")
    parser.add_argument("--results", type=Path, default=None, help="print the table of these JSON lines and stop")
    args = parser.parse_args()
    if args.results is not None:
        rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.startswith("{")]
        print_table(rows)
        return 0
    if args.steps is None:
        budgets = {m: load_config(f"maze_{m}").train.total_env_steps for m in args.methods}
        if len(set(budgets.values())) > 1:
            parser.error(f"the presets' budgets differ ({budgets}); pass --steps N so every run has the same env steps")
    rows = []
    for seed in args.seeds:
        for method in args.methods:
            overrides = ["log.tensorboard=false", f"train.seed={seed}", *args.overrides]
            if args.steps is not None:
                overrides.append(f"train.total_env_steps={args.steps}")
            run_dir = args.out / f"{method}-{seed}"
            start = time.perf_counter()
            train(load_config(f"maze_{method}", overrides), run_dir, show_progress=False)
            wall = time.perf_counter() - start
            row = dict(method=method, seed=seed, wall_s=round(wall, 1), **evaluate_run(run_dir, args.sampled))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
