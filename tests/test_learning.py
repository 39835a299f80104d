"""Learning outcomes: small runs that must reach a stated level."""

import json

import jax
import numpy as np

from superlearner.cli.main import main
from superlearner.run.agent import load_agent
from superlearner.config import load_config
from superlearner.core.evaluate import run_episodes, summarize
from superlearner.run.trainer import train


def test_cartpole_ppo_preset_reaches_475(tmp_path, capsys):
    """The default preset (PureJaxRL's settings, 5e5 steps) must reach a greedy mean return of
    at least 475 over 100 episodes (gymnasium's CartPole-v1 threshold)."""
    config = load_config("cartpole_ppo", ["log.tensorboard=false"])
    result = train(config, tmp_path / "run", show_progress=False)
    assert result.completed
    agent = load_agent(tmp_path / "run")
    returns = run_episodes(agent.env, lambda o, m, k: agent.act_batch(o, m, k), jax.random.key(123), 100)
    outcome = summarize(agent.env, returns)
    assert outcome.mean_return >= 475.0, outcome
    assert np.all(returns <= 500.0)
    # The same through the command line, as JSON.
    assert main(["eval", str(tmp_path / "run"), "--episodes", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 100 and report["mean_return"] >= 475.0
    assert report["return_low"] <= report["mean_return"] <= report["return_high"]
    assert report["success_rate"] is not None and report["success_low"] <= report["success_rate"]
