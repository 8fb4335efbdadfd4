"""Fixtures for the ROS lane: fogros_dist built with colcon, its runtime installed into ROS 2's
own Python by ``install_runtime`` (see ros2_lane.py). Built once per session."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from ros2_lane import build_overlay, install_runtime, sourced


@pytest.fixture(scope="session")
def ros2_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment a user's shell has after ``source install/setup.bash`` of a workspace with
    fogros_dist built in it, and ``ros2 run fogros_dist install_runtime --core``."""
    if shutil.which("ros2") is None:
        pytest.skip("ROS 2 is not sourced (no ros2 executable)")
    install = build_overlay(tmp_path_factory.mktemp("ros2ws"))
    env = sourced(install / "setup.bash")
    # The user site-packages install_runtime writes to: private to this session.
    env["PYTHONUSERBASE"] = str(tmp_path_factory.mktemp("userbase"))
    env["PYTHONUNBUFFERED"] = "1"
    done = install_runtime(env)
    assert done.returncode == 0, done.stdout + done.stderr
    return env


# The SSH lab (namespace hosts) for the launch tests that offload to an SSH host.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "remote"))

from ssh_fixtures import alpha, beta, known_hosts, ssh_lab, wheel_cache  # noqa: E402

__all__ = ["alpha", "beta", "known_hosts", "ros2_env", "ssh_lab", "wheel_cache"]
