"""The engine against an earlier commit, in one run: no slowdown from a change to the engine.

    python scripts/engine_compare.py --old-commit SHA [--rounds 3] [--families ppo alphazero selfplay curriculum]
                                     [--no-write]

For every round, every family runs in the earlier commit's checkout and in this one, one after
the other (the order alternating between rounds), each in a fresh interpreter that imports only
that checkout; each measurement is the function `scripts/benchmark.py` uses for the family, from
that checkout's own copy of the script:

* ``ppo``: `_timed_training` of ``cartpole_ppo`` (5e5 env steps; seconds without compilation).
* ``alphazero``: `_chunk_throughput` of the ``connect_four_alphazero`` preset's train chunk (the
  engine's path: self-play with search, replay, SGD), and `_alphazero_iteration_times` at pgx's
  example settings (the learner alone).
* ``selfplay``: `_chunk_throughput` of ``connect_four_selfplay`` and ``tic_tac_toe_selfplay``.
* ``curriculum``: `_chunk_throughput` of ``maze_plr`` and ``maze_accel`` after warm-up chunks
  that fill the level buffer.

Each measurement is the best of its repeats (ten for the short chunks: a 2-core machine's timings
of one chunk vary by 10-20% from call to call), and the median over rounds of each checkout and the ratio (this checkout's time over the earlier
one's; below 1.05 is within 5%) go into ``docs/benchmarks.md`` and one row per measurement into
``docs/results/engine_compare.jsonl`` (command, commit, machine, date).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "engine_compare.jsonl"

# What each family measures: (name, python expression in the checkout's benchmark module, unit).
# Each expression evaluates to seconds (lower is better).
MEASUREMENTS = {
    "ppo": [("cartpole_ppo training, s without compile", "B._timed_training({}, repeats=3)['without_compile']")],
    "alphazero": [
        ("connect_four_alphazero chunk, s per iteration",
         "(lambda r: r['seconds'] / 4)(B._chunk_throughput('connect_four_alphazero', {}, 4, 2))"),
        ("AlphaZero iteration at pgx's settings (256 games), s",
         "B._alphazero_iteration_times(256, 2)['median']"),
    ],
    "selfplay": [
        ("connect_four_selfplay chunk, s per iteration",
         "(lambda r: r['seconds'] / 16)(B._chunk_throughput('connect_four_selfplay', {}, 16, 10))"),
        ("tic_tac_toe_selfplay chunk, s per iteration",
         "(lambda r: r['seconds'] / 32)(B._chunk_throughput('tic_tac_toe_selfplay', {}, 32, 10))"),
    ],
    "curriculum": [
        ("maze_plr chunk, s per iteration",
         "(lambda r: r['seconds'] / 32)(B._chunk_throughput('maze_plr', {}, 32, 10, warmup_chunks=4))"),
        ("maze_accel chunk, s per iteration",
         "(lambda r: r['seconds'] / 32)(B._chunk_throughput('maze_accel', {}, 32, 10, warmup_chunks=4))"),
    ],
}

DRIVER = """
import json, sys
sys.path.insert(0, {scripts!r})
import benchmark as B
import superlearner
assert superlearner.__file__.startswith({root!r}), superlearner.__file__
print("RESULT " + json.dumps(float({expression})))
"""


def checkout_of(commit: str, where: Path) -> Path:
    """A work tree of ``commit`` under ``where`` whose ``superlearner.envs`` resolves without an
    install (the package maps the top-level envs/ folder; a link does the same here)."""
    tree = where / f"superlearner-{commit[:12]}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True,
                       capture_output=True)
    link = tree / "superlearner" / "envs"
    if not link.exists():
        link.symlink_to(tree / "envs", target_is_directory=True)
    return tree


def measure(tree: Path, expression: str) -> float:
    code = DRIVER.format(scripts=str(tree / "scripts"), root=str(tree), expression=expression)
    env = dict(os.environ, PYTHONPATH=str(tree))
    result = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True,
                            timeout=3600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"measurement failed in {tree}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-commit", required=True, help="the earlier commit to compare against")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each measures both checkouts (default 3)")
    parser.add_argument("--families", nargs="+", default=list(MEASUREMENTS), choices=list(MEASUREMENTS))
    parser.add_argument("--only", nargs="+", default=(), metavar="TEXT",
                        help="measure only the measurements whose name contains one of these")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmark import machine_description

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip())
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    machine = machine_description(load_before)
    work = Path(tempfile.mkdtemp(prefix="engine-compare-"))
    old_tree = checkout_of(args.old_commit, work)
    trees = {"old": old_tree, "new": ROOT}
    times: dict[tuple[str, str], dict[str, list[float]]] = {}
    for round_index in range(args.rounds):
        order = ["old", "new"] if round_index % 2 == 0 else ["new", "old"]
        for family in args.families:
            for name, expression in MEASUREMENTS[family]:
                if args.only and not any(text in name for text in args.only):
                    continue
                for which in order:
                    seconds = measure(trees[which], expression)
                    times.setdefault((family, name), {}).setdefault(which, []).append(seconds)
                    print(f"round {round_index}  {which:3}  {name:<55} {seconds:.4f}", file=sys.stderr, flush=True)

    command = "python scripts/engine_compare.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows, lines = [], []
    for (family, name), by in times.items():
        old, new = statistics.median(by["old"]), statistics.median(by["new"])
        rows.append(dict(command=command, commit=commit + ("+changes" if dirty else ""), old_commit=args.old_commit,
                         machine=machine, date=date, family=family, measurement=name, old_seconds=by["old"],
                         new_seconds=by["new"], ratio=new / old))
        lines.append(f"| {family} | {name} | {old:.4f} | {new:.4f} | {new / old:.3f} |")
    table = "\n".join(["| family | measurement | earlier commit (median s) | this commit (median s) | ratio |",
                       "|---|---|---|---|---|", *lines])
    print(table)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
        section = (
            f"\n## engine: this commit against {args.old_commit[:12]} ({date})\n\n"
            f"Machine: {machine.get('cpu', '?')}; {machine.get('accelerator', 'no accelerator')}; load before: {load_before}. "
            f"Command: `{command}` at {commit[:12]}{' with uncommitted changes' if dirty else ''}. "
            f"{args.rounds} rounds, the two checkouts alternating; medians; ratio = this commit / earlier "
            "(below 1.05: within 5%). Rows: `docs/results/engine_compare.jsonl`.\n\n" + table + "\n"
        )
        with (ROOT / "docs" / "benchmarks.md").open("a") as out:
            out.write(section)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
