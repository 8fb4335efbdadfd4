"""The ROS lane as a user has it: fogros_dist built with colcon, the real ``ros2`` executable on
ROS 2's own Python, and the runtime put there by ``ros2 run fogros_dist install_runtime``.

Nothing here uses .venv's interpreter for ROS 2: ``ros2`` runs on whatever its first line names
(``/usr/bin/python3`` on Ubuntu), and sees fogros_dist only through the colcon overlay and its
runtime only through the user site-packages that ``install_runtime`` filled (a private
``PYTHONUSERBASE`` per test session, so the machine's own user site is never touched).
Importable as ``ros2_lane`` from any test (``test/`` is on sys.path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "REPO",
    "build_overlay",
    "install_runtime",
    "ros2",
    "ros2_argv",
    "ros2_interpreter",
    "sourced",
]

REPO = Path(__file__).resolve().parents[1]


def ros2() -> str:
    """The ``ros2`` executable of the sourced ROS 2."""
    found = shutil.which("ros2")
    assert found, "ros2 is not on PATH: source /opt/ros/<distro>/setup.bash"
    return found


def ros2_interpreter() -> str:
    """The interpreter ``ros2`` runs on (its first line)."""
    first = Path(ros2()).read_text().splitlines()[0]
    assert first.startswith("#!"), first
    return first[2:].split()[0]


# Exec'd before ``ros2``: a shell running the tests in the background starts them with SIGINT
# ignored, which ``ros2 launch`` would inherit (Ctrl-C then does nothing); a user's terminal never
# does that. The wrapper replaces itself with ``ros2`` at once, which runs on its own Python.
_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def ros2_argv(*args: str) -> list[str]:
    """The command line of ``ros2 ARGS...``, with SIGINT at its default as in a terminal."""
    return [sys.executable, "-c", _DEFAULT_SIGINT, ros2(), *args]


def sourced(setup_bash: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment after ``source setup_bash`` on top of ``base`` (default: this process's)."""
    done = subprocess.run(
        ["bash", "-c", 'source "$1" && env -0', "sourced", str(setup_bash)],
        env=dict(base if base is not None else os.environ),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)


def build_overlay(workspace: Path) -> Path:
    """``colcon build`` of this checkout in ``workspace``, as a user builds it in theirs; returns
    the install base. The sourced ROS 2's colcon where it has one, else .venv's."""
    colcon = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    done = subprocess.run(
        [
            colcon,
            *("--log-base", str(workspace / "log"), "build", "--base-paths", str(REPO)),
            *("--build-base", str(workspace / "build"), "--install-base", str(workspace / "install")),
        ],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return workspace / "install"


def install_runtime(env: Mapping[str, str], *, core: bool = True) -> subprocess.CompletedProcess[str]:
    """``ros2 run fogros_dist install_runtime [--core]`` in ``env``, as the README says to."""
    argv = [ros2(), "run", "fogros_dist", "install_runtime", *(["--core"] if core else [])]
    return subprocess.run(argv, env=dict(env), capture_output=True, text=True, timeout=900, check=False)
