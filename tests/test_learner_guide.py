"""The learner package of docs/adding_a_learner.md installs, is found by entry point, trains from
the command line, resumes exactly and is adapted by PBT, all without a change to superlearner.

The package's files, its presets and the check script are the code blocks of the guide itself, so
the guide and this test cannot drift apart. The package is installed offline into a folder of its
own and used from fresh interpreters, so the environment the other tests run in is never changed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from superlearner.learners import learner_kinds

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "adding_a_learner.md"
_FILE_BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\s*```\w*\n(?P<body>.*?)^```", re.S | re.M)
_RUN_BLOCK = re.compile(r"<!-- run -->\s*```python\n(?P<body>.*?)^```", re.S | re.M)


def guide_files() -> dict[str, str]:
    return {m["path"]: m["body"] for m in _FILE_BLOCK.finditer(GUIDE.read_text())}


def test_the_guide_shows_a_package_with_an_entry_point_and_two_presets():
    files = guide_files()
    assert set(files) == {"pyproject.toml", "superlearner_a2c/__init__.py", "a2c_cartpole.yaml", "a2c_cartpole_pbt.yaml"}
    assert '[project.entry-points."superlearner.learners"]' in files["pyproject.toml"]
    assert "kind: pbt" in files["a2c_cartpole_pbt.yaml"]
    assert len(_RUN_BLOCK.findall(GUIDE.read_text())) == 1


@pytest.mark.slow
def test_the_guide_learner_installs_trains_resumes_exactly_and_is_adapted_by_pbt(tmp_path):
    assert "a2c" not in learner_kinds(), "an a2c learner is already installed in this environment"
    package_dir = tmp_path / "superlearner-a2c"
    for relative, body in guide_files().items():
        path = package_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    site_dir = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
         "--target", str(site_dir), str(package_dir)],
        capture_output=True, text=True, timeout=180,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    script = package_dir / "check.py"
    script.write_text(_RUN_BLOCK.search(GUIDE.read_text())["body"])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site_dir), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, str(script)], cwd=package_dir, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().endswith("a2c ok")
