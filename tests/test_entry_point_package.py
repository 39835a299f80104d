"""The third-party package of docs/adding_an_environment.md installs and is found by entry point.

The package's files and the check script are the code blocks of the guide itself, so the guide
and this test cannot drift apart. The package is installed offline into a folder of its own and
used from a fresh interpreter, so the environment the other tests run in is never changed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path


import superlearner as sl

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "adding_an_environment.md"

# A file of the package: an HTML comment naming its path, then a fenced block.
_FILE_BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\s*```\w*\n(?P<body>.*?)^```", re.S | re.M)
# The check script of the guide.
_RUN_BLOCK = re.compile(r"<!-- run -->\s*```python\n(?P<body>.*?)^```", re.S | re.M)


def guide_files() -> dict[str, str]:
    """``{relative path: content}`` of every file the guide shows."""
    return {m["path"]: m["body"] for m in _FILE_BLOCK.finditer(GUIDE.read_text())}


def guide_check_script() -> str:
    blocks = [m["body"] for m in _RUN_BLOCK.finditer(GUIDE.read_text())]
    assert len(blocks) == 1, "the guide must hold exactly one <!-- run --> block"
    return blocks[0]


def can_build_wheels() -> bool:
    """Whether setuptools can build a wheel without downloading anything."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)


def install(package_dir: Path, site_dir: Path) -> str:
    """Installs ``package_dir`` into ``site_dir`` offline; returns how it was done.

    With wheel support, pip builds and installs it. Without (setuptools older than 70.1 and no
    ``wheel`` package), setuptools writes the same metadata, entry points included, with
    ``egg_info`` beside a copy of the package: importlib.metadata reads both forms.
    """
    site_dir.mkdir()
    if can_build_wheels():
        command = [
            sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
            "--no-index", "--target", str(site_dir), str(package_dir),
        ]
        method = "pip"
    else:
        command = [
            sys.executable, "-c", "from setuptools import setup; setup()",
            "egg_info", "--egg-base", str(site_dir),
        ]
        method = "egg_info"
    result = subprocess.run(
        command, cwd=package_dir, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{method} install failed:\n{result.stdout}\n{result.stderr}"
    if method == "egg_info":
        shutil.copytree(package_dir / "superlearner_nim", site_dir / "superlearner_nim")
    return method


def test_guide_shows_the_package():
    files = guide_files()
    assert set(files) == {"pyproject.toml", "superlearner_nim/__init__.py"}
    assert '[project.entry-points."superlearner.envs"]' in files["pyproject.toml"]
    assert 'nim = "superlearner_nim:Nim"' in files["pyproject.toml"]
    assert "class Nim(Env):" in files["superlearner_nim/__init__.py"]


def test_guide_package_installs_and_conforms(tmp_path):
    assert "nim" not in sl.list_envs(), "a nim package is already installed in this environment"
    package_dir = tmp_path / "superlearner-nim"
    for relative, body in guide_files().items():
        path = package_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    site_dir = tmp_path / "site"
    method = install(package_dir, site_dir)

    # Proof that the env came from the installed package, then the guide's own check script.
    script = textwrap.dedent(
        f"""
        import importlib.metadata
        from pathlib import Path

        import superlearner_nim

        assert Path(superlearner_nim.__file__).resolve().is_relative_to(Path({str(site_dir)!r}).resolve())
        names = {{ep.name for ep in importlib.metadata.entry_points(group="superlearner.envs")}}
        assert "nim" in names, names
        """
    ) + guide_check_script()
    script_path = tmp_path / "check_nim.py"
    script_path.write_text(script)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site_dir), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, str(script_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, f"({method} install)\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip().endswith("nim ok")
