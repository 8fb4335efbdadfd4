"""Fixtures for driving the `fogros-dist` command as a user would: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_test_helpers import Run

CLI = [sys.executable, "-m", "fogros_dist.cli.main"]


@pytest.fixture
def cli_env(tmp_path: Path, robot_domain: int) -> dict[str, str]:
    """A private state home and robot domain; DDS stays on loopback (session fixture)."""
    env = dict(os.environ)
    env["FOGROS_DIST_HOME"] = str(tmp_path / "home")
    env["ROS_DOMAIN_ID"] = str(robot_domain)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def fogros(cli_env: dict[str, str]) -> Run:
    """Run `fogros-dist ARGS...` and return the completed process (never raises on exit code)."""

    def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=cli_env, capture_output=True, text=True, timeout=timeout, check=False
        )

    return run
