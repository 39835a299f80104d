"""The whole loop against its parts on connect four, rated in one Bradley-Terry pool.

    python scripts/loop_compare.py [--variants plain league curriculum meta all] [--seeds 0 1 2 3 4]
                                   [--budget time|steps] [--out DIR] [--results FILE] [--no-write]

Trains, for every seed, plain Gumbel AlphaZero and AlphaZero with the league, with the curriculum
of start positions, with the meta-controller (the bandit on the online rating), and with all three
(`connect_four_superlearner` with pillars switched off; the learner, search, network, batch shape
and step-size schedule are the same in every variant). ``--budget time`` gives every run the same
wall time; ``--budget steps`` gives every variant the env steps plain AlphaZero made in that time
at the same seed (it reads plain's rows, so run ``time`` first).

Then every final checkpoint, searching ``EVAL_SIMULATIONS`` simulations per move, plays the anchors
(``ANCHORS``; ``GAMES_VS_MINIMAX4`` games against minimax:4, ``GAMES_PER_PAIR`` against the
others, half in each seat, random opening plies) and the anchors play each other; one Bradley-Terry
fit over all of them (random = 0) rates every checkpoint. Prints per variant the mean rating and
the score against minimax:4 with 95% Student-t intervals over seeds, and each variant's paired
difference from plain AlphaZero; writes one row per run (with the command, commit, machine and
date) to ``docs/results/loop_compare.jsonl`` (``--no-write``: print only).

The seeds and budgets below are fixed before any result is seen. The plain-versus-all rows keep
the full budget; where the compute for the ablation rows does not fit, ``ABLATION_MINUTES`` is the
shorter budget they get, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

SEEDS = (0, 1, 2, 3, 4)
MINUTES = 30.0  # plain and all: the equal wall time on this 2-core CPU
ABLATION_MINUTES = 30.0  # league, curriculum and meta alone
TOTAL_ENV_STEPS = 100_000_000  # larger than any run makes: the time limit ends it
PRESET = "connect_four_superlearner"
ANCHORS = ("random", "minimax:1", "minimax:2", "minimax:4", "minimax:6")
EVAL_SIMULATIONS = 64
GAMES_VS_MINIMAX4 = 400
GAMES_PER_PAIR = 100
OPENING_MOVES = 2
RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results" / "loop_compare.jsonl"

_NO_LEAGUE = ["league.kind=none"]
_NO_CURRICULUM = ["curriculum.kind=none"]
_NO_META = ["meta.kind=none", "meta.progress=return", "rating.kind=none"]
VARIANTS = {
    "plain": _NO_LEAGUE + _NO_CURRICULUM + _NO_META,
    "league": _NO_CURRICULUM + _NO_META,
    "curriculum": _NO_LEAGUE + _NO_META,
    "meta": _NO_LEAGUE + _NO_CURRICULUM,
    "all": [],
}
"""The overrides of `PRESET` that make each variant."""


def train_variant(variant: str, seed: int, budget: str, out: Path, plain_steps: int | None) -> dict:
    """Trains one variant at one seed; returns its run directory, steps and wall time."""
    from superlearner.config import load_config
    from superlearner.run.trainer import train

    minutes = MINUTES if variant in ("plain", "all") else ABLATION_MINUTES
    overrides = VARIANTS[variant] + [f"train.seed={seed}", "arena.every_chunks=0", "train.checkpoint_every_chunks=10"]
    if budget == "time":
        overrides += [f"train.time_limit_minutes={minutes}", f"train.total_env_steps={TOTAL_ENV_STEPS}"]
    else:
        overrides += ["train.time_limit_minutes=0", f"train.total_env_steps={plain_steps}"]
    config = load_config(PRESET, overrides)
    run_dir = out / f"{variant}_seed{seed}_{budget}"
    start = time.perf_counter()
    result = train(config, run_dir, show_progress=False)
    return dict(run_dir=str(run_dir), env_steps=int(result.env_steps), iterations=int(result.iteration),
                wall_s=time.perf_counter() - start, minutes=minutes if budget == "time" else None, overrides=overrides)


def rate_pool(runs: list[dict]) -> dict[str, dict]:
    """Every run's final checkpoint against the anchors and the anchors among themselves; the
    Bradley-Terry rating of each checkpoint and its record against minimax:4."""
    from superlearner.cli.players import anchor_kind, make_pair_match, match_report
    from superlearner.run.agent import load_agent
    from superlearner.run.checkpoint import latest_checkpoint
    from superlearner.selfplay.anchors import make_anchor
    from superlearner.selfplay.ratings import bradley_terry

    agents = {run["name"]: load_agent(latest_checkpoint(run["run_dir"]), num_simulations=EVAL_SIMULATIONS) for run in runs}
    first = next(iter(agents.values()))
    env, learner = first.env, first.engine.learner

    def agent_kind(params, key, states):  # one program for every checkpoint: its search settings are arguments
        network, hparams = params
        return learner.search(network, states, key, EVAL_SIMULATIONS, True, hparams=hparams)

    anchors = {spec: anchor_kind(make_anchor(env, spec)) for spec in ANCHORS}
    programs, results, records = {}, {}, {}
    key = jax.random.key(20261208)

    def play(name_a, kind_a, params_a, name_b, kind_b, params_b, games):
        label = (name_a if kind_a is not agent_kind else "agent", name_b, games)
        if label not in programs:
            programs[label] = make_pair_match(env, kind_a, kind_b, games, OPENING_MOVES)
        returns, seat = programs[label](params_a, params_b, jax.random.fold_in(key, len(results)))
        record = match_report(returns, seat)
        results[(name_a, name_b)] = (record["wins"], record["draws"], record["losses"])
        return record

    for name, agent in agents.items():
        for spec, kind in anchors.items():
            games = GAMES_VS_MINIMAX4 if spec == "minimax:4" else GAMES_PER_PAIR
            record = play(name, agent_kind, (agent.params, agent.search_hparams), spec, kind, None, games)
            records[(name, spec)] = record
            print(f"  {name} vs {spec}: {record['score']:.3f} ({record['wins']}-{record['draws']}-{record['losses']})", flush=True)
    for i, spec_a in enumerate(ANCHORS):
        for spec_b in ANCHORS[i + 1:]:
            play(spec_a, anchors[spec_a], None, spec_b, anchors[spec_b], None, GAMES_PER_PAIR)
    table = {row.name: row for row in bradley_terry(list(agents) + list(ANCHORS), results, anchor="random")}
    out = {}
    for name in agents:
        m4 = records[(name, "minimax:4")]
        out[name] = dict(rating=table[name].rating, rating_stderr=table[name].stderr, vs_minimax4=m4["score"],
                         vs_minimax4_low=m4["score_low"], vs_minimax4_high=m4["score_high"],
                         scores={spec: records[(name, spec)]["score"] for spec in ANCHORS})
    out["anchors"] = {spec: dict(rating=table[spec].rating, stderr=table[spec].stderr) for spec in ANCHORS}
    return out


def print_table(rows: list[dict]) -> None:
    from superlearner.stats import mean_interval, paired_interval

    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    print("| variant | seeds | budget | env steps | rating (Elo, random = 0) | score vs minimax:4 |")
    print("|---|---:|---|---:|---:|---:|")
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        rating, rating_half = mean_interval([r["rating"] for r in mine])
        score, score_half = mean_interval([r["vs_minimax4"] for r in mine])
        budget = mine[0]["budget"] + (f" {mine[0]['minutes']:g} min" if mine[0].get("minutes") else "")
        steps = np.mean([r["env_steps"] for r in mine])
        print(f"| {variant} | {len(mine)} | {budget} | {steps:.3g} | {rating:.0f} +- {rating_half:.0f} | "
              f"{score:.3f} +- {score_half:.3f} |")
    base = {r["seed"]: r for r in rows if r["variant"] == "plain"}
    for variant in variants:
        pairs = [(r, base[r["seed"]]) for r in rows if r["variant"] == variant != "plain" and r["seed"] in base]
        if len(pairs) < 2:
            continue
        diff, half = paired_interval([a["rating"] for a, _ in pairs], [b["rating"] for _, b in pairs])
        sdiff, shalf = paired_interval([a["vs_minimax4"] for a, _ in pairs], [b["vs_minimax4"] for _, b in pairs])
        print(f"{variant} - plain over {len(pairs)} seeds: rating {diff:+.0f} +- {half:.0f} Elo, "
              f"score vs minimax:4 {sdiff:+.3f} +- {shalf:.3f} (paired, 95% Student t)")


def provenance(argv: list[str]) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark import row_provenance

    return row_provenance("python scripts/loop_compare.py " + " ".join(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--budget", choices=("time", "steps"), default="time")
    parser.add_argument("--out", type=Path, default=Path("runs/loop_compare"))
    parser.add_argument("--results", type=Path, help="print the table from these rows instead of training")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.results is not None:
        print_table([json.loads(line) for line in args.results.read_text().splitlines() if line.strip()])
        return 0
    unregistered = sorted(set(args.seeds) - set(SEEDS))
    if unregistered:
        print(f"note: seeds {unregistered} are outside the study's fixed seeds {list(SEEDS)}; their rows say so")
    header = provenance(argv)
    previous = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()] if RESULTS.exists() else []
    runs = []
    for seed in args.seeds:
        for variant in args.variants:
            plain_steps = None
            if args.budget == "steps":
                plain = [r for r in previous if r["variant"] == "plain" and r["seed"] == seed and r["budget"] == "time"]
                if not plain:
                    raise SystemExit(f"--budget steps: no time-budget row of plain at seed {seed} in {RESULTS}; run --budget time first")
                plain_steps = plain[-1]["env_steps"]
            print(f"training {variant} seed {seed} ({args.budget} budget)", flush=True)
            run = train_variant(variant, seed, args.budget, args.out, plain_steps)
            runs.append(dict(run, name=f"{variant}_seed{seed}", variant=variant, seed=seed, budget=args.budget,
                             preregistered=seed in SEEDS))
    print("rating the final checkpoints", flush=True)
    rated = rate_pool(runs)
    rows = [dict(header, **run, **rated[run["name"]], anchors=rated["anchors"]) for run in runs]
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
