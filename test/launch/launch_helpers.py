"""Running ``ros2 launch`` from the launch tests: its output collected as it comes, stopped like Ctrl-C.

The real ``ros2`` executable on ROS 2's own Python (see ros2_lane.py); pass it the ``ros2_env``
fixture's environment (fogros_dist's overlay and its runtime).

Importable as ``launch_helpers`` from the tests in this directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ros2_lane import ros2_argv, ros2_interpreter

__all__ = [
    "LaunchRun",
    "ament_prefix_with",
    "node_launch_env",
    "run_ros2_launch",
    "start_ros2_launch",
    "write_launch_file",
]


class LaunchRun:
    """A running ``ros2 launch`` (its own session) and the lines it has printed so far."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def text(self) -> str:
        """Everything printed so far (stdout and stderr)."""
        return "".join(self._lines)

    def stop(self, *, timeout: float = 60.0) -> int:
        """Ctrl-C it (SIGINT) and wait; SIGKILL its whole session if it does not end in time.

        Returns:
            Its exit code.
        """
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        self._reader.join(timeout=5)
        return self.popen.returncode

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.append(line)


def start_ros2_launch(launch_file: Path, env: Mapping[str, str], *arguments: str) -> LaunchRun:
    """``ros2 launch FILE ARGS...`` in the background."""
    popen = subprocess.Popen(
        ros2_argv("launch", str(launch_file), *arguments),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return LaunchRun(popen)


def run_ros2_launch(
    launch_file: Path, env: Mapping[str, str], *arguments: str, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``ros2 launch FILE ARGS...`` to its end (for launches that fail or finish by themselves)."""
    return subprocess.run(
        ros2_argv("launch", str(launch_file), *arguments),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_launch_file(path: Path, lines: Sequence[str]) -> Path:
    """A launch file from its lines."""
    path.write_text("\n".join(lines) + "\n")
    return path


def ament_prefix_with(root: Path, package: str, executable: str, source: str) -> Path:
    """An ament prefix ``root/prefix`` holding ``package``'s ``executable``: ``source`` as a
    script on ROS 2's Python, as the user's colcon-installed entry point would be."""
    exe = root / "prefix" / "lib" / package / executable
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!{ros2_interpreter()}\n{source}")
    exe.chmod(0o755)
    return root / "prefix"


def node_launch_env(
    ros2_env: Mapping[str, str], prefix: Path, home: Path, robot_domain: int
) -> dict[str, str]:
    """``ros2_env`` with ``prefix`` first on AMENT_PREFIX_PATH, a private state home and the
    robot's domain."""
    env = dict(ros2_env)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), env.get("AMENT_PREFIX_PATH", "")])
    env["FOGROS_DIST_HOME"] = str(home)
    env["ROS_DOMAIN_ID"] = str(robot_domain)
    env["PYTHONUNBUFFERED"] = "1"
    return env
