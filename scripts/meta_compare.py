"""Meta-learning against fixed hyperparameters, several seeds at equal env steps, as README tables.

    python scripts/meta_compare.py pbt [--seeds 0 1 2] [--steps 500000] [--out DIR]
    python scripts/meta_compare.py metagrad [--seeds 0 1 2] [--steps 150000] [--out DIR]
    python scripts/meta_compare.py selfplay [--seeds 0 1 2] [--steps 500000] [--out DIR]
    python scripts/meta_compare.py maze [--seeds 0 1 2] [--steps 2500000] [--out DIR]

``pbt``: the `cartpole_pbt` preset (8 members, learning rates log-uniform in [1e-5, 1e-1]) and
`cartpole_population` (the same start without adaptation). ``metagrad``: `cartpole_metagrad`
(online meta-gradients from cartpole_ppo's hyperparameters) and the same run with
``meta.kind=none`` (the fixed starting hyperparameters). Every member of every final state is
evaluated greedily (``--episodes`` episodes each). ``selfplay``: `connect_four_pbt` (8 self-play
members ranked by their score against the arena anchors) and `connect_four_population` (the
same start without adaptation); every member of every final state plays 400 greedy games
against each anchor, and the member with the best mean score is each run's best. ``maze``:
`maze_plr_pbt` (4 robust-PLR members, PBT on the learning rate, entropy coefficient and the
curriculum's replay probability and temperature) and the same start with ``meta.kind=none``; the
member `load_agent` picks (the highest recent training return) is measured as
`scripts/curriculum_compare.py` measures a run (actions sampled; the named held-out mazes, 1000
sampled mazes and their worst 10% and 1%). The script
prints one JSON line per run and a markdown table with means and 95% confidence intervals
(Student t) over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import numpy as np

from superlearner.run.agent import load_train_state
from superlearner.run.checkpoint import latest_checkpoint
from superlearner.config import load_config
from superlearner.core.evaluate import run_episodes
from superlearner.run.logs import read_metrics
from superlearner.run.trainer import train

# Student t quantiles (two-sided 95%) by degrees of freedom, for intervals over a few seeds.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}

VARIANTS = {
    "pbt": {"pbt": ("cartpole_pbt", []), "no adaptation": ("cartpole_population", [])},
    "metagrad": {"metagrad": ("cartpole_metagrad", []), "fixed": ("cartpole_metagrad", ["meta.kind=none"])},
    "selfplay": {"pbt": ("connect_four_pbt", []), "no adaptation": ("connect_four_population", [])},
    "maze": {"pbt": ("maze_plr_pbt", []), "no adaptation": ("maze_plr_pbt", ["meta.kind=none"])},
}
DEFAULT_STEPS = {"pbt": 500_000, "metagrad": 150_000, "selfplay": 500_000, "maze": 2_500_000}
ANCHOR_GAMES = 400  # per member and anchor in the final measurement of a self-play study


def anchor_scores(run_dir: Path, games: int = ANCHOR_GAMES, seed: int = 7) -> dict[str, np.ndarray]:
    """Each member's greedy score (win 1, draw 1/2) against every arena anchor of the run, over
    ``games`` games half in each seat, opened as the arena opens them: ``{spec: float[P]}``."""
    from superlearner.selfplay.anchors import make_anchor
    from superlearner.selfplay.arena import from_anchor, greedy_score

    engine, state, _ = load_train_state(latest_checkpoint(run_dir))
    arena, size = engine.config.arena, engine.config.train.population_size
    out = {}
    for index, spec in enumerate(arena.anchors):
        anchor = from_anchor(make_anchor(engine.env, spec))

        def score(params, key, anchor=anchor):
            return greedy_score(engine.env, engine.learner.policy, params, anchor, games, arena.opening_moves, key)

        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), index), size)
        out[spec] = np.asarray(jax.jit(jax.vmap(score))(state.learner.params, keys))
    return out


def evaluate_members(run_dir: Path, episodes: int, seed: int = 7) -> np.ndarray:
    """float[P]: each member's mean greedy return over ``episodes`` episodes (one compiled call)."""
    engine, state, _ = load_train_state(latest_checkpoint(run_dir))
    size = engine.config.train.population_size
    params = state.learner.params

    def act(observation, mask, key):
        observation = observation.reshape((size, episodes) + observation.shape[1:])
        mask = mask.reshape((size, episodes) + mask.shape[1:])
        action = jax.vmap(lambda p, o, m: engine.learner.act(p, o, m, key, greedy=True)[0])(params, observation, mask)
        return action.reshape(-1)

    returns = run_episodes(engine.env, act, jax.random.key(seed), size * episodes)
    return np.asarray(returns).reshape(size, episodes).mean(axis=1)


def mean_ci(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), T95.get(values.size - 1, 1.96) * float(values.std(ddof=1)) / math.sqrt(values.size)


def cell(values, digits: int = 1) -> str:
    mean, half = mean_ci(values)
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if math.isfinite(half) else f"{mean:.{digits}f}"


def run_one(study: str, variant: str, seed: int, steps: int, out: Path, episodes: int) -> dict:
    preset, extra = VARIANTS[study][variant]
    overrides = ["log.tensorboard=false", f"train.seed={seed}", "train.eval_episodes=0",
                 f"train.total_env_steps={steps}", *extra]
    run_dir = out / f"{variant.replace(' ', '_')}-{seed}"
    start = time.perf_counter()
    result = train(load_config(preset, overrides), run_dir, show_progress=False)
    wall = time.perf_counter() - start
    records = read_metrics(run_dir)
    final_hparams = {k: np.round(np.asarray(v, np.float64), 6).tolist() for k, v in records[-1]["hparams"].items()
                     if k in ("learning_rate", "ent_coef", "gamma", "gae_lambda")}
    if study == "selfplay":
        scores = anchor_scores(run_dir)
        mean = np.mean(list(scores.values()), axis=0)  # per member, over anchors
        best = int(np.argmax(mean))
        return dict(
            study=study, variant=variant, seed=seed, env_steps=result.env_steps, wall_s=round(wall, 1),
            anchor_mean_per_member=np.round(mean, 4).tolist(), best_member=best, best_anchor_mean=float(mean[best]),
            median_anchor_mean=float(np.median(mean)),
            **{f"best_vs_{spec}": float(values[best]) for spec, values in scores.items()},
            final_hparams=final_hparams,
        )
    if study == "maze":
        from curriculum_compare import evaluate_run  # scripts/ is on the path of a script

        measured = evaluate_run(run_dir, num_sampled=1000)
        return dict(
            study=study, variant=variant, seed=seed, env_steps=result.env_steps, wall_s=round(wall, 1),
            **{key: measured[key] for key in ("named", "sampled", "cvar10", "cvar1")},
            train_return_final=float(np.mean(result.last_metrics["episode_return"])), final_hparams=final_hparams,
        )
    greedy = evaluate_members(run_dir, episodes)
    # The logged training return (the stochastic policy), averaged over members and over every
    # chunk of the run: higher means it learned sooner.
    curve = [float(np.mean(r["metrics"]["episode_return"])) for r in records]
    return dict(
        study=study, variant=variant, seed=seed, env_steps=result.env_steps, wall_s=round(wall, 1),
        greedy_per_member=np.round(greedy, 1).tolist(), greedy_mean=float(greedy.mean()),
        greedy_median=float(np.median(greedy)), greedy_best=float(greedy.max()),
        train_return_final=float(np.mean(result.last_metrics["episode_return"])),
        train_return_over_run=float(np.mean(curve)), final_hparams=final_hparams,
    )


# Each study's table: (column header, the run field averaged over seeds).
TABLE_COLUMNS = {
    "pbt": [("population mean (greedy)", "greedy_mean"), ("median member", "greedy_median"),
            ("best member", "greedy_best"), ("training return, end", "train_return_final")],
    "metagrad": [("greedy return, end", "greedy_mean"), ("training return, end", "train_return_final"),
                 ("training return, mean over the run", "train_return_over_run")],
    "selfplay": [("best member, mean score over the anchors", "best_anchor_mean"),
                 ("best member vs random", "best_vs_random"), ("best member vs minimax:2", "best_vs_minimax:2"),
                 ("median member, mean over the anchors", "median_anchor_mean")],
    "maze": [("named held-out mazes", "named"), ("sampled mazes", "sampled"), ("CVaR 10%", "cvar10"),
             ("CVaR 1%", "cvar1"), ("training return, end", "train_return_final")],
}


def table(study: str, runs: list[dict]) -> str:
    columns = TABLE_COLUMNS[study]
    digits = 3 if study in ("selfplay", "maze") else 1  # rates in [0, 1] against returns in the hundreds
    rows = ["| variant | seeds | " + " | ".join(header for header, _ in columns) + " |",
            "|---|---:|" + "---:|" * len(columns)]
    for variant in VARIANTS[study]:
        rs = [r for r in runs if r["variant"] == variant]
        rows.append(f"| {variant} | {len(rs)} | " + " | ".join(cell([r[key] for r in rs], digits) for _, key in columns) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="env steps per member (default: pbt 5e5, metagrad 1.5e5)")
    parser.add_argument("--episodes", type=int, default=32, help="greedy evaluation episodes per member")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default runs/meta_compare/STUDY)")
    args = parser.parse_args()
    steps = args.steps or DEFAULT_STEPS[args.study]
    out = args.out or Path("runs/meta_compare") / args.study
    runs = []
    for seed in args.seeds:
        for variant in VARIANTS[args.study]:
            run = run_one(args.study, variant, seed, steps, out, args.episodes)
            runs.append(run)
            print(json.dumps(run), flush=True)
    print(f"\n{args.study}: {steps} env steps per member, {len(args.seeds)} seeds, 95% CI over seeds\n")
    print(table(args.study, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
