"""ROS 2 itself: the package builds with colcon, `ros2 launch` offloads a node, `ros2 fogdist` sees it.

These tests need a sourced ROS 2 (rclpy, launch_ros, ros2cli) and skip without one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_helpers import edges_round_trip
from ros2_lane import ros2, ros2_argv

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")
pytest.importorskip("launch_ros")


@pytest.fixture
def ros_env(ros2_env: dict[str, str], tmp_path: Path, robot_domain: int) -> dict[str, str]:
    env = dict(ros2_env)
    env["FOGROS_DIST_HOME"] = str(tmp_path / "home")
    env["ROS_DOMAIN_ID"] = str(robot_domain)
    return env


def _fogdist(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ros2(), "fogdist", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _start_launch(env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """`ros2 launch fogros_dist offload_edge_detector.launch.py`, its output collected as it comes."""
    launch = subprocess.Popen(
        ros2_argv("launch", "fogros_dist", "offload_edge_detector.launch.py"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(launch.stdout or []), daemon=True)
    reader.start()
    return launch, output, reader


def _wait_until_listed(env: dict[str, str], launch: subprocess.Popen[str], output: list[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        listed = _fogdist(env, "list", "--json")
        rows = json.loads(listed.stdout) if listed.returncode == 0 and listed.stdout.strip() else []
        if any(r["name"] == "edge-offload" and r["status"] == "running" for r in rows):
            return
        assert launch.poll() is None, "".join(output)
        assert time.monotonic() < deadline, "".join(output)
        time.sleep(0.5)


def test_ros2_launch_offloads_and_ros2_fogdist_lists_it(ros_env: dict[str, str], robot_domain: int) -> None:
    launch, output, reader = _start_launch(ros_env)
    try:
        _wait_until_listed(ros_env, launch, output)
        human = _fogdist(ros_env, "list").stdout
        assert "edge-offload" in human
        assert "gpu:local@127.0.0.1" in human
        reply: Any = edges_round_trip(robot_domain, context=lambda: "".join(output))
        # `ros2 fogdist ssh` is there too; a deployment with only a Local machine is refused.
        shell = _fogdist(ros_env, "ssh", "edge-offload")
        assert shell.returncode == 1, shell.stdout + shell.stderr
        assert len(shell.stderr.strip().splitlines()) == 1, shell.stderr
        assert "has no remote machine to SSH to" in shell.stderr, shell.stderr
        assert reply.encoding == "mono8"
        assert reply.header.frame_id == "cam"
        assert int(np.asarray(reply.data).max()) == 255
    finally:
        launch.send_signal(signal.SIGINT)
        try:
            launch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
        reader.join(timeout=5)
    text = "".join(output)
    assert "[cloud:gpu]" in text
    assert launch.returncode == 0, text
    assert json.loads(_fogdist(ros_env, "list", "--json").stdout) == []


def test_launch_file_with_a_syntax_error_fails_in_one_line(ros_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.launch.py"
    bad.write_text("def generate_launch_description(:\n    pass\n")
    result = subprocess.run(
        [ros2(), "launch", str(bad)], env=ros_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "bad.launch.py" in result.stderr + result.stdout


def test_cloud_node_bad_topic_fails_before_anything_starts(ros_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "badtopic.launch.py"
    bad.write_text(
        "from fogros_dist.launch import CloudNode, FogLaunchDescription\n"
        "from fogros_dist.machines import Local\n"
        "def generate_launch_description():\n"
        "    return FogLaunchDescription([CloudNode(package='fogros_dist', executable='edge_detector',\n"
        "        machine=Local('gpu'), topics_in=['/camera/9image:sensor_msgs/msg/Image'])],\n"
        "        deployment='bad-topic')\n"
    )
    result = subprocess.run(
        [ros2(), "launch", str(bad)], env=ros_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "/camera/9image" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    listed = _fogdist(ros_env, "list", "--json")
    assert json.loads(listed.stdout) == []


def test_sigterm_to_launch_still_tears_the_deployment_down(ros_env: dict[str, str]) -> None:
    """launch cancels itself on SIGTERM without a Shutdown event; nothing may be left running."""
    launch, output, reader = _start_launch(ros_env)
    try:
        _wait_until_listed(ros_env, launch, output)
        launch.send_signal(signal.SIGTERM)
        launch.wait(timeout=30)
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
        reader.join(timeout=5)
    text = "".join(output)
    assert "deployment edge-offload is down" in text, text
    assert json.loads(_fogdist(ros_env, "list", "--json").stdout) == []
