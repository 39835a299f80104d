"""The command-line arena: eval against opponents and on levels, ratings, play, game SVGs."""

import builtins
import dataclasses
import json
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.cli import evaluate as cli_evaluate
from superlearner.cli import levels as cli_levels
from superlearner.cli import play as cli_play
from superlearner.cli import players as cli_players
from superlearner.cli import ratings as cli_ratings
from superlearner.cli import svg as cli_svg
from superlearner.cli.main import main
from superlearner.config import config_from_dict
from superlearner.errors import UserError
from superlearner.run.trainer import train

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny tic_tac_toe self-play run with checkpoints at iterations 2, 4 and 6."""
    raw = {
        "name": "ttt_tiny",
        "env": {"id": "tic_tac_toe"},
        "learner": {"num_envs": 8, "num_steps": 8, "num_epochs": 1, "num_minibatches": 1, "hidden_sizes": [16]},
        "league": {"capacity": 4, "snapshot_every": 2},
        "arena": {"every_chunks": 0, "anchors": ["random", "perfect"]},
        "train": {
            "total_env_steps": 8 * 8 * 6, "iterations_per_chunk": 2, "checkpoint_every_chunks": 1,
            "keep_checkpoints": 5, "eval_episodes": 0,
        },
        "log": {"tensorboard": False},
    }
    path = tmp_path_factory.mktemp("games") / "run"
    result = train(config_from_dict(raw), path, show_progress=False)
    assert result.completed
    return path


def _untrained_run(path, env_id):
    """A run directory holding one checkpoint of a freshly initialised train state (no training:
    the code paths, not the agent's strength, are under test)."""
    from superlearner.run.checkpoint import Checkpointer
    from superlearner.engine import make_engine
    from superlearner.run.trainer import checkpoint_metadata, prepare_run_dir

    raw = {
        "name": f"{env_id}_untrained",
        "env": {"id": env_id},
        "learner": {"num_envs": 4, "num_steps": 4, "num_minibatches": 1, "hidden_sizes": [16]},
        "league": {"capacity": 2},
        "train": {"total_env_steps": 16},
        "log": {"tensorboard": False},
    }
    config = config_from_dict(raw)
    engine = make_engine(config)
    prepare_run_dir(path, config)
    checkpointer = Checkpointer(path)
    try:
        state = jax.jit(engine.init, static_argnums=0)(0)
        checkpointer.save(0, jax.device_get(state), checkpoint_metadata(engine, 0, 0.0))
    finally:
        checkpointer.close()
    return path


def _json_out(capsys):
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------
# eval --opponent


def test_eval_against_random_uses_both_seats_and_reports_a_consistent_record(run_dir, capsys):
    assert main(["eval", str(run_dir), "--opponent", "random", "--games", "31", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "rounded up to 32" in captured.err
    assert report["games"] == 32 == report["wins"] + report["draws"] + report["losses"]
    first, second = report["seats"]["first"], report["seats"]["second"]
    assert first["games"] == second["games"] == 16
    for key in ("wins", "draws", "losses"):
        assert first[key] + second[key] == report[key]
    assert report["score_low"] <= report["score"] <= report["score_high"]
    assert report["score"] == pytest.approx((report["wins"] + 0.5 * report["draws"]) / 32)
    # Tic-tac-toe pays +-1, so the mean return is (W - L) / N.
    assert report["mean_return"] == pytest.approx((report["wins"] - report["losses"]) / 32)
    assert report["env"] == "tic_tac_toe" and report["opponent"] == "random"


def test_the_perfect_player_is_never_beaten(run_dir, capsys):
    assert main(["eval", str(run_dir), "--opponent", "perfect", "--games", "20", "--opening-moves", "0", "--json"]) == 0
    report = _json_out(capsys)
    assert report["wins"] == 0 and report["score"] <= 0.5
    assert report["games"] == 20


def test_all_first_moves_cover_every_opening_in_both_seats(run_dir, capsys):
    from superlearner.selfplay.anchors import make_anchor
    from superlearner.selfplay.arena import all_first_moves

    env = sl.make("tic_tac_toe")
    moves = all_first_moves(env, 20)
    assert len(moves) == 36  # 20 rounded up to 2 seats x 9 first moves x 2
    np.testing.assert_array_equal(moves[:18], np.tile(np.arange(9), 2))
    np.testing.assert_array_equal(moves[18:], moves[:18])
    # Perfect play draws after every first move, in either seat.
    perfect = cli_players.anchor_kind(make_anchor(env, "perfect"))
    match = cli_players.make_pair_match(env, perfect, perfect, 36, 0, moves)
    returns, seat = match(None, None, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(returns), 0.0)
    report = cli_players.first_move_report(returns, seat, moves)
    assert sorted(report, key=int) == [str(m) for m in range(9)]
    assert all(r["first"]["draws"] == 2 and r["second"]["draws"] == 2 for r in report.values())
    # A random player opening in a corner loses some games against perfect play.
    rand = cli_players.anchor_kind(make_anchor(env, "random"))
    returns, _ = cli_players.make_pair_match(env, rand, perfect, 36, 0, moves)(None, None, jax.random.key(1))
    assert np.all(np.asarray(returns) <= 0) and np.any(np.asarray(returns) < 0)
    # The command: every first move, both seats, with a record per first move.
    import argparse

    args = argparse.Namespace(
        path=str(run_dir), opponent="perfect", games=18, opening_moves=0, openings="all-first-moves", seed=0,
        json=True, sample=False, svg=None, levels=None, episodes=1,
    )
    assert cli_evaluate.cmd_eval(args) == 0
    out = _json_out(capsys)
    assert out["openings"] == "all-first-moves" and out["games"] == 18
    assert out["wins"] == 0 and sorted(out["first_moves"], key=int) == [str(m) for m in range(9)]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--opponent", "minimax:0"],
            "must be >= 1; accepted: random, minimax:DEPTH, minimax:DEPTH:WIDTH, perfect; or checkpoint:PATH",
        ),
        (["--opponent", "best-response"], "kuhn_poker only"),
        (["--opponent", "checkpoint:/does/not/exist"], "no such run directory"),
        (["--opponent", "random", "--games", "1"], "--games 1: must be at least 2"),
        (["--levels", "named"], "--levels is for single-agent envs"),
        (["--levels", "sampled:x"], "expected 'named'"),
    ],
)
def test_bad_requests_are_one_line_errors(run_dir, capsys, extra, message):
    assert main(["eval", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_eval_requests_are_checked_against_the_env():
    cartpole, maze, ttt = sl.make("cartpole"), sl.make("maze"), sl.make("tic_tac_toe")
    with pytest.raises(UserError, match="single-agent env; --opponent is for two-player"):
        cli_evaluate.check_eval_request(cartpole, "random", None)
    with pytest.raises(UserError, match="single-agent env without levels"):
        cli_evaluate.check_eval_request(cartpole, None, "named")
    with pytest.raises(UserError, match="2-player game"):
        cli_evaluate.check_eval_request(ttt, None, "sampled:10")
    with pytest.raises(UserError, match="N >= 1"):
        cli_evaluate.check_eval_request(maze, None, "sampled:0")
    cli_evaluate.check_eval_request(maze, None, "named")
    cli_evaluate.check_eval_request(maze, None, "sampled:5")
    assert cli_levels.parse_levels_spec(" sampled:12 ") == ("sampled", 12)


def test_svg_of_an_evaluation_game_is_an_animation_ending_on_the_final_position(run_dir, tmp_path, capsys):
    path = tmp_path / "game.svg"
    args = ["--opponent", "perfect", "--games", "20", "--opening-moves", "0", "--svg", str(path), "--json"]
    assert main(["eval", str(run_dir), *args]) == 0
    report = _json_out(capsys)
    moves = report["svg"]["moves"]
    root = ET.fromstring(path.read_text())
    frames = root.findall(f"{SVG}g")
    assert len(frames) == len(moves) + 1  # the start and one per move
    assert all(g.find(f"{SVG}animate") is not None for g in frames)
    # Without SMIL only the final position shows.
    assert [g.get("visibility") for g in frames] == ["hidden"] * len(moves) + ["visible"]
    text = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert " ".join(moves) in text
    # The perfect player never loses; the agent sat first.
    assert report["svg"]["rewards"][0] <= 0


def test_animated_svg_switches_frames_in_turn():
    frames = [cli_svg._text_frame(f"frame {i}") for i in range(3)]
    svg = cli_svg.animated_svg(frames, ["a", "b", "c"], "moves: 1 2")
    root = ET.fromstring(svg)
    animations = [g.find(f"{SVG}animate") for g in root.findall(f"{SVG}g")]
    values = [a.get("values") for a in animations]
    assert values == ["visible;hidden", "hidden;visible;hidden", "hidden;visible"]
    for animation in animations:
        times = [float(t) for t in animation.get("keyTimes").split(";")]
        assert times[0] == 0 and times == sorted(times) and times[-1] <= 1
        assert len(times) == len(animation.get("values").split(";"))
    # Frame i is switched on when frame i - 1 is switched off.
    ends = [float(a.get("keyTimes").split(";")[-1]) for a in animations[:-1]]
    starts = [float(a.get("keyTimes").split(";")[1]) for a in animations[1:]]
    assert ends == pytest.approx(starts)


# ---------------------------------------------------------------------------------------------
# Kuhn poker best response.


def _table_policy(env):
    """A policy whose params are logits per information state [12, 2]."""
    observations = jnp.asarray(env.info_states().observations)

    def policy(params, observation, mask):
        index = jnp.argmax(jnp.all(observation[..., None, :] == observations, axis=-1), axis=-1)
        return jnp.where(mask, params[index], -jnp.inf), jnp.zeros(index.shape)

    return policy


@dataclasses.dataclass
class _League:
    params: jax.Array
    filled: jax.Array
    meta_strategy: jax.Array


def test_kuhn_best_response_report_has_the_known_values():
    from superlearner.envs.kuhn_poker import equilibrium_policy as kuhn_equilibrium_policy
    from superlearner.envs import kuhn_poker as kp

    env = sl.make("kuhn_poker")
    policy = _table_policy(env)
    uniform = jnp.zeros((kp.NUM_INFO_STATES, 2))
    report = cli_players.best_response_report(env, policy, uniform)
    assert report["exploitability"] == pytest.approx(0.458333, abs=1e-5)
    assert "exploitability_league" not in report

    table = kuhn_equilibrium_policy()  # [player, info state, action]
    acting = np.stack([table[kp.INFO_STATE_PLAYER[i], i] for i in range(kp.NUM_INFO_STATES)])
    equilibrium = jnp.log(jnp.maximum(jnp.asarray(acting, jnp.float32), 1e-12))
    # A league of a uniform and an equilibrium snapshot (one slot unfilled): the league's policy
    # is their mixture under the meta-strategy, whatever the current policy.
    snapshots = jnp.stack([uniform, uniform, equilibrium])
    filled = jnp.array([True, False, True])
    league = _League(params=snapshots, filled=filled, meta_strategy=jnp.array([0.5, 0.0, 0.5]))
    report = cli_players.best_response_report(env, policy, uniform, league)
    assert report["exploitability"] == pytest.approx(0.458333, abs=1e-5)
    assert report["league_policies"] == 2
    assert 0.0 < report["exploitability_league"] < 0.458333
    # All the weight on the equilibrium snapshot: the league's policy is unexploitable.
    league = _League(params=snapshots, filled=filled, meta_strategy=jnp.array([0.0, 0.0, 1.0]))
    report = cli_players.best_response_report(env, policy, uniform, league)
    assert report["league_policies"] == 1
    assert report["exploitability_league"] == pytest.approx(0.0, abs=1e-5)
    report = cli_players.best_response_report(env, policy, equilibrium)
    # The greedy policy of an equilibrium that mixes is exploitable.
    assert report["exploitability_greedy"] > 0.05


def test_the_league_player_keeps_one_snapshot_per_game_drawn_from_the_meta_strategy():
    from superlearner.envs.kuhn_poker import average_policy as kuhn_average_policy
    from superlearner.envs.kuhn_poker import equilibrium_policy as kuhn_equilibrium_policy
    from superlearner.envs.kuhn_poker import policy_table as kuhn_policy_table
    from superlearner.envs.kuhn_poker import table_exploitability as kuhn_exploitability
    from superlearner.envs import kuhn_poker as kp

    env = sl.make("kuhn_poker")
    policy = _table_policy(env)
    always_pass = jnp.zeros((kp.NUM_INFO_STATES, 2)).at[:, 1].set(-1e9)
    always_bet = jnp.zeros((kp.NUM_INFO_STATES, 2)).at[:, 0].set(-1e9)
    league = _League(
        params=jnp.stack([always_pass, always_bet, always_bet]), filled=jnp.array([True, True, False]),
        meta_strategy=jnp.array([0.25, 0.75, 0.0]),
    )
    params = cli_players.league_params(league, jax.random.key(0))
    act = jax.jit(cli_players.league_kind(policy, greedy=False))
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(1), 4000))
    first = np.asarray(act(params, jax.random.key(2), states))
    # Another decision of the same games: the same snapshots (deterministic here) act again.
    np.testing.assert_array_equal(np.asarray(act(params, jax.random.key(3), states)), first)
    assert abs(first.mean() - 0.75) < 0.03  # the bet snapshot plays 3/4 of the games
    # A new match draws new snapshots.
    other = cli_players.league_params(league, jax.random.key(9))
    assert np.any(np.asarray(act(other, jax.random.key(2), states)) != first)
    # The equilibrium mixed with itself is unexploitable, and a match against the league plays.
    table = kuhn_equilibrium_policy()
    acting = np.stack([table[kp.INFO_STATE_PLAYER[i], i] for i in range(kp.NUM_INFO_STATES)])
    assert kuhn_exploitability(kuhn_policy_table(kuhn_average_policy(np.stack([acting, acting]), np.array([0.3, 0.7])))) < 1e-6
    match = cli_players.make_pair_match(env, cli_players.league_kind(policy, False), cli_players.policy_kind(policy, False), 64, 0)
    returns, _ = match(params, always_pass, jax.random.key(4))
    assert np.asarray(returns).shape == (64,)


# ---------------------------------------------------------------------------------------------
# Levels.


def _random_act(observation, mask, key):
    return jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf)).astype(jnp.int32)


def _wall_follower(observation, mask, key):
    """Deterministic: step forward unless the cell ahead is a wall, else turn right."""
    del mask, key
    size = observation.shape[1]
    ahead_is_wall = observation[:, size - 2, size // 2, 0] > 0
    return jnp.where(ahead_is_wall, 1, 2).astype(jnp.int32)


def test_named_levels_give_a_solve_rate_per_level_and_their_mean():
    env = sl.make("maze")
    levels = env.named_levels()
    out = cli_levels.evaluate_named_levels(env, _random_act, jax.random.key(0), levels, episodes=3)
    assert list(out["levels"]) == list(levels)
    rates = np.array([row["solve_rate"] for row in out["levels"].values()])
    assert np.all((rates >= 0) & (rates <= 1)) and np.all(np.isclose(rates * 3, np.round(rates * 3)))
    assert out["mean_solve_rate"] == pytest.approx(rates.mean())
    for row in out["levels"].values():
        assert (row["mean_return"] > 0) == (row["solve_rate"] > 0)


def test_sampled_levels_cvar_is_measured_on_the_worst_levels():
    env = sl.make("maze")
    levels = cli_levels.sample_levels(env, jax.random.key(1), 30)
    out = cli_levels.evaluate_sampled_levels(env, _wall_follower, jax.random.key(2), levels)
    assert out["num_levels"] == 30
    cvar1, cvar10 = out["cvar"]["1%"], out["cvar"]["10%"]
    assert (cvar1["num_levels"], cvar10["num_levels"]) == (1, 3)
    # A deterministic policy on deterministic levels: both measurements agree, so the worst
    # levels' mean is at most the worst 10%'s, at most the mean.
    assert cvar1["return"] <= cvar10["return"] + 1e-9 <= out["mean_return"] + 2e-9
    assert 0 <= out["mean_solve_rate"] <= 1 and 0 <= cvar10["solve_rate"] <= 1
    assert 0 < out["mean_solve_rate"] < 1, "the wall follower solves some sampled mazes, not all"


def test_eval_levels_command_reports_named_and_sampled_levels(tmp_path, capsys):
    run = _untrained_run(tmp_path / "maze", "maze")
    svg = tmp_path / "episode.svg"
    assert main(["eval", str(run), "--levels", "named", "--episodes", "2", "--sample", "--json", "--svg", str(svg)]) == 0
    named = _json_out(capsys)
    assert named["level_set"] == "named" and len(named["levels"]) == 11 and named["episodes"] == 2
    assert 0 <= named["mean_solve_rate"] <= 1
    frames = ET.fromstring(svg.read_text()).findall(f"{SVG}g")
    assert 2 <= len(frames) <= cli_svg.MAX_SVG_FRAMES
    assert named["svg"]["movers"] == ["agent"] * len(named["svg"]["moves"])


def test_eval_best_response_command_reads_the_league(tmp_path, capsys):
    run = _untrained_run(tmp_path / "kuhn", "kuhn_poker")
    assert main(["eval", str(run), "--opponent", "best-response", "--json"]) == 0
    report = _json_out(capsys)
    # A fresh network plays close to uniformly: near the uniform policy's 0.458.
    assert 0.3 < report["exploitability"] < 0.6
    assert report["league_policies"] >= 1 and 0 <= report["exploitability_league"] < 0.6
    # No game is played, so there is nothing to draw (refused before anything is loaded).
    assert main(["eval", str(run), "--opponent", "best-response", "--svg", str(tmp_path / "x.svg")]) == 2


def test_select_checkpoints_spreads_evenly_and_keeps_the_latest():
    steps = [2, 4, 6, 8, 10, 12, 14]
    assert cli_ratings.select_checkpoints(steps, 3) == [2, 8, 14]
    assert cli_ratings.select_checkpoints(steps, 1) == [14]
    assert cli_ratings.select_checkpoints(steps[:2], 8) == [2, 4]


# ---------------------------------------------------------------------------------------------
# ratings


def test_ratings_table_fixes_random_at_zero_and_ranks_perfect_above_it(run_dir, capsys):
    args = ["ratings", str(run_dir), "--games", "20", "--anchors", "perfect", "--max-checkpoints", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "random = 0" in out and "perfect" in out and "iter_6" in out
    data = json.loads((run_dir / "ratings.json").read_text())
    rows = {row["name"]: row for row in data["players"]}
    assert set(rows) == {"iter_2", "iter_6", "random", "perfect"}  # random always joins; the latest is kept
    assert rows["random"]["rating"] == 0.0
    assert rows["perfect"]["rating"] > rows["random"]["rating"]
    assert rows["perfect"]["low"] > 0, "perfect play beats random play clearly"
    assert {rows["iter_2"]["iteration"], rows["iter_6"]["iteration"]} == {2, 6}
    ratings = [row["rating"] for row in data["players"]]
    assert ratings == sorted(ratings, reverse=True)
    # Every pair played, each with the configured number of games.
    assert len(data["results"]) == 6
    assert all(r["wins"] + r["draws"] + r["losses"] == 20 for r in data["results"])


# ---------------------------------------------------------------------------------------------
# play


def _scripted_input(monkeypatch, script):
    """input() answering from ``script``, then trying the cells 0..8 in turn, forever."""
    answers = iter(list(script) + [str(c) for c in range(9)] * 20)
    prompts = []

    def fake_input(prompt=""):
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(builtins, "input", fake_input)
    return prompts


def test_play_asks_again_after_bad_moves_and_records_the_game(run_dir, tmp_path, monkeypatch, capsys):
    prompts = _scripted_input(monkeypatch, ["foo", "4", "4"])
    record_path = tmp_path / "game.json"
    assert main(["play", str(run_dir), "--record", str(record_path)]) == 0
    out = capsys.readouterr().out
    assert "'foo' is not a move" in out
    assert "4 is not a legal move now" in out  # the person's own mark on the centre
    assert out.strip().splitlines()[-1].startswith("result: ")
    assert " 3 | 4 | 5" in out  # the empty board was drawn
    record = json.loads(record_path.read_text())
    assert record["env"] == "tic_tac_toe" and record["seats"] == {"person": 0, "agent": 1}
    moves, movers = record["moves"], record["movers"]
    assert moves[0] == "4" and len(set(moves)) == len(moves) and 5 <= len(moves) <= 9
    assert movers == ["person", "agent"] * (len(moves) // 2) + ["person"] * (len(moves) % 2)
    assert len(prompts) > movers.count("person")
    outcome = record["result"]["outcome"]
    assert outcome in ("win", "loss", "draw")
    assert {"win": "you win", "loss": "you lose", "draw": "draw"}[outcome] in out.strip().splitlines()[-1]


def test_play_ends_cleanly_when_input_ends(run_dir, tmp_path, monkeypatch, capsys):
    def closed(prompt=""):
        raise EOFError

    monkeypatch.setattr(builtins, "input", closed)
    record_path = tmp_path / "game.json"
    assert main(["play", str(run_dir), "--second", "--record", str(record_path)]) == 0
    out = capsys.readouterr().out
    assert "abandoned" in out.strip().splitlines()[-1]
    record = json.loads(record_path.read_text())
    assert record["result"]["outcome"] == "abandoned"
    assert record["movers"] == ["agent"]  # the agent opened; the person never answered


def test_kuhn_play_shows_only_the_persons_card_until_the_end():
    env = sl.make("kuhn_poker")
    for seed in range(3):
        lines = []
        game = cli_play.play_game(
            env, lambda key, state: 1, person=1, key=jax.random.key(seed),
            read=lambda prompt: "fold", write=lines.append,
        )
        # The agent bets, the person folds: no showdown, so no card but the person's is shown.
        assert game["moves"] == ["b", "p"] and game["movers"] == ["agent", "person"]
        assert game["outcome"] == "loss" and game["rewards"] == [1.0, -1.0]
        text = "\n".join(lines)
        shown = {card for card in ("J", "Q", "K") if card in text}
        assert len(shown) == 1 and "holding" in text
