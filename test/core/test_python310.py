"""fogros_dist on Python 3.10 (Ubuntu 22.04, ROS 2 Humble): its runtime installs there with
``install_runtime``, and the CLI brings a deployment up, answers through the bridge, and tears it
down, all under a Python 3.10 interpreter (the robot here is a fresh 3.10 venv).

Skips where no Python 3.10 is installed (pyenv provides one on this project's machines).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_helpers import edges_round_trip

REPO = Path(__file__).resolve().parents[2]


def _python310() -> str | None:
    """A Python 3.10 that runs: pyenv's own build, or one on PATH (pyenv's shims may refuse)."""
    candidates = [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))]
    candidates.append(shutil.which("python3.10") or "")
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False)
        if done.returncode == 0:
            return candidate
    return None


PYTHON310 = _python310()
pytestmark = pytest.mark.skipif(PYTHON310 is None, reason="no Python 3.10 interpreter on this machine")

_DEPLOYMENT = """\
name = "py310"

[[machines]]
name = "gpu"
provider = "local"

[[nodes]]
name = "edges"
package = "fogros_dist"
executable = "edge_detector"
machine = "gpu"
topics_in = ["/camera/image:sensor_msgs/msg/Image"]
topics_out = ["/camera/edges:sensor_msgs/msg/Image"]
"""


def _run(argv: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _copy_package(to: Path) -> Path:
    """The project's installable files, so pip builds outside the checkout (it writes build/ there)."""
    to.mkdir(parents=True, exist_ok=True)
    for path in (
        *(REPO / n for n in ("setup.py", "setup.cfg", "pyproject.toml", "package.xml")),
        *REPO.glob("requirements*.txt"),
    ):
        shutil.copy2(path, to / path.name)
    for name in ("fogros_dist", "resource", "launch"):
        shutil.copytree(REPO / name, to / name, ignore=shutil.ignore_patterns("__pycache__"))
    return to


def test_the_cli_runs_a_deployment_on_python_3_10(tmp_path: Path, robot_domain: int) -> None:
    assert PYTHON310 is not None
    venv = tmp_path / "py310"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    assert _run([PYTHON310, "-m", "venv", str(venv)], env).returncode == 0
    python = str(venv / "bin" / "python")
    source = _copy_package(tmp_path / "src")
    # The documented installer, pointed at this interpreter (a venv: no --user).
    installed = _run(
        [python, "-m", "fogros_dist.install_runtime", "--python", python, "--core"],
        dict(env, PYTHONPATH=str(source)),
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "(Python 3.10)" in installed.stdout
    done = _run([python, "-m", "pip", "install", "-q", "--no-deps", str(source)], env)
    assert done.returncode == 0, done.stderr
    versions = _run([python, "-c", "import numpy, tomli; print(numpy.__version__)"], env)
    assert versions.stdout.strip() == "2.2.6", versions.stderr

    deployment = tmp_path / "py310.toml"
    deployment.write_text(_DEPLOYMENT)
    cli_env = dict(
        env,
        FOGROS_DIST_HOME=str(tmp_path / "home"),
        ROS_DOMAIN_ID=str(robot_domain),
        RMW_IMPLEMENTATION="rmw_cyclonedds_cpp",
    )
    fogros = str(venv / "bin" / "fogros-dist")
    up = _run([fogros, "up", str(deployment), "--detach"], cli_env, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        reply = edges_round_trip(robot_domain)
        assert reply.encoding == "mono8"
        assert int(max(reply.data)) == 255
    finally:
        down = _run([fogros, "down", "py310"], cli_env, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _run([fogros, "list", "--json"], cli_env).stdout.strip() == "[]"
