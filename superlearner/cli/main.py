"""The ``superlearner`` command: train, resume, eval, plot, envs.

Errors a user can cause are printed as one line (``error: ...``) with exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from superlearner.errors import UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="superlearner",
        description="Train, evaluate and inspect self-improving agents.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train an experiment preset or YAML file")
    train.add_argument("experiment", help="preset name from experiments/ (e.g. cartpole_ppo) or a YAML path")
    train.add_argument("--run-dir", help="where the run is written (default: runs/<name>-<time>)")
    train.add_argument("--seed", type=int, help="random seed (overrides train.seed)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. --set train.total_env_steps=100000")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_scale_out_flags(train)

    resume = sub.add_parser("resume", help="continue a run from its newest intact checkpoint")
    resume.add_argument("run_dir")
    resume.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a setting that leaves the compiled shapes and the state as they are, e.g. "
                        "--set train.total_env_steps=1000000 to extend the run (recorded in its config.yaml)")
    resume.add_argument("--allow-schedule-change", action="store_true",
                        help="with --set train.total_env_steps: extend (or shorten) a run whose step size decays over its "
                        "budget, although the schedule then jumps")
    resume.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_scale_out_flags(resume)

    evaluate = sub.add_parser("eval", help="evaluate a run directory or checkpoint")
    evaluate.add_argument("path", help="run directory (best checkpoint, else latest) or checkpoint folder")
    evaluate.add_argument("--episodes", type=int, default=100, help="episodes to play (default 100)")
    evaluate.add_argument("--seed", type=int, default=0, help="evaluation seed")
    evaluate.add_argument("--sample", action="store_true", help="sample actions instead of acting greedily")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.add_argument("--opponent", help="two-player games: random, minimax:DEPTH[:WIDTH], perfect (games with an exact solver), "
                          "best-response (games that declare an exact exploitability) or checkpoint:PATH")
    evaluate.add_argument("--games", type=int, default=200, help="two-player games: games to play, half in each seat (default 200)")
    evaluate.add_argument("--opening-moves", type=int, default=None, help="two-player games: random plies at the start of each game (default: the env's)")
    evaluate.add_argument("--levels", help="levelled envs: 'named' (the held-out levels) or 'sampled:N' (N sampled solvable levels, with CVaR)")
    evaluate.add_argument("--svg", help="two-player games: write an SVG of one evaluation game to this path")
    evaluate.add_argument("--openings", choices=["random", "all-first-moves"], default=None,
                          help="two-player games: random opening plies, or every legal first move forced in turn in both seats (default: the run's arena.openings)")
    evaluate.add_argument("--league", action="store_true",
                          help="two-player games: play the league's policy (its snapshots mixed by the meta-strategy) instead of the current agent")

    ratings = sub.add_parser("ratings", help="rate a run's checkpoints and the anchors (Bradley-Terry / Elo)")
    ratings.add_argument("run_dir")
    ratings.add_argument("--games", type=int, default=100, help="games per pair (default 100)")
    ratings.add_argument("--anchors", nargs="*", default=None, help="anchor specs (default: the run's arena anchors)")
    ratings.add_argument("--max-checkpoints", type=int, default=8, help="most checkpoints rated, evenly spaced (default 8)")
    ratings.add_argument("--json", action="store_true", help="print the table as JSON")

    play = sub.add_parser("play", help="play a trained agent in the terminal")
    play.add_argument("path", help="run directory or checkpoint folder")
    seat = play.add_mutually_exclusive_group()
    seat.add_argument("--first", action="store_true", help="you move first")
    seat.add_argument("--second", action="store_true", help="you move second")
    play.add_argument("--record", help="save the game's record (JSON) to this path")
    play.add_argument("--seed", type=int, default=0)
    for parser_ in (evaluate, ratings, play):
        _add_search_flags(parser_)

    plot = sub.add_parser("plot", help="write PNG learning curves into the run directory")
    plot.add_argument("run_dir")

    sub.add_parser("envs", help="list the registered environments")
    sub.add_parser("presets", help="list the experiment presets")
    return parser


def _add_search_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search (alphazero runs; PPO agents of two-player board games)")
    group.add_argument("--simulations", type=int, default=None, metavar="N", help="search simulations per move with the agent's policy and value (default: alphazero runs the run's alphazero.eval_simulations, PPO agents 0; 0: the raw policy)")
    group.add_argument("--raw-policy", action="store_true", help="act from the network's policy alone, without search (same as --simulations 0)")


def _add_scale_out_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("devices and hosts")
    group.add_argument("--mesh", metavar="pop=P,data=D", help="device layout: P devices split the population, D each member's env batch (default: chosen from the devices; sets train.mesh_pop / train.mesh_data)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="multi-host job: address of process 0 (default $JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", type=int, metavar="N", help="multi-host job: number of processes, one per host (default $JAX_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, metavar="I", help="multi-host job: this process's index, 0..N-1 (default $JAX_PROCESS_ID)")
    group.add_argument("--distributed", action="store_true", help="join the multi-host job the cluster describes (TPU pod slice, SLURM, Open MPI) without the three flags above")
    group.add_argument("--peer-timeout", type=int, default=300, metavar="SECONDS", help="multi-host job: how long to wait for the others to join, and for a silent one before every process stops (default 300)")


def _join_job(args) -> bool:
    """Joins the multi-host job the flags (or environment) describe; False for a lone process."""
    from superlearner.core import distributed

    return distributed.initialize(
        args.coordinator, args.num_processes, args.process_id, auto=args.distributed, timeout=args.peer_timeout,
    )


def _run_job(run):
    """Runs ``run()``; when another process of the job is lost, prints one line and ends at once."""
    from superlearner.core import distributed

    try:
        return run()
    except distributed.PeerLostError as error:
        print(f"error: {error}", file=sys.stderr)
        distributed.exit_now(2)
    except Exception as error:
        if not distributed.is_peer_failure(error):
            raise
        print(f"error: {distributed.peer_lost(error, 'while the job was starting or ending')}", file=sys.stderr)
        distributed.exit_now(2)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        return 0


def _cmd_train(args) -> int:
    from superlearner.config import load_config, validate_semantics
    from superlearner.core.distributed import parse_mesh
    from superlearner.run.trainer import train

    mesh = parse_mesh(args.mesh) if args.mesh else {}
    joined = _join_job(args)  # before anything touches a device
    overrides = list(args.set)
    if args.seed is not None:
        if args.seed < 0:
            raise UserError(f"--seed {args.seed}: must be a non-negative integer")
        overrides.append(f"train.seed={args.seed}")
    overrides += [f"train.mesh_{axis}={size}" for axis, size in mesh.items()]
    config = load_config(args.experiment, overrides)
    validate_semantics(config, source=args.experiment)
    if args.run_dir:
        run_dir = Path(args.run_dir)
    elif joined:
        # Each host's clock would name another directory.
        raise UserError("a multi-host job needs --run-dir (on a file system every host sees)")
    else:
        run_dir = Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = _run_job(lambda: train(config, run_dir, show_progress=not args.no_progress))
    return _finish(result, config)


def _cmd_resume(args) -> int:
    from superlearner.core.distributed import parse_mesh
    from superlearner.run.trainer import read_run_config, resume

    mesh = parse_mesh(args.mesh) if args.mesh else None
    _join_job(args)
    result = _run_job(lambda: resume(
        args.run_dir, mesh=mesh, overrides=args.set, allow_schedule_change=args.allow_schedule_change,
        show_progress=not args.no_progress,
    ))
    return _finish(result, read_run_config(Path(args.run_dir)))


def _finish(result, config) -> int:
    from superlearner.core.distributed import is_main_process

    # In a multi-host job every process evaluates (the checkpoint is read by all), process 0 reports.
    main = is_main_process()
    if result.completed:
        state = "finished"
    elif result.time_limited:
        state = (f"stopped at its time limit (train.time_limit_minutes={config.train.time_limit_minutes:g}; to go on, "
                 f"`superlearner resume {result.run_dir} --set train.time_limit_minutes=MINUTES`)")
    else:
        state = "stopped; resume with `superlearner resume " + str(result.run_dir) + "`"
    if main:
        print(f"run {state}: {result.env_steps:,} env steps per member in {result.wall_time:.1f} s -> {result.run_dir}")
    # Two-player games are measured against anchors by the arena during training; the final
    # episode evaluation is for single-agent tasks.
    from superlearner.core.registry import make

    single_agent = make(config.env.id, **config.env.options).num_players == 1
    ended = result.completed or result.time_limited
    if ended and single_agent and config.train.eval_episodes > 0 and not result.stopped_by_signal:
        outcome = _evaluate(result.run_dir, config.train.eval_episodes, seed=0, greedy=True)
        if main:
            (Path(result.run_dir) / "eval.json").write_text(json.dumps(outcome.to_dict(), indent=2))
            print(_eval_line(outcome))
    return 0


def _evaluate(path, episodes: int, seed: int, greedy: bool):
    import jax

    from superlearner.run.agent import load_agent
    from superlearner.core.evaluate import run_episodes, summarize

    if episodes < 1:
        raise UserError(f"--episodes {episodes}: must be at least 1")
    agent = load_agent(path, greedy=greedy)
    if agent.env.num_players != 1:
        raise UserError(f"{agent.env.id} is a {agent.env.num_players}-player game; use --opponent for games")
    returns = run_episodes(agent.env, agent.episode_act_fn(greedy), jax.random.key(seed), episodes)
    return summarize(agent.env, returns)


def _eval_line(result) -> str:
    line = (
        f"mean return {result.mean_return:.2f} (95% CI {result.return_low:.2f}..{result.return_high:.2f}) "
        f"over {result.episodes} episodes"
    )
    if result.success_rate is not None:
        line += (
            f"; success rate {result.success_rate:.3f} "
            f"(95% CI {result.success_low:.3f}..{result.success_high:.3f})"
        )
    return line


def _cmd_eval(args) -> int:
    if args.opponent is not None or args.levels is not None or args.svg is not None:
        from superlearner.cli.evaluate import cmd_eval

        return cmd_eval(args)
    result = _evaluate(args.path, args.episodes, args.seed, greedy=not args.sample)
    if args.json:
        out = result.to_dict()
        out.pop("returns")
        print(json.dumps(out, indent=2))
    else:
        print(_eval_line(result))
    return 0


def _cmd_plot(args) -> int:
    from superlearner.run.plot import plot_run

    for path in plot_run(args.run_dir):
        print(path)
    return 0


def _cmd_envs(args) -> int:
    from superlearner.core.registry import env_description, list_envs

    ids = list_envs()
    width = max(len(i) for i in ids)
    for env_id in ids:
        try:
            description = env_description(env_id)
        except Exception as error:  # a broken third-party package must not hide the others
            description = f"(cannot be loaded: {type(error).__name__}: {error})"
        print(f"{env_id:<{width}}  {description}")
    return 0


def _cmd_presets(args) -> int:
    import yaml

    from superlearner.config import experiments_dir, list_presets

    for name in list_presets():
        raw = yaml.safe_load((experiments_dir() / f"{name}.yaml").read_text()) or {}
        print(f"{name:<24}  {raw.get('description', '')}")
    return 0


def _cmd_ratings(args) -> int:
    from superlearner.cli.ratings import cmd_ratings

    return cmd_ratings(args)


def _cmd_play(args) -> int:
    from superlearner.cli.play import cmd_play

    return cmd_play(args)


_COMMANDS = {
    "ratings": _cmd_ratings,
    "play": _cmd_play,
    "train": _cmd_train,
    "resume": _cmd_resume,
    "eval": _cmd_eval,
    "plot": _cmd_plot,
    "envs": _cmd_envs,
    "presets": _cmd_presets,
}


if __name__ == "__main__":
    sys.exit(main())
