"""Extending a run: `resume --set` changes the settings that leave the compiled shapes and the
state as they are, records them in config.yaml with their history, and the resumed run equals a
run configured so from the start; any other key, a bad value or a budget a step-size schedule
is laid over is refused in one line, and changes nothing."""

import shutil

import pytest
import yaml

from superlearner.cli.main import main
from superlearner.config import load_config
from superlearner.errors import ConfigError
from superlearner.run.agent import load_train_state
from superlearner.run.logs import read_metrics
from superlearner.run.trainer import HISTORY_HEADING, RESUME_SETTINGS, read_run_config, resume, train

from tiny_runs import PER_ITERATION, assert_same_state, comparable, tiny_config



def _final_state(run_dir):
    return load_train_state(run_dir / "checkpoints" / str(max(int(p.name) for p in (run_dir / "checkpoints").iterdir())))[1]


@pytest.fixture(scope="module")
def longer_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("longer") / "run"
    train(tiny_config(8), run_dir, show_progress=False)
    return run_dir


@pytest.fixture(scope="module")
def finished_short_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("short") / "run"
    assert train(tiny_config(4), run_dir, show_progress=False).completed
    return run_dir


def test_a_longer_budget_continues_a_finished_run_to_the_same_end_as_a_run_given_it_at_the_start(
    finished_short_run, longer_run, tmp_path
):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_short_run, run_dir)
    result = resume(run_dir, overrides=[f"train.total_env_steps={PER_ITERATION * 8}"], show_progress=False)
    assert result.completed and result.iteration == 8
    assert_same_state(_final_state(run_dir), _final_state(longer_run))
    assert comparable(read_metrics(run_dir)) == comparable(read_metrics(longer_run))
    # Recorded: the new value in the config, the change in its history; the file is still a config.
    assert read_run_config(run_dir).train.total_env_steps == PER_ITERATION * 8
    text = (run_dir / "config.yaml").read_text()
    history = text.split(HISTORY_HEADING + "\n", 1)[1].splitlines()
    assert len(history) == 1
    assert history[0].endswith(f"resumed at iteration 4: train.total_env_steps: {PER_ITERATION * 4} -> {PER_ITERATION * 8}")
    assert load_config(str(run_dir / "config.yaml")).train.total_env_steps == PER_ITERATION * 8
    # A second change adds to the history.
    resume(run_dir, overrides=["train.checkpoint_every_chunks=2", "train.keep_checkpoints=4"], show_progress=False)
    history = (run_dir / "config.yaml").read_text().split(HISTORY_HEADING + "\n", 1)[1].splitlines()
    assert len(history) == 3 and "train.checkpoint_every_chunks: 1 -> 2" in history[1]
    assert "train.keep_checkpoints: 10 -> 4" in history[2]


def test_the_log_cadence_may_change_and_the_parameters_stay_those_of_the_unbroken_run(longer_run, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(8), run_dir, show_progress=False, max_chunks=1)
    resume(run_dir, overrides=["train.iterations_per_chunk=3"], show_progress=False)
    assert [r["iteration"] for r in read_metrics(run_dir)] == [2, 5, 8]
    assert_same_state(_final_state(run_dir), _final_state(longer_run))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["learner.hidden_sizes=[32, 32]"], "resume changes only settings"),
        (["train.seed=3"], "train.total_env_steps, train.time_limit_minutes"),
        (["train.total_env_steps=abc"], "must be an integer"),
        (["train.total_env_steps=0"], "train.total_env_steps"),
        (["train.checkpoint_every_chunks"], "expected KEY=VALUE"),
        ([f"train.total_env_steps={PER_ITERATION * 2}"], "has trained 256 env steps already"),
    ],
)
def test_a_refused_setting_changes_nothing(overrides, message, finished_short_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_short_run, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=message):
        resume(run_dir, overrides=overrides, show_progress=False)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }


def test_the_refusal_lists_the_settings_that_may_change_in_one_line(finished_short_run, capsys):
    assert main(["resume", str(finished_short_run), "--set", "learner.num_envs=8"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --set learner.num_envs")
    assert all(key in lines[0] for key in RESUME_SETTINGS)


def test_a_budget_under_a_step_size_schedule_is_refused_unless_the_change_is_allowed(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(tiny_config(2, anneal_lr=True), run_dir, show_progress=False)
    config_before = (run_dir / "config.yaml").read_bytes()
    longer = f"train.total_env_steps={PER_ITERATION * 4}"
    with pytest.raises(ConfigError, match=r"learner.anneal_lr=true.*--allow-schedule-change"):
        resume(run_dir, overrides=[longer], show_progress=False)
    assert (run_dir / "config.yaml").read_bytes() == config_before
    # A budget-free setting is fine under the schedule.
    resume(run_dir, overrides=["train.time_limit_minutes=30"], show_progress=False)
    capsys.readouterr()
    result = resume(run_dir, overrides=[longer], allow_schedule_change=True, show_progress=False)
    assert result.completed and result.iteration == 4
    assert "warning: --set train.total_env_steps: this run's step size follows a schedule" in capsys.readouterr().err
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["total_env_steps"] == PER_ITERATION * 4
